locals {
  series_label = "ubuntu-${var.ubuntu_series}"
}

source "null" "cloudimg" {
  communicator = "none"
}

# First stage: what the image needs, prepared once.
build {
  name    = "cloudimg.deps"
  sources = ["source.null.cloudimg"]

  provisioner "shell-local" {
    inline = ["echo deps for ${var.ubuntu_series}"]
  }
}

# Second stage: the image itself, built on the first.
build {
  name    = "cloudimg.image"
  sources = ["source.null.cloudimg"]

  provisioner "shell-local" {
    environment_vars = [
      "SERIES_LABEL=${local.series_label}",
      "KERNEL=${var.kernel}",
      "PARENT=${image.cloudimg.deps.null.cloudimg.id}",
    ]
    scripts = ["${path.root}/scripts/setup-boot.sh"]
  }
}
