variable "volume_size" {
  type    = number
  default = 20
}

source "amazon-ebs" "basic" {
  region        = "us-east-1"
  instance_type = "t3.small"
  ami_name      = "packer-docs-basic-{{timestamp}}"
  ssh_username  = "ubuntu"
  ami_regions   = ["us-west-2"]
  encrypt_boot  = true
  spot_price    = "auto"

  source_ami_filter {
    filters = {
      name                = "ubuntu/images/*ubuntu-jammy-22.04-amd64-server-*"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = ["099720109477"]
    most_recent = true
  }

  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = var.volume_size
    volume_type           = "gp3"
    delete_on_termination = true
  }

  ami_block_device_mappings {
    device_name  = "/dev/sdb"
    virtual_name = "ephemeral0"
  }

  tags = {
    OS_Version    = "Ubuntu"
    Release       = "Latest"
    Base_AMI_Name = "{{ .SourceAMIName }}"
  }

  run_tags = {
    Purpose = "packer-build"
  }
}

build {
  sources = ["source.amazon-ebs.basic"]

  provisioner "shell" {
    inline = ["sudo apt-get update", "sudo apt-get -y upgrade"]
  }
}
