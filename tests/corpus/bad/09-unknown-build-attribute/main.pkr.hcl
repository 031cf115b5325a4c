source "null" "base" {
  communicator = "none"
}

build {
  name         = "golden"
  sources      = ["source.null.base"]
  keep_previos = 2

  provisioner "shell-local" {
    inline = ["echo hi"]
  }
}
