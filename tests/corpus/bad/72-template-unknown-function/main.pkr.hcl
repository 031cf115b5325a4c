source "null" "a" {
  communicator = "none"
}

build {
  sources = ["source.null.a"]

  provisioner "shell-local" {
    inline = ["echo {{ aws_secretsmanager `db` `password` }}"]
  }
}
