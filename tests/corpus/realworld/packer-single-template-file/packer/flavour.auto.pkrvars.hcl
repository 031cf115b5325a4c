flavour = "from-auto-file"
