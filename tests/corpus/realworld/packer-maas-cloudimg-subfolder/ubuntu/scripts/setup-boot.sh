#!/bin/sh
set -e
echo "built on top of ${PARENT} as ${SERIES_LABEL}"
