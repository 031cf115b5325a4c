variable "os_name" {
  type = string
}

variable "os_version" {
  type = string
}

variable "os_arch" {
  type = string
}

source "null" "vm" {
  communicator = "none"
}

build {
  sources = ["source.null.vm"]

  provisioner "shell-local" {
    inline = ["echo box for ${var.os_name} ${var.os_version}"]
  }

  post-processors {
    post-processor "vagrant" {
      compression_level = 9
      output            = "${path.root}/builds/${var.os_name}-${var.os_version}-${var.os_arch}.{{ .Provider }}.box"
    }
    post-processor "manifest" {
      output = "${path.root}/builds/manifest.json"
    }
  }
}
