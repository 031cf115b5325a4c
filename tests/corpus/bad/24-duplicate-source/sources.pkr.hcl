source "null" "base" {
  communicator = "none"
}

source "null" "app" {
  communicator = "none"
}

source "null" "base" {
  communicator = "none"
}
