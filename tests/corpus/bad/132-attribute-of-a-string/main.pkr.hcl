variable "region" {
  default = "eu-west-1"
}

source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline = ["echo ${var.region.name}"]
  }
}
