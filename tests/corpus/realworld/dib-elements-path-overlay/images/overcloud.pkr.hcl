source "chroot" "overcloud" {
  base   = "${path.root}/rootfs/busybox.tar.gz"
  format = "tar"
}

build {
  sources = ["source.chroot.overcloud"]

  module "overcloud" {
    # No folder of our own: every element comes from ELEMENTS_PATH.
    source   = []
    elements = ["app-tuning"]
  }
}
