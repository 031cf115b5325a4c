variable "message" {
  type    = string
  default = "provisioners work"
}

source "null" "example" {
  communicator = "none"
}

build {
  sources = ["source.null.example"]

  provisioner "shell-local" {
    inline_shebang = "/bin/sh -e"
    inline         = ["echo \"${var.message}\" > out.txt"]
  }

  # Packer's only_on: this one is for macOS hosts only.
  provisioner "shell-local" {
    only_on = ["darwin"]
    inline  = ["echo this runs on macOS only", "exit 1"]
  }

  provisioner "shell-local" {
    script           = "scripts/check.sh"
    environment_vars = ["EXPECT=${var.message}"]
  }
}
