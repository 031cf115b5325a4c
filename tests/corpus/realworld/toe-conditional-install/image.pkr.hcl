source "chroot" "al2" {
  base = "rootfs/base.tar.gz"
}

build {
  sources = ["source.chroot.al2"]

  provisioner "component" {
    document = "components/unzip.yml"
  }
}
