data "amazon-ami" "ubuntu" {
  owners      = ["099720109477"]
  most_recent = true
  filters = {
    name = "ubuntu/images/*ubuntu-noble-24.04-amd64-server-*"
  }
}

source "amazon-ebs" "ubuntu" {
  region        = "us-east-1"
  instance_type = "t3.micro"
  source_ami    = data.amazon-ami.ubunt.id
  ssh_username  = "ubuntu"
  ami_name      = "golden-ubuntu"
}

build {
  sources = ["source.amazon-ebs.ubuntu"]
}
