#!/bin/sh
echo "tools: built on $BASE ($IMGFORM_IMAGE)" >> "$LOG"
