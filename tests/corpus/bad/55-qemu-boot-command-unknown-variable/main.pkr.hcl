source "qemu" "app" {
  iso_url      = "base.qcow2"
  disk_image   = true
  boot_command = ["<esc><wait>linux url=http://{{ .HTTPAddress }}/preseed.cfg<enter>"]
  ssh_username = "debian"
  ssh_password = "debian"
}

build {
  sources = ["source.qemu.app"]
}
