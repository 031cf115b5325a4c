source "chroot" "base" {
  base            = "rootfs.tar.gz"
  format          = "tar"
  partition_table = "gpt"
}

build {
  sources = ["source.chroot.base"]
}
