source "null" "appliance" {
  communicator = "none"
}

build {
  sources = ["source.null.appliance"]

  provisioner "shell-local" {
    inline = ["mkdir -p stage", "echo 'appliance config' > stage/config.txt", "echo 'appliance disk' > stage/disk.raw"]
  }

  post-processors {
    post-processor "artifice" {
      files = ["stage/config.txt", "stage/disk.raw"]
    }
    post-processor "compress" {
      output            = "dist/{{.BuildName}}.tar.gz"
      compression_level = 9
    }
    post-processor "checksum" {
      checksum_types = ["sha1", "sha256"]
      output         = "dist/{{.BuildName}}.{{.ChecksumType}}"
    }
  }
}
