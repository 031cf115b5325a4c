source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]
  max_age = "99999999999999999999w"

  provisioner "shell-local" {
    inline = ["true"]
  }
}
