source "null" "vm" {
  communicator = "none"
}
