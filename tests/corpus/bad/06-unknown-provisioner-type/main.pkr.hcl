source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell_local" {
    inline = ["echo hi"]
  }
}
