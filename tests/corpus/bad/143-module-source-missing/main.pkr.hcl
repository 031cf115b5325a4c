source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  module "devuser" {
    source   = "modules/devuser"
    username = "ubuntu"
  }
}
