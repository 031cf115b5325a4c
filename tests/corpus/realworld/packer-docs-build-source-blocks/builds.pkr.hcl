build {
  name = "first"

  source "null.base" {
    name = "alpha"
  }
  source "null.base" {
    name = "beta"
  }

  provisioner "shell-local" {
    inline = ["echo building ${source.name} of type ${source.type} in ${build.name}"]
  }
}

build {
  name    = "second"
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline = ["echo second build of ${source.name}"]
  }
}
