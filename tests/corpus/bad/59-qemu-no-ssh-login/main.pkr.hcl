source "qemu" "app" {
  iso_url      = "base.qcow2"
  disk_image   = true
  ssh_username = "debian"
}

build {
  sources = ["source.qemu.app"]
}
