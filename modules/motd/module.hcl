# motd: the message of the day (and optionally /etc/issue).
description = "Set /etc/motd"

variable "message" {
  type    = string
  default = "This machine was built by imgform.\n"
}

variable "issue" {
  type        = string
  default     = ""
  description = "If set, also written to /etc/issue (shown before login)."
}

provisioner "file" {
  content     = var.message
  destination = "/etc/motd"
  mode        = "0644"
}

provisioner "shell" {
  inline = [
    "if [ -n \"$ISSUE\" ]; then printf '%s' \"$ISSUE\" > /etc/issue; chmod 0644 /etc/issue; fi",
  ]
  environment_vars = ["ISSUE=${var.issue}"]
}
