source "null" "base" {
  communicator = "none"
}

source "null" "app" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline = ["echo base from ${image.null.app.id}"]
  }
}

build {
  sources = ["source.null.app"]

  provisioner "shell-local" {
    inline = ["echo app from ${image.null.base.id}"]
  }
}
