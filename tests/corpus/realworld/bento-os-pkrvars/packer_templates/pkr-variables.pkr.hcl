variable "os_name" {
  type        = string
  description = "OS brand name"
  default     = "ubuntu"
}

variable "os_version" {
  type        = string
  description = "OS version number"
  default     = "24.04"
}

variable "os_arch" {
  type        = string
  description = "OS architecture type, x86_64 or aarch64"
  default     = "x86_64"
}

variable "sources_enabled" {
  type        = list(string)
  description = "Build sources to use for building the box"
  default     = ["source.null.vm"]
}

locals {
  vm_name = "${var.os_name}-${var.os_version}-${var.os_arch}"
  scripts = [
    "${path.root}/scripts/_common/motd.sh",
    "${path.root}/scripts/_common/sshd.sh",
  ]
}
