variable "architectures" {
  type = map(string)
  default = {
    x86_64 = "amd64"
    arm64  = "arm64"
  }
}

locals {
  steps = ["packages", "users"]
}

source "null" "node" {
  communicator = "none"
}

build {
  name = "workers"

  dynamic "source" {
    for_each = var.architectures
    iterator = arch
    labels   = ["null.node"]

    content {
      name = "node-${arch.key}"
    }
  }

  dynamic "provisioner" {
    for_each = local.steps
    labels   = ["shell-local"]

    content {
      inline = ["echo step ${provisioner.key}: ${provisioner.value} on ${source.name}"]
    }
  }
}
