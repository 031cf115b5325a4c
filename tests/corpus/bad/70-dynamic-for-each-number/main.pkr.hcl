source "null" "a" {
  communicator = "none"
}

build {
  sources = ["source.null.a"]

  dynamic "provisioner" {
    for_each = 3
    labels   = ["shell-local"]
    content {
      inline = ["echo ${provisioner.value}"]
    }
  }
}
