source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell" {
    inline = ["sudo apt-get update"]
  }
}
