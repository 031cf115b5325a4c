source "chroot" "al2" {
  base   = "rootfs/busybox.tar.gz"
  format = "tar"
}

build {
  sources = ["source.chroot.al2"]

  provisioner "component" {
    document = "components/unzip.yml"
  }
}
