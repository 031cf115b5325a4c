source "null" "base" {
  communicator = "none"
}

build {
  sources = ["source.null.base"]

  provisioner "shell-local" {
    inline      = ["curl -fsS https://example.com/health"]
    max_retries = "three"
  }
}
