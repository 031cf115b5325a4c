source "null" "base" {
  communicator = "none"
}

source "null" "app" {
  communicator = "none"
}

build {
  name    = "golden"
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline = ["echo base"]
  }
}

build {
  name    = "app"
  sources = ["source.null.app"]

  provisioner "shell-local" {
    inline = ["echo built from ${image.golden.null.bsae.id}"]
  }
}
