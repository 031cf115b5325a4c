source "null" "base" "extra" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]
  provisioner "shell-local" {
    inline = ["echo hi"]
  }
}
