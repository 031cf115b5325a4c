# Two chained local images, built with the chroot builder: no VM, no cloud.
#
#   base: a busybox root filesystem with a login user (devuser) and a
#         hardened sshd configuration (hardening-ssh)
#   app:  built on base's output, with an application config file and a
#         start script
#
# Prepare the base root filesystem once (cached), then plan and apply:
#
#   scripts/make-busybox-rootfs.sh examples/local/rootfs/busybox.tar.gz
#   imgform apply -C examples/local --auto-approve
#
# (scripts/demo.sh does both.) The images land in examples/local/output/.

variable "release" {
  type    = string
  default = "2026.11"
}

variable "app_port" {
  type    = number
  default = 8080
}

source "chroot" "base" {
  base   = "rootfs/busybox.tar.gz"
  format = "qcow2"
  label  = "base"
}

source "chroot" "app" {
  base   = image.golden.chroot.base.id
  format = "qcow2"
  label  = "app"
}

build {
  name        = "golden"
  description = "Base image: a login user and hardened sshd"
  sources     = ["source.chroot.base"]

  module "devuser" {
    source          = "../../modules/devuser"
    username        = "ops"
    authorized_keys = [file("keys/ops.pub")]
  }

  module "hardening-ssh" {
    source = "../../modules/hardening-ssh"
  }

  module "motd" {
    source  = "../../modules/motd"
    message = "golden base ${var.release}\n"
  }
}

build {
  name        = "golden"
  description = "Application image on top of the base"
  sources     = ["source.chroot.app"]

  provisioner "file" {
    source      = "files/app.conf"
    destination = "/etc/app/app.conf"
    mode        = "0644"
  }

  provisioner "shell" {
    inline = [
      "mkdir -p /opt/app",
      "printf '#!/bin/sh\\nexec httpd -f -p ${var.app_port} -h /opt/app/www\\n' > /opt/app/start.sh",
      "chmod 0755 /opt/app/start.sh",
      "mkdir -p /opt/app/www && echo 'hello from app ${var.release}' > /opt/app/www/index.html",
    ]
  }
}
