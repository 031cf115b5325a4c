variable "region" {
  type    = string
  default = "eu-west-1"
}

variable {
  type    = string
  default = "golden"
}
