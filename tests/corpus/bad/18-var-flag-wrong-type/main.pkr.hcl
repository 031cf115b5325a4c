variable "disk_size" {
  type    = number
  default = 20
}

source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline = ["echo disk ${var.disk_size}"]
  }
}
