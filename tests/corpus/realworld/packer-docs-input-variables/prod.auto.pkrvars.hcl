availability_zone_names = ["us-east-1a", "us-east-1b"]
