variable "packages" {
  type    = list(string)
  default = "curl jq"
}
