# devuser: a login user with optional password hash, SSH authorized keys and
# passwordless sudo — what diskimage-builder's `devuser` element does.
description = "Create a user with authorized keys and passwordless sudo"

variable "username" {
  type    = string
  default = "devuser"
}

variable "uid" {
  type    = number
  default = 1000
}

variable "shell" {
  type    = string
  default = "/bin/sh"
}

variable "password_hash" {
  type        = string
  default     = ""
  sensitive   = true
  description = "A crypt(3) hash (e.g. from `mkpasswd -m sha-512`); empty = password login disabled."
}

variable "authorized_keys" {
  type    = list(string)
  default = []
}

variable "sudo" {
  type    = bool
  default = true
}

provisioner "shell" {
  script = "install.sh"
  environment_vars = [
    "DEVUSER_NAME=${var.username}",
    "DEVUSER_UID=${var.uid}",
    "DEVUSER_SHELL=${var.shell}",
    "DEVUSER_PASSWORD_HASH=${var.password_hash}",
    "DEVUSER_AUTHORIZED_KEYS=${join("\n", var.authorized_keys)}",
    "DEVUSER_SUDO=${var.sudo}",
  ]
}
