#!/usr/bin/env bash
# Times `imgform plan` and `imgform drift` with N recorded amazon-ebs images
# against moto's EC2 API on 127.0.0.1: refresh asks EC2 whether each
# recorded AMI still exists, and drift also lists tagged AMIs per image.
# The images use communicator = "none" (no SSH needed). Best
# of 3. Debug build: the time is spent waiting on EC2, not computing
# (a release build with aws-sdk-ec2 takes many minutes).
#   benches/ebs_plan_bench.sh [N]   (default 40)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-40}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/imgform/target}"
cargo build --locked -q
BIN="$CARGO_TARGET_DIR/debug/imgform"
work=$(mktemp -d /tmp/imgform-ebs-bench.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
moto_server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null; rm -rf "$work"' EXIT
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=testing \
  AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
for _ in $(seq 100); do curl -sf "$AWS_ENDPOINT_URL/moto-api/" >/dev/null 2>&1 && break; sleep 0.1; done
base=$(curl -sf -X POST "$AWS_ENDPOINT_URL/" \
  -H 'Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0' \
  -d 'Action=RegisterImage&Version=2016-11-15&Name=bench-base&Architecture=x86_64&RootDeviceName=/dev/xvda' |
  sed -n 's:.*<imageId>\(.*\)</imageId>.*:\1:p')
{
  for i in $(seq "$N"); do
    cat <<HCL
source "amazon-ebs" "img$i" {
  region        = "us-east-1"
  source_ami    = "$base"
  instance_type = "t3.micro"
  communicator  = "none"
  ami_name      = "bench-$i-\${uuidv4()}"
}
HCL
  done
  echo 'build {'
  printf '  sources = ['
  for i in $(seq "$N"); do printf '"source.amazon-ebs.img%s",' "$i"; done
  printf ']\n}\n'
} > "$work/images.pkr.hcl"
s=$(date +%s.%N)
"$BIN" apply --auto-approve -C "$work" >/dev/null 2>&1
e=$(date +%s.%N)
best() {
  local b=""
  for _ in 1 2 3; do
    local s e t
    s=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; e=$(date +%s.%N)
    t=$(awk "BEGIN{print $e-$s}")
    if [ -z "$b" ] || awk "BEGIN{exit !($t < $b)}"; then b=$t; fi
  done
  printf '%.2f' "$b"
}
printf '| case (%s amazon-ebs images, moto) | wall (s) |\n|---|---:|\n' "$N"
printf '| apply: build all (parallelism 10) | %.2f |\n' "$(awk "BEGIN{print $e-$s}")"
printf '| plan, no change (refresh every AMI) | %s |\n' "$(best "$BIN" plan -C "$work")"
printf '| plan --refresh=false | %s |\n' "$(best "$BIN" plan --refresh=false -C "$work")"
printf '| drift (refresh + tagged AMIs per image) | %s |\n' "$(best "$BIN" drift -C "$work")"
