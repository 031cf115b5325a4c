data "null" "nothing" {
}

source "null" "app" {
  communicator = "none"
}

build {
  sources = ["source.null.app"]
  provisioner "shell-local" {
    inline = ["echo ${data.null.nothing.output}"]
  }
}
