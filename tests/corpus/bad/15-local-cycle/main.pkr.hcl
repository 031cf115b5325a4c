locals {
  image_name = "golden-${local.image_tag}"
  image_tag  = "${local.image_name}-latest"
}

source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline = ["echo ${local.image_name}"]
  }
}
