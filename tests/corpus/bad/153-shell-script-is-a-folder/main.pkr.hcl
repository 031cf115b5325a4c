source "chroot" "base" {
  base = "rootfs.tar"
}

build {
  sources = ["source.chroot.base"]

  provisioner "shell" {
    script = "setup/"
  }
}
