#!/usr/bin/env bash
# Plan benchmark: N images (default 100 and 1000), each with 5 script files
# of a few KB, 10% of them children of another image. Measures
# `imgform plan --refresh=false` with no change and with one file changed:
# wall time and peak RSS (GNU time), best of 3.
#
#   benches/plan_bench.sh            # N = 100 and 1000, release build
#   benches/plan_bench.sh 5000       # other sizes
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/imgform/target}"
command -v /usr/bin/time >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq time >/dev/null; }
cargo build --release --locked -q
BIN="$CARGO_TARGET_DIR/release/imgform"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100 1000)

generate() {
  local n=$1 dir=$2
  python3 - "$n" "$dir" <<'PY'
import os, sys
n, d = int(sys.argv[1]), sys.argv[2]
os.makedirs(f"{d}/scripts", exist_ok=True)
filler = "\n".join(f"# configuration line {i}: " + "x" * 60 for i in range(40))
with open(f"{d}/images.pkr.hcl", "w") as f:
    for i in range(n):
        f.write(f'source "null" "img{i}" {{\n  communicator = "none"\n}}\n')
    for i in range(n):
        scripts = []
        for j in range(5):
            p = f"scripts/img{i}-{j}.sh"
            with open(f"{d}/{p}", "w") as s:
                s.write(f"#!/bin/sh\n{filler}\ntrue # {i}-{j}\n")
            scripts.append(f'"{p}"')
        env = ""
        if i % 10 == 9:  # 10% are children of another image
            env = f'\n    environment_vars = ["PARENT=${{image.null.img{i-1}.id}}"]'
        f.write(f'build {{\n  sources = ["source.null.img{i}"]\n  provisioner "shell-local" {{\n    scripts = [{", ".join(scripts)}]{env}\n  }}\n}}\n')
PY
}

measure() { # prints "seconds max_rss_kib"
  local dir=$1 best="" rss=""
  for _ in 1 2 3; do
    /usr/bin/time -f "%e %M" -o /tmp/imgform-bench.time "$BIN" -C "$dir" plan --refresh=false --detailed-exitcode >/dev/null || true
    read -r s m < <(tail -n 1 /tmp/imgform-bench.time)
    if [ -z "$best" ] || awk "BEGIN{exit !($s < $best)}"; then best=$s; rss=$m; fi
  done
  echo "$best $rss"
}

printf '| images | case | wall (s) | peak RSS (MiB) |\n|---:|---|---:|---:|\n'
for n in "${sizes[@]}"; do
  dir=$(mktemp -d /tmp/imgform-bench.XXXXXX)
  generate "$n" "$dir"
  # Record state without running 5n shell processes: apply with scripts that do nothing.
  "$BIN" -C "$dir" apply --auto-approve --parallelism 16 >/dev/null 2>&1
  read -r s m <<<"$(measure "$dir")"
  printf '| %d | no change | %.3f | %.1f |\n' "$n" "$s" "$(awk "BEGIN{print $m/1024}")"
  echo "true # edited" >> "$dir/scripts/img$((n/2))-0.sh"
  read -r s m <<<"$(measure "$dir")"
  printf '| %d | one file changed | %.3f | %.1f |\n' "$n" "$s" "$(awk "BEGIN{print $m/1024}")"
  rm -rf "$dir"
done
