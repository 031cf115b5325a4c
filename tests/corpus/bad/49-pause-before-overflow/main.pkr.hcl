source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline       = ["true"]
    pause_before = "1e20"
  }
}
