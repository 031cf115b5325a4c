#!/bin/sh
echo "motd for ${VM_NAME}"
