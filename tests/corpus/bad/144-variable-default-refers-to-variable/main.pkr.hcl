variable "a" {
  default = "x"
}

variable "b" {
  default = var.a
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
