source "null" "release" {
  communicator = "none"
}

build {
  name    = "ci"
  sources = ["source.null.release"]

  provisioner "shell-local" {
    inline = ["echo building the release image"]
  }

  post-processor "manifest" {
    output     = "out/manifest.json"
    strip_path = true
    custom_data = {
      pipeline = "nightly"
    }
  }

  post-processor "compress" {
    output = "out/release.tar.gz"
  }
}
