variable "disk_size" {
  type    = number
  default = 4

  validation {
    condition     = var.disk_size >= 8
    error_message = "The root disk must be at least 8 GB."
  }
}
