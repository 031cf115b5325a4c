# cloud-init: install and enable cloud-init where the distribution has it.
description = "Install and enable cloud-init"

variable "datasource_list" {
  type    = list(string)
  default = ["NoCloud", "ConfigDrive", "OpenStack", "Ec2", "None"]
}

variable "required" {
  type        = bool
  default     = false
  description = "Fail when the image has no package manager that provides cloud-init (default: skip with a note)."
}

provisioner "shell" {
  script = "install.sh"
  environment_vars = [
    "CLOUD_INIT_DATASOURCES=${join(", ", var.datasource_list)}",
    "CLOUD_INIT_REQUIRED=${var.required}",
  ]
}
