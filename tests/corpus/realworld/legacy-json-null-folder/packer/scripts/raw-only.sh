#!/bin/sh
echo "only the raw image"
