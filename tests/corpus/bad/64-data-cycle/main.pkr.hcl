data "null" "first" {
  input = data.null.second.output
}

data "null" "second" {
  input = "${data.null.first.output}-again"
}

source "null" "app" {
  communicator = "none"
}

build {
  sources = ["source.null.app"]
  provisioner "shell-local" {
    inline = ["echo ${data.null.first.output}"]
  }
}
