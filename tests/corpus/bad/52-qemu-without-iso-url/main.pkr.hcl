source "qemu" "app" {
  disk_image   = true
  ssh_username = "debian"
  ssh_password = "debian"
}

build {
  sources = ["source.qemu.app"]
}
