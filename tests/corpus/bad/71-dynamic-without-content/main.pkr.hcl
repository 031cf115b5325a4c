source "null" "a" {
  communicator = "none"
}

build {
  sources = ["source.null.a"]

  dynamic "provisioner" {
    for_each = ["a", "b"]
    labels   = ["shell-local"]
    inline   = ["echo ${provisioner.value}"]
  }
}
