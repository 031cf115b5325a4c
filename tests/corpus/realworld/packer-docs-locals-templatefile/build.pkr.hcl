variable "packages" {
  type    = list(string)
  default = ["nginx", "curl"]
}

locals {
  stamp     = formatdate("YYYYMMDD-hhmm", timestamp())
  hostname  = lower(regex_replace("Web Server 01", "[^A-Za-z0-9]+", "-"))
  user_data = templatefile("${path.root}/templates/user-data.pkrtpl.hcl", {
    hostname = local.hostname
    packages = var.packages
  })
  meta = jsonencode({ packages = length(var.packages) })
}

source "null" "web" {
  communicator = "none"
}

build {
  sources = ["source.null.web"]

  provisioner "shell-local" {
    environment_vars = ["USER_DATA=${local.user_data}", "META=${local.meta}"]
    inline = [
      "printf '%s' \"$USER_DATA\" > rendered-user-data",
      "echo \"meta $META\"",
    ]
  }
}
