variable "checkpoint" {
  type    = string
  default = "https://checkpoint-api.hashicorp.com"
}

data "http" "terraform_release" {
  url = "${var.checkpoint}/v1/check/terraform"
  request_headers = {
    Accept = "application/json"
  }
}

locals {
  terraform = jsondecode(data.http.terraform_release.body)
}

source "null" "release-check" {
  communicator = "none"
}

build {
  sources = ["source.null.release-check"]

  provisioner "shell-local" {
    inline = ["echo ${local.terraform.product} is at ${local.terraform.current_version}"]
  }
}
