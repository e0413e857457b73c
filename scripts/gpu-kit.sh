#!/usr/bin/env bash
# Packs what a GPU host without network or Node.js needs to run the GPU example through strata, into .gpu-kit/
# (git-ignored; about 48 MB): the pinned Node binary (stripped, xz), the production node_modules (xz), and a store
# holding exactly the .debs examples/gpu/strata.lock pins (by sha256). Copy the repository with .gpu-kit/ to the
# GPU host and run scripts/gpu-check.sh there. Needs a lock (`bin/strata lock -m examples/gpu/strata.toml`) and the
# Debian mirror (STRATA_DEBIAN_MIRROR or the host's apt sources) to fetch the .debs once.
set -euo pipefail
cd "$(dirname "$0")/.."
kit=.gpu-kit
lock=examples/gpu/strata.lock
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$kit"

# The .debs: realise once into a private store, then keep only the blobs the lock names.
STRATA_CACHE_DIR="$work/cache" bin/strata realise -m examples/gpu/strata.toml --locked
mkdir -p "$work/store/blobs/sha256"
for sha in $(sed -n 's/^sha256 = "\(.*\)"$/\1/p' "$lock"); do
  cp "$work/cache/blobs/sha256/$sha" "$work/store/blobs/sha256/"
done
tar -C "$work/store" -cf "$kit/store.tar" .

# Node: the binary the node@24 package installed, stripped.
cp node_modules/node/bin/node "$work/node"
strip "$work/node"
xz -9e -T0 -c "$work/node" > "$kit/node.xz"

# node_modules without dev dependencies and without the Node binary.
mkdir "$work/nm"
cp package.json package-lock.json "$work/nm/"
(cd "$work/nm" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund >/dev/null)
rm -rf "$work/nm/node_modules/node" "$work/nm/node_modules/.bin/node"
tar -C "$work/nm" -cf - node_modules | xz -9 -T0 > "$kit/node_modules.tar.xz"
du -sh "$kit"/*
