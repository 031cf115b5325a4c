source "amazon-ebs" "web" {
  region        = "us-east-1"
  source_ami    = "ami-0123456789abcdef0"
  instance_type = "t3.micro"
  ssh_username  = "ubuntu"
  ami_name      = "web-{{ .SourceAmiName }}"
}

build {
  sources = ["source.amazon-ebs.web"]
}
