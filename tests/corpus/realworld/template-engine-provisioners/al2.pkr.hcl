variable "kernel_version" {
  type    = string
  default = "kernel-5.10"
}

source "null" "al2" {
  communicator = "none"
}

build {
  sources = ["source.null.al2"]

  provisioner "shell-local" {
    inline = [
      "echo built {{build_name}} with {{build_type}} by packer {{packer_version}}",
      "echo image {{ upper `al2-` }}{{ \"${var.kernel_version}\" | upper }}",
    ]
  }

  provisioner "shell-local" {
    environment_vars = ["RELEASE=2024"]
    execute_command  = ["/bin/sh", "-c", "{{.Vars}} sh {{.Script}}"]
    inline           = ["echo RELEASE=$RELEASE"]
  }
}
