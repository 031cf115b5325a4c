data "amazon-amis" "ubuntu" {
  region      = "eu-west-1"
  owners      = ["099720109477"]
  most_recent = true
  filters = {
    name = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"
  }
}

source "amazon-ebs" "ubuntu" {
  region        = "eu-west-1"
  instance_type = "t3.micro"
  source_ami    = data.amazon-amis.ubuntu.id
  ssh_username  = "ubuntu"
  ami_name      = "golden-ubuntu"
}

build {
  sources = ["source.amazon-ebs.ubuntu"]

  provisioner "shell" {
    inline = ["sudo apt-get update"]
  }
}
