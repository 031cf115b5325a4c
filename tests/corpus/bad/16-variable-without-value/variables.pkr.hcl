variable "ami_prefix" {
  type        = string
  description = "Prefix of the image names"
}
