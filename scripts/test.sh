#!/usr/bin/env bash
# The test command (npm test): type-check, then ava with every temporary file of the run under one directory that
# is removed when the run ends, however it ends. The integration tests make stores of several GiB each; without
# this, a killed or failed run leaves them in /tmp and the next runs fill the disk.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(mktemp -d "${TMPDIR:-/tmp}/strata-test.XXXXXX")
# The rootless tests run the CLI as an ordinary user, who must reach the projects below it.
chmod 755 "$root"
cleanup() {
  # Tests mount tmpfs (full-disk cases) under their temp dirs; a killed test can leave one mounted.
  findmnt -rn -o TARGET | awk -v r="$root" 'index($0, r) == 1' | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "$root" 2>/dev/null || { chmod -R u+rwX "$root" 2>/dev/null; rm -rf "$root"; } || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
node_modules/.bin/tsc --noEmit -p .
TMPDIR="$root" node_modules/.bin/ava "$@"
