source "qemu" "app" {
  iso_url      = "base.qcow2"
  disk_image   = true
  accelerator  = "hvf"
  ssh_username = "debian"
  ssh_password = "debian"
}

build {
  sources = ["source.qemu.app"]
}
