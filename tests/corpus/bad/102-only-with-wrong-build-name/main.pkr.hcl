source "null" "base" {
  communicator = "none"
}

build {
  name    = "golden"
  sources = ["source.null.base"]

  provisioner "shell-local" {
    only   = ["silver.null.base"]
    inline = ["echo hi"]
  }
}
