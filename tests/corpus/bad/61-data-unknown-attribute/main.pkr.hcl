data "amazon-parameterstore" "ecs_ami" {
  name           = "/aws/service/ecs/optimized-ami/amazon-linux-2/recommended/image_id"
  with_decription = false
}

source "null" "app" {
  communicator = "none"
}

build {
  sources = ["source.null.app"]
}
