source "chroot" "c" {
  base   = "rootfs.tar.gz"
  format = "tar"
}

build {
  sources = ["source.chroot.c"]

  provisioner "component" {
    document = "components/setup.yml"
  }
}
