source "chroot" "base" {
  base = "rootfs.tar"
}

build {
  sources = ["source.chroot.base"]

  provisioner "ansible" {
    playbook_file = "./playbook"
  }
}
