os_name    = "debian"
os_version = "12"
os_arch    = "x86_64"
