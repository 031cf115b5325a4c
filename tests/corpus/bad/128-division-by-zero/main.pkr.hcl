locals {
  disks = 10 / 0
}

source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline = ["echo ${local.disks}"]
  }
}
