variable "image_id" {
  type        = string
  description = "The id of the machine image (AMI) to use for the server."

  validation {
    condition     = length(var.image_id) > 4 && substr(var.image_id, 0, 4) == "ami-"
    error_message = "The image_id value must be a valid AMI id, starting with \"ami-\"."
  }
}

variable "availability_zone_names" {
  type    = list(string)
  default = ["us-west-1a"]
}

variable "docker_ports" {
  type = list(object({
    internal = number
    external = number
    protocol = string
  }))
  default = [
    {
      internal = 8300
      external = 8300
      protocol = "tcp"
    }
  ]
}

variable "db_password" {
  type      = string
  sensitive = true
  default   = "correct-horse-battery-staple"
}

locals {
  zones = join(",", var.availability_zone_names)
  ports = [for p in var.docker_ports : "${p.external}/${p.protocol}"]
}

source "null" "docs" {
  communicator = "none"
}

build {
  sources = ["source.null.docs"]

  provisioner "shell-local" {
    environment_vars = [
      "IMAGE=${var.image_id}",
      "ZONES=${local.zones}",
      "PORTS=${join(" ", local.ports)}",
      "PASSWORD=${var.db_password}",
    ]
    inline = [
      "echo \"image $IMAGE in $ZONES with ports $PORTS\"",
      "test -n \"$PASSWORD\"",
    ]
  }
}
