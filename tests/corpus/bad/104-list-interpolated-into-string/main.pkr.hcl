variable "packages" {
  type    = list(string)
  default = ["curl", "git"]
}

source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline = ["apt-get install -y ${var.packages}"]
  }
}
