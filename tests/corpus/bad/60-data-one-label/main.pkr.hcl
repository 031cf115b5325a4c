data "git-commit" {
}

source "null" "app" {
  communicator = "none"
}

build {
  sources = ["source.null.app"]
}
