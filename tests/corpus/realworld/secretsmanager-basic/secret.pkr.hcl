data "amazon-secretsmanager" "app" {
  name = "packer_test_secret"
  key  = "packer_test_key"
}

locals {
  app_secret  = data.amazon-secretsmanager.app.value
  whole_json  = data.amazon-secretsmanager.app.secret_string
  secret_rev  = data.amazon-secretsmanager.app.version_id
}

source "null" "secret-consumer" {
  communicator = "none"
}

build {
  sources = ["source.null.secret-consumer"]

  provisioner "shell-local" {
    environment_vars = ["SECRET_VALUE=${local.app_secret}"]
    inline = [
      "echo value=$SECRET_VALUE",
      "test \"$SECRET_VALUE\" = sm-s3cr3t-4d2e",
    ]
  }
}
