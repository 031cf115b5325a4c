source "chroot" "cloud" {
  base = "rootfs/debian.tar.gz"
}

build {
  sources = ["source.chroot.cloud"]

  module "dib" {
    source   = "diskimage-builder"
    elements = ["vm", "block-device-gpt", "devuser", "growroot", "cloud-init-datasources"]
    distro   = "debian"
    release  = "bookworm"
    environment = {
      DIB_DEV_USER_USERNAME      = "cloud-user"
      DIB_DEV_USER_PWDLESS_SUDO  = "yes"
      DIB_CLOUD_INIT_DATASOURCES = "ConfigDrive, OpenStack"
    }
  }
}
