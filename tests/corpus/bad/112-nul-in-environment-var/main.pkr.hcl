variable "token" {
  default = "x\u0000y"
}

source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    environment_vars = ["TOKEN=${var.token}"]
    inline           = ["echo $TOKEN"]
  }
}
