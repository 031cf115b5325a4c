# A golden Debian AMI and an application AMI built on top of it, the way a
# team would write them for Packer — loaded unchanged by imgform, which
# rebuilds only what changed (see README.md).

packer {
  required_plugins {
    amazon = {
      version = ">= 1.3.0"
      source  = "github.com/hashicorp/amazon"
    }
    ansible = {
      version = ">= 1.1.0"
      source  = "github.com/hashicorp/ansible"
    }
  }
}

variable "region" {
  type    = string
  default = "eu-west-1"
}

variable "app_version" {
  type    = string
  default = "1.4.2"
}

locals {
  # A build setting: names the AMI, never changes its content address.
  stamp = formatdate("YYYYMMDDhhmmss", timestamp())
}

source "amazon-ebs" "debian" {
  region        = var.region
  instance_type = "t3.small"
  ssh_username  = "admin"
  ami_name      = "golden-debian-12-${local.stamp}"
  source_ami_filter {
    filters = {
      name                = "debian-12-amd64-*"
      architecture        = "x86_64"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["136693071363"] # Debian
    most_recent = true
  }
  launch_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_size           = 8
    volume_type           = "gp3"
    delete_on_termination = true
  }
  tags = {
    Name       = "golden-debian-12"
    Base       = "{{ .SourceAMIName }}"
    BuiltIn    = "{{ .BuildRegion }}"
    ManagedBy  = "imgform"
  }
  keep_previous = 2
}

source "amazon-ebs" "app" {
  region        = var.region
  instance_type = "t3.small"
  ssh_username  = "admin"
  ami_name      = "app-${var.app_version}-${local.stamp}"
  source_ami    = image.golden.amazon-ebs.debian.id
  tags = {
    Name    = "app"
    Version = var.app_version
  }
  keep_previous = 1
}

build {
  name    = "golden"
  sources = ["source.amazon-ebs.debian"]

  provisioner "shell" {
    execute_command = "sudo -n sh -c '{{ .Vars }} {{ .Path }}'"
    inline = [
      "apt-get update -q",
      "DEBIAN_FRONTEND=noninteractive apt-get upgrade -yq",
    ]
  }

  provisioner "ansible" {
    playbook_file = "ansible/site.yml"
    user          = "admin"
  }

  test {
    provisioner "shell" {
      inline = ["sudo -n sshd -T | grep -q '^passwordauthentication no'"]
    }
  }
}

build {
  name    = "app"
  sources = ["source.amazon-ebs.app"]

  provisioner "file" {
    source      = "scripts/install-app.sh"
    destination = "/tmp/install-app.sh"
  }

  provisioner "shell" {
    environment_vars = ["APP_VERSION=${var.app_version}"]
    execute_command  = "sudo -n sh -c '{{ .Vars }} {{ .Path }}'"
    script           = "scripts/install-app.sh"
  }

  test {
    provisioner "shell" {
      inline = ["test -x /opt/app/bin/app", "/opt/app/bin/app --version | grep -q ${var.app_version}"]
    }
  }
}
