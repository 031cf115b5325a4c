source "amazon-ebs" "ubuntu" {
  region        = "eu-west-1"
  instance_type = "t3.micro"
  source_ami    = "ami-0123456789abcdef0"
  ssh_username  = "ubuntu"
  ami_name      = "golden-ubuntu"

  launch_block_device_mapping {
    device_name = "/dev/sda1"
    volume_size = 20
  }
}

build {
  sources = ["source.amazon-ebs.ubuntu"]

  provisioner "shell" {
    inline = ["sudo apt-get update"]
  }
}
