# A chain of three images built with the `null` builder: no cloud, no VM.
# Each provisioner runs on this machine (shell-local) and appends to
# output/build.log, so you can see exactly which images a change rebuilds.
#
#   imgform plan -C examples/quickstart
#   imgform apply -C examples/quickstart --auto-approve
#   echo 'echo tuned' >> examples/quickstart/scripts/app.sh
#   imgform plan -C examples/quickstart      # app rebuilds; base and tools do not

variable "release" {
  type        = string
  default     = "2026.11"
  description = "Stamped into every image."
}

locals {
  log = "output/build.log"
}

source "null" "base" {
  communicator = "none"
}

source "null" "tools" {
  communicator = "none"
}

source "null" "app" {
  communicator = "none"
}

build {
  name        = "golden"
  description = "The base image everything else is built from."
  sources     = ["source.null.base"]

  provisioner "shell-local" {
    inline = ["mkdir -p output", "echo \"base ${var.release}\" >> ${local.log}"]
  }
  provisioner "shell-local" {
    script           = "scripts/base.sh"
    environment_vars = ["LOG=${local.log}"]
  }
}

build {
  name = "layers"

  source "null.tools" {}
  source "null.app" {}

  provisioner "shell-local" {
    only             = ["null.tools"]
    scripts          = ["scripts/tools.sh"]
    environment_vars = ["LOG=${local.log}", "BASE=${image.golden.null.base.id}"]
  }
  provisioner "shell-local" {
    only             = ["null.app"]
    scripts          = ["scripts/app.sh"]
    environment_vars = ["LOG=${local.log}", "BASE=${image.golden.null.base.id}"]
  }
}
