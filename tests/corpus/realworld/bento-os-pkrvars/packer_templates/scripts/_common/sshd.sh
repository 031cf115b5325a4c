#!/bin/sh
echo "sshd: UseDNS no"
