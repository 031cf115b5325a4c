source "null" "base" {
  communicator = "none"
}

build {
  sources       = ["source.null.base"]
  keep_previous = -1
  provisioner "shell-local" {
    inline = ["echo hi"]
  }
}
