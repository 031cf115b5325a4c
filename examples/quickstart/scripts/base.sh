#!/bin/sh
echo "base: hardening done ($IMGFORM_IMAGE)" >> "$LOG"
