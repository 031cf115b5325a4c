data "http" "version" {
  url = "https://example.com/version.txt"
}

data "http" "version" {
  url = "https://example.com/VERSION"
}

source "null" "app" {
  communicator = "none"
}

build {
  sources = ["source.null.app"]
}
