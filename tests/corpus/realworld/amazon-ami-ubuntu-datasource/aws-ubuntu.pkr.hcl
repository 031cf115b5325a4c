packer {
  required_plugins {
    amazon = {
      version = ">= 1.2.8"
      source  = "github.com/hashicorp/amazon"
    }
  }
}

variable "region" {
  type    = string
  default = "us-east-1"
}

variable "ubuntu_owner" {
  type        = string
  description = "Canonical's account"
  default     = "099720109477"
}

locals {
  stamp = formatdate("YYYYMMDDhhmmss", timestamp())
}

data "amazon-ami" "ubuntu" {
  filters = {
    name                = "ubuntu/images/*ubuntu-jammy-22.04-amd64-server-*"
    virtualization-type = "hvm"
  }
  most_recent = true
  owners      = [var.ubuntu_owner]
  region      = var.region
}

source "amazon-ebs" "ubuntu" {
  ami_name      = "learn-packer-linux-aws-${local.stamp}"
  instance_type = "t2.micro"
  region        = var.region
  source_ami    = data.amazon-ami.ubuntu.id
  ssh_username  = "ubuntu"
  tags = {
    Base_AMI_Name = data.amazon-ami.ubuntu.name
  }
}

build {
  name    = "learn-packer"
  sources = ["source.amazon-ebs.ubuntu"]

  provisioner "shell" {
    environment_vars = ["GREETING=hello"]
    inline = [
      "echo Installing Redis",
      "sleep 30",
      "sudo apt-get update",
      "sudo apt-get install -y redis-server",
    ]
  }
}
