source "chroot" "dev" {
  base = "rootfs.tar.gz"
}

build {
  sources = ["source.chroot.dev"]

  module "dib" {
    source   = "elements"
    elements = ["devuser"]
    username = "ops"
  }
}
