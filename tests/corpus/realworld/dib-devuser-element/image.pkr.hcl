source "chroot" "base" {
  base   = "rootfs/busybox.tar.gz"
  format = "tar"
}

build {
  sources = ["source.chroot.base"]

  module "users" {
    source   = "elements"
    elements = ["opsuser"]
    environment = {
      DIB_OPS_USER_NAME = "deploy"
      DIB_OPS_USER_KEYS = "keys/deploy.pub"
    }
  }
}
