locals {
  target = "null.base"
}

source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    only   = [local.target]
    inline = ["echo hi"]
  }
}
