#!/bin/sh
echo preparing
