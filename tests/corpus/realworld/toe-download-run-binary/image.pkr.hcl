variable "base_url" {
  type    = string
  default = "http://127.0.0.1:1"
}

source "chroot" "app" {
  base   = "rootfs/busybox.tar.gz"
  format = "tar"
}

build {
  sources = ["source.chroot.app"]

  provisioner "component" {
    document   = "components/linux-binary.yml"
    parameters = { BaseUrl = var.base_url }
  }
}
