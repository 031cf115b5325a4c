#!/usr/bin/env bash
# Times one amazon-ebs build (`imgform apply`) against moto's EC2 API on
# 127.0.0.1 with a local OpenSSH sshd as the instance: the integration test
# `builds_an_ami_over_real_ssh_tags_it_and_cleans_up` prints the wall time
# of its apply. Debug build (what the tests use), three runs. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/imgform/target}"
scripts/install-test-deps.sh
cargo test --locked -q --test amazon_ebs --no-run 2>/dev/null
printf '| case | wall (s) |\n|---|---:|\n'
times=()
for _ in 1 2 3; do
  t=$(cargo test --locked -q --test amazon_ebs builds_an_ami -- --nocapture 2>&1 |
    sed -n 's/^one amazon-ebs build against moto: \([0-9.]*\)s$/\1/p')
  times+=("$t")
done
printf '| one amazon-ebs build against moto (3 runs) | %s |\n' "${times[*]}"
