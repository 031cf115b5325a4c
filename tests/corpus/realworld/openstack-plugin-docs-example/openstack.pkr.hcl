source "openstack" "devstack" {
  domain_name       = "Default"
  flavor            = "m1.small"
  image_name        = "Test image"
  identity_endpoint = "http://devstack.example:5000/v3"
  insecure          = "true"
  password          = "devstack-admin-secret"
  region            = "RegionOne"
  source_image      = "3d7c3f3a-3e2d-4e0f-9a62-0c1d2e3f4a5b"
  ssh_username      = "root"
  tenant_name       = "admin"
  username          = "admin"
}

build {
  sources = ["source.openstack.devstack"]

  provisioner "shell" {
    inline = ["echo provisioned > /etc/provisioned-by"]
  }
}
