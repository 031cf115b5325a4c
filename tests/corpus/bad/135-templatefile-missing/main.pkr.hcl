source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline = [templatefile("templates/motd.tpl", { name = "x" })]
  }
}
