source "null" "base" {
  communicator = "none"
}

build {
  sources = []

  provisioner "shell-local" {
    inline = ["echo hi"]
  }
}
