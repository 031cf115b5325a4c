variable "password" {
  default   = "x"
  sensitive = "yes"
}

source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline = ["echo hi"]
  }
}
