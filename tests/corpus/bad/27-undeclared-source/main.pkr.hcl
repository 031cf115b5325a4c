source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.bsae"]

  provisioner "shell-local" {
    inline = ["echo hi"]
  }
}
