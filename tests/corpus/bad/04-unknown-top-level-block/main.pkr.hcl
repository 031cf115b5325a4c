source "null" "base" {
  communicator = "none"
}

provisioner "shell-local" {
  inline = ["echo hi"]
}

build {
  sources = ["source.null.base"]
}
