source "qemu" "app" {
  iso_url      = "https://cdimage.debian.org/debian-cd/current/amd64/iso-cd/debian-12-amd64-netinst.iso"
  ssh_username = "debian"
  ssh_password = "debian"
}

build {
  sources = ["source.qemu.app"]
}
