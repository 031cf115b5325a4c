build {
  sources = ["source.null.base", "source.null.app"]

  provisioner "shell-local" {
    inline = ["echo hi"]
  }
}
