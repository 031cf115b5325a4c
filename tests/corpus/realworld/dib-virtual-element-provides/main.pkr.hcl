variable "ntp_server" {
  type    = string
  default = "pool.corpus.test"
}

source "chroot" "site" {
  base   = "rootfs/busybox.tar.gz"
  format = "tar"
}

build {
  sources = ["source.chroot.site"]

  module "site" {
    source   = "elements"
    elements = ["site-base", "ntp-busybox"]
    environment = {
      DIB_NTP_SERVER = var.ntp_server
    }
  }
}
