source "null" "base" {
  communicator = "none"
}

build "golden" {
  sources = ["source.null.base"]
  provisioner "shell-local" {
    inline = ["echo hi"]
  }
}
