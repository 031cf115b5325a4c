source "null" "extra" {
  communicator = "none"
}

build {
  sources = ["source.null.extra"]
}
