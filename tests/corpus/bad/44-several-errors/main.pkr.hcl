locals {
  build_number = "42"
  image_name   = "golden-${local.bulid_number}"
}

source "amazon-ebs" "ubuntu" {
  region        = "eu-west-1"
  instance_typ  = "t3.micro"
  source_ami    = "ami-0123456789abcdef0"
  ssh_username  = "ubuntu"
  ami_name      = local.image_name
}

build {
  sources = ["source.amazon-ebs.ubuntu"]

  provisioner "shel" {
    inline = ["sudo apt-get update"]
  }
}
