locals {
  image_version = "1.4.0"
}

source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline = ["echo version ${local.image_verison}"]
  }
}
