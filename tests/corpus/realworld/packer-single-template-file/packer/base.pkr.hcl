variable "flavour" {
  type    = string
  default = "default"
}

source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    environment_vars = ["FLAVOUR=${var.flavour}"]
    script           = "packer/scripts/flavour.sh"
  }
}
