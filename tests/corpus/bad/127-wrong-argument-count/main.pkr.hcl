locals {
  name = upper("a", "b")
}

source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline = ["echo ${local.name}"]
  }
}
