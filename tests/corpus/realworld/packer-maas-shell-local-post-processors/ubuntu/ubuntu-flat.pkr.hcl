variable "filename" {
  type    = string
  default = "custom-ubuntu.tar.gz"
}

source "null" "flat" {
  communicator = "none"
}

build {
  sources = ["source.null.flat"]

  provisioner "shell-local" {
    inline = ["echo provisioning ${source.name}"]
  }

  # The image MAAS deploys is made here, after the build.
  post-processor "shell-local" {
    inline_shebang = "/bin/bash -e"
    inline = [
      "IMG_FMT=raw",
      "SOURCE=${source.name}",
      "OUTPUT=${path.root}/${var.filename}",
      "source ${path.root}/scripts/pack-root",
    ]
  }
}
