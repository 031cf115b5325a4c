source "null" "base" {
  communicator = "none"
}

build {
  name    = "golden"
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline = ["echo previous ${image.golden.null.base.id}"]
  }
}
