source "qemu" "app" {
  iso_url          = "installer.iso"
  iso_checksum     = "none"
  use_backing_file = true
  ssh_username     = "debian"
  ssh_password     = "debian"
}

build {
  sources = ["source.qemu.app"]
}
