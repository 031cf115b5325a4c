source "null" "base" {
  communicator = "none"
}

build {
  name    = "golden image"
  sources = ["source.null.base"]
  provisioner "shell-local" {
    inline = ["echo hi"]
  }
}
