#!/bin/sh
set -eu
echo "installing base packages"
