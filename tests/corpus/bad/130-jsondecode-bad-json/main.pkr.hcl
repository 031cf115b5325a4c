locals {
  cfg = jsondecode("{\"a\": }")
}

source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline = ["echo ${local.cfg.a}"]
  }
}
