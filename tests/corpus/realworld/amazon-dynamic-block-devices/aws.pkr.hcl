variable "data_volumes" {
  type = map(number)
  default = {
    "/dev/sdf" = 100
    "/dev/sdg" = 200
  }
}

variable "extra_tags" {
  type = map(string)
  default = {
    team        = "platform"
    cost-centre = "1234"
  }
}

source "amazon-ebs" "data" {
  region        = "us-east-1"
  instance_type = "t3.micro"
  ssh_username  = "ubuntu"
  ami_name      = "data-node-{{timestamp}}"

  source_ami_filter {
    filters = {
      name = "golden-base-*"
    }
    owners      = ["self"]
    most_recent = true
  }

  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = 16
    volume_type           = "gp3"
    delete_on_termination = true
  }

  dynamic "launch_block_device_mappings" {
    for_each = var.data_volumes
    iterator = volume
    content {
      device_name           = volume.key
      volume_size           = volume.value
      volume_type           = "gp3"
      delete_on_termination = true
    }
  }

  dynamic "tag" {
    for_each = var.extra_tags
    content {
      key   = tag.key
      value = tag.value
    }
  }
}

build {
  sources = ["source.amazon-ebs.data"]

  provisioner "shell" {
    inline = ["lsblk"]
  }
}
