locals {
  name = "a"
}

locals {
  name = "b"
}

source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline = ["echo hi"]
  }
}
