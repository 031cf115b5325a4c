data "amazon-parameterstore" "release" {
  name            = "packer_test_parameter"
  with_decryption = false
}

locals {
  release_value   = data.amazon-parameterstore.release.value
  release_version = data.amazon-parameterstore.release.version
  release_arn     = data.amazon-parameterstore.release.arn
}

source "null" "release-info" {
  communicator = "none"
}

build {
  sources = ["source.null.release-info"]

  provisioner "shell-local" {
    inline = [
      "echo value=${local.release_value} version=${local.release_version}",
      "echo arn=${local.release_arn}",
    ]
  }
}
