source "chroot" "motd" {
  base   = "rootfs/busybox.tar.gz"
  format = "tar"
}

build {
  sources = ["source.chroot.motd"]

  module "static" {
    source   = "elements"
    elements = ["motd-banner"]
  }
}
