variable "zones" {
  default = ["a", "b"]
}

source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline = ["echo ${var.zones[5]}"]
  }
}
