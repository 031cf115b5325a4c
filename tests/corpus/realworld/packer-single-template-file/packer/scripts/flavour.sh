#!/bin/sh
echo "flavour ${FLAVOUR}"
