#!/bin/sh
echo "app: built on $BASE ($IMGFORM_IMAGE)" >> "$LOG"
