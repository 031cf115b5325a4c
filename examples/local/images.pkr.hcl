# Two chained local images, built with the chroot builder — no cloud, no VM
# during the build — and booted in QEMU before they are recorded:
#
#   base: a bootable Debian cloud image (GPT; GRUB for BIOS and UEFI) with a
#         login user (devuser), cloud-init's datasources (cloud-init), a
#         hardened sshd (hardening-ssh) and a motd
#   app:  built on base's output: a small web app served by a systemd
#         service on port 8080, checked over SSH on the booted image
#
# Prepare the Debian root filesystem once (debootstrap from Debian's mirror,
# cached), then plan and apply:
#
#   scripts/make-debian-rootfs.sh --cloud examples/local/rootfs/debian-cloud.tar.gz
#   imgform apply -C examples/local --auto-approve
#
# (scripts/demo.sh does both, then boots the app image and shows what it
# serves.) The images land in examples/local/output/.

variable "release" {
  type    = string
  default = "2026.11"
}

variable "app_port" {
  type    = number
  default = 8080
}

source "chroot" "base" {
  base            = "rootfs/debian-cloud.tar.gz"
  label           = "base"
  partition_table = "gpt"
  efi             = true
}

source "chroot" "app" {
  base            = image.golden.chroot.base.id
  label           = "app"
  partition_table = "gpt"
  efi             = true
}

build {
  name        = "golden"
  description = "Base image: a login user, cloud-init, hardened sshd"
  sources     = ["source.chroot.base"]

  module "devuser" {
    source          = "../../modules/devuser"
    username        = "ops"
    authorized_keys = [file("keys/ops.pub")]
  }

  # Local VMs get their data from a NoCloud seed or a config drive, or run
  # without any (None): no waiting for cloud metadata services on boot.
  module "cloud-init" {
    source          = "../../modules/cloud-init"
    datasource_list = ["NoCloud", "ConfigDrive", "None"]
  }

  module "hardening-ssh" {
    source = "../../modules/hardening-ssh"
  }

  module "motd" {
    source  = "../../modules/motd"
    message = "golden base ${var.release}\n"
  }

  test {
    provisioner "shell" {
      inline = [
        "id ops",
        "grep -q 'golden base' /etc/motd",
        "sudo -n sshd -T | grep -i '^permitrootlogin no'",
      ]
    }
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

  provisioner "file" {
    source      = "files/app.service"
    destination = "/etc/systemd/system/app.service"
    mode        = "0644"
  }

  provisioner "shell" {
    inline = [
      "mkdir -p /opt/app/www",
      "echo 'hello from app ${var.release}' > /opt/app/www/index.html",
      "sed -i 's/@PORT@/${var.app_port}/' /etc/systemd/system/app.service",
      "systemctl enable app.service",
    ]
  }

  test {
    provisioner "shell" {
      inline = [
        "for i in $(seq 1 30); do python3 -c 'import urllib.request; print(urllib.request.urlopen(\"http://127.0.0.1:${var.app_port}/\").read().decode(), end=\"\")' && exit 0; sleep 1; done; exit 1",
      ]
    }
  }
}
