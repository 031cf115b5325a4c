packer {
  required_plugins {
    git = {
      source  = "github.com/ethanmdavidson/git"
      version = ">= 0.6.0"
    }
  }
}

data "git-commit" "checkout" {}

locals {
  commit = data.git-commit.checkout.hash
}

source "null" "commit-info" {
  communicator = "none"
}

build {
  sources = ["source.null.commit-info"]

  provisioner "shell-local" {
    inline = [
      "echo 'commit: ${local.commit}'",
      "echo 'author: ${data.git-commit.checkout.author}'",
      "echo 'by: ${data.git-commit.checkout.committer}'",
      "echo 'message: ${trimspace(data.git-commit.checkout.message)}'",
      "echo 'tree: ${data.git-commit.checkout.tree_hash}'",
      "echo 'first_parent: ${data.git-commit.checkout.parent_hashes[0]}'",
    ]
  }
}
