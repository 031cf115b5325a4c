#!/usr/bin/env bash
# Puts `imgform` on PATH: builds it (a debug build in the shared target dir
# the demo and the test suite use, so nothing compiles twice) and installs
# the binary as $PREFIX/bin/imgform (PREFIX: /usr/local when writable,
# otherwise ~/.local). `--release` builds an optimised binary instead (its
# own, slower build: about 15 minutes on 2 cores with the AWS SDK).
#
#   scripts/install.sh              # imgform on PATH, as the README uses it
#   scripts/install.sh --release    # the same, optimised
#   PREFIX=/opt/imgform scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/imgform/target}"
profile=debug
args=(--locked -q)
if [ "${1:-}" = "--release" ]; then
  profile=release
  args+=(--release)
fi
if [ -z "${PREFIX:-}" ]; then
  if [ -w /usr/local/bin ]; then PREFIX=/usr/local; else PREFIX="$HOME/.local"; fi
fi
cargo build "${args[@]}"
mkdir -p "$PREFIX/bin"
# Installed under a temporary name and renamed: a running imgform is never
# replaced by half a binary.
install -m 0755 "$CARGO_TARGET_DIR/$profile/imgform" "$PREFIX/bin/.imgform.new"
mv -f "$PREFIX/bin/.imgform.new" "$PREFIX/bin/imgform"
echo "install: $PREFIX/bin/imgform ($("$PREFIX/bin/imgform" --version), $profile build)" >&2
case ":$PATH:" in
  *":$PREFIX/bin:"*) ;;
  *) echo "install: $PREFIX/bin is not on PATH; add it: export PATH=\"$PREFIX/bin:\$PATH\"" >&2 ;;
esac
