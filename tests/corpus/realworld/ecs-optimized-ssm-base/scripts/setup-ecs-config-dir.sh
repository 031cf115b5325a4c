#!/bin/sh
set -ex
sudo mkdir -p /etc/ecs
sudo touch /etc/ecs/ecs.config
