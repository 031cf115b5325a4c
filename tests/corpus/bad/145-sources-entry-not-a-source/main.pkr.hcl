source "null" "base" {
  communicator = "none"
}

build {
  sources = ["null.base.extra"]

  provisioner "shell-local" {
    inline = ["echo hi"]
  }
}
