source "chroot" "ubuntu" {
  base = "rootfs.tar.gz"
}

build {
  sources = ["source.chroot.ubuntu"]

  module "dib" {
    source   = "elements"
    elements = ["base", "devusr"]
  }
}
