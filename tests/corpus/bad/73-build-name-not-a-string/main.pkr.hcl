variable "names" {
  type    = list(string)
  default = ["golden", "silver"]
}

source "null" "a" {
  communicator = "none"
}

build {
  name    = var.names
  sources = ["source.null.a"]
}
