#!/bin/sh
set -e
test "$(cat out.txt)" = "$EXPECT"
echo "check passed: $EXPECT"
