source "chroot" "base" {
  base = "rootfs.tar.gz"
  # A bare filesystem has no partitions to put an EFI system partition in.
  efi  = true
}

build {
  sources = ["source.chroot.base"]
}
