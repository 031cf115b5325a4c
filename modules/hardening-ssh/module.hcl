# hardening-ssh: no root login, no password authentication. Depends on
# devuser, because a machine that refuses root and passwords needs a user
# with keys (devuser runs first, with its defaults unless the build used it
# with its own values before this module).
description = "Harden sshd: no root login, no password auth"
depends_on  = ["devuser"]

variable "permit_root_login" {
  type    = string
  default = "no"
}

variable "password_authentication" {
  type    = string
  default = "no"
}

variable "max_auth_tries" {
  type    = number
  default = 3
}

provisioner "shell" {
  script = "harden.sh"
  environment_vars = [
    "PERMIT_ROOT_LOGIN=${var.permit_root_login}",
    "PASSWORD_AUTHENTICATION=${var.password_authentication}",
    "MAX_AUTH_TRIES=${var.max_auth_tries}",
  ]
}
