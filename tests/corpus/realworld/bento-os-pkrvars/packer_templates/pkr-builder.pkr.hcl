build {
  sources = var.sources_enabled

  provisioner "shell-local" {
    environment_vars = ["VM_NAME=${local.vm_name}"]
    scripts          = local.scripts
  }
}
