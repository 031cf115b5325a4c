packages = ["nginx", "curl", "jq"]
