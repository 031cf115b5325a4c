source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner {
    inline = ["echo hi"]
  }
}
