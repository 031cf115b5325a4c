source "chroot" "app" {
  base = "rootfs.tar.gz"
}

build {
  sources = ["source.chroot.app"]

  module "dib" {
    source   = "elements"
    elements = ["app", "block-device-gpt", "block-device-mbr"]
  }
}
