variable "ubuntu_series" {
  type        = string
  default     = "jammy"
  description = "The codename of the Ubuntu series to customise."
}

variable "kernel" {
  type    = string
  default = ""
}
