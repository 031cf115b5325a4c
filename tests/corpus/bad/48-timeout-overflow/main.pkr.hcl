source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline  = ["sleep 1"]
    timeout = "99999999999999999999s"
  }
}
