variable "app_name" {
  type    = string
  default = "billing"
}

source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline = ["echo ${uppercase(var.app_name)}"]
  }
}
