variable "list" {
  default = ["a", "b"]
}

source "null" "a" {
  communicator = "none"
}

build {
  sources = ["source.null.a"]

  provisioner "shell-local" {
    only   = ["null.nope", "${var.list}"]
    inline = ["x ${var.list} \u0000", "%{ for x in var.list }${x}%{ endfor }"]
  }
}
