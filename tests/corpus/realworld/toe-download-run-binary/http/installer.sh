#!/bin/sh
echo "installer ran with $*"
mkdir -p /opt/myapp && echo installed > /opt/myapp/state
