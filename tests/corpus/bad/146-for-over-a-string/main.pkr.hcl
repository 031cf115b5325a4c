locals {
  names = [for c in "abc" : upper(c)]
}

source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline = local.names
  }
}
