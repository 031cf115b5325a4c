variable "source_url" {
  type    = string
  default = "http://127.0.0.1:1/artifact.txt"
}

source "chroot" "al2" {
  base   = "rootfs/busybox.tar.gz"
  format = "tar"
}

build {
  sources = ["source.chroot.al2"]

  provisioner "component" {
    document = "components/web-download.yml"
    parameters = {
      source = var.source_url
      sha256 = "e5735f749940002afee98dcd780bc6786425fc3f1a6eb20e1eb0cabf7223d584"
    }
  }
}
