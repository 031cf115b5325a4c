source "chroot" "hello" {
  base   = "rootfs/busybox.tar.gz"
  format = "tar"
}

build {
  sources = ["source.chroot.hello"]

  provisioner "component" {
    document   = "components/hello-world.yml"
    parameters = { Greeting = "hi there" }
  }
}
