source "chroot" "base" {
  base            = "rootfs.tar.gz"
  partition_table = "apm"
}

build {
  sources = ["source.chroot.base"]
}
