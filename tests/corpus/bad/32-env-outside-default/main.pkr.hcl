locals {
  builder_user = env("USER")
}

source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline = ["echo built by ${local.builder_user}"]
  }
}
