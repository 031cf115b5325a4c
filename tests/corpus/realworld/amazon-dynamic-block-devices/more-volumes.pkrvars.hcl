data_volumes = {
  "/dev/sdf" = 100
  "/dev/sdg" = 200
  "/dev/sdh" = 50
}
