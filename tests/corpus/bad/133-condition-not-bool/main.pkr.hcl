variable "env" {
  default = "prod"
}

source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline = [var.env ? "echo a" : "echo b"]
  }
}
