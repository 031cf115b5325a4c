os_name    = "debian"
os_version = "12.5"
os_arch    = "x86_64"
