source "null" "web" {
  communicator = "none"
}

source "null" "db" {
  communicator = "none"
}

build {
  sources = ["source.null.web", "source.null.db"]

  provisioner "shell-local" {
    only   = ["null.web"]
    inline = ["echo only on ${source.name}"]
  }

  provisioner "shell-local" {
    except = ["null.web"]
    inline = ["echo everywhere but web: ${source.name}"]
  }

  provisioner "shell-local" {
    pause_before = "1s"
    timeout      = "30s"
    max_retries  = 2
    inline = [
      "f=retry-${source.name}",
      "if [ ! -f $f ]; then touch $f; echo first try fails; exit 1; fi",
      "echo second try works for ${source.name}",
    ]
  }
}
