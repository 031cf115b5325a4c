data "amazon-parameterstore" "ecs_base" {
  name   = var.ecs_base_parameter
  region = var.region
}

locals {
  ami_name = "custom-ecs-al2023-${var.ami_version}-x86_64"
  default_tags = {
    os_version  = "Amazon Linux 2023"
    base_ami    = data.amazon-parameterstore.ecs_base.value
    ami_version = var.ami_version
  }
  merged_tags = merge(local.default_tags, var.tags)
}

source "amazon-ebs" "al2023" {
  ami_name        = local.ami_name
  ami_description = "Custom ECS AMI ${var.ami_version}"
  instance_type   = "c5.large"
  region          = var.region
  source_ami      = data.amazon-parameterstore.ecs_base.value
  launch_block_device_mappings {
    volume_size           = 30
    delete_on_termination = true
    volume_type           = "gp3"
    device_name           = "/dev/xvda"
  }
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 2
  }
  ssh_interface = "public_ip"
  ssh_username  = "ec2-user"
  tags          = local.merged_tags
}

build {
  sources = ["source.amazon-ebs.al2023"]

  provisioner "file" {
    source      = "files/90_ecs.cfg"
    destination = "/tmp/90_ecs.cfg"
  }

  provisioner "shell" {
    inline_shebang = "/bin/sh -ex"
    inline = [
      "sudo mv /tmp/90_ecs.cfg /etc/cloud/cloud.cfg.d/90_ecs.cfg",
      "sudo chown root:root /etc/cloud/cloud.cfg.d/90_ecs.cfg",
    ]
  }

  provisioner "shell" {
    script = "scripts/setup-ecs-config-dir.sh"
  }
}
