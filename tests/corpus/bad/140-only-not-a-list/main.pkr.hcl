source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    only   = "null.base"
    inline = ["echo hi"]
  }
}
