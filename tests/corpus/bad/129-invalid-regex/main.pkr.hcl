locals {
  v = regex_replace("abc", "([a-", "x")
}

source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline = ["echo ${local.v}"]
  }
}
