source "qemu" "app" {
  iso_url      = "file://images/debian-12-genericcloud-amd64.qcow2"
  disk_image   = true
  ssh_username = "debian"
  ssh_password = "debian"
}

build {
  sources = ["source.qemu.app"]
}
