variable "region" {
  type        = string
  description = "Region to build the AMI in."
  default     = "us-east-1"
}

variable "ami_version" {
  type    = string
  default = "20240301"
}

variable "ecs_base_parameter" {
  type    = string
  default = "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
}

variable "tags" {
  type    = map(string)
  default = {}
}
