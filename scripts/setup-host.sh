#!/usr/bin/env bash
# Installs the Debian packages strata's tests use as real components and oracles: a Docker engine, docker-registry
# (the reference OCI distribution registry) with apache2-utils (htpasswd for its Basic auth), skopeo and
# umoci (independent image checkers), the OCI image-spec JSON schemas, bubblewrap (sandbox backend), a static
# busybox (the fixture's runnable shell), dpkg-dev/gnupg/xz/zstd (building the signed fixture archive),
# dctrl-tools (deb822 oracle), python3 (a pseudo-terminal for the Ctrl-C test), libcap2-bin (capsh: the unshare
# sandbox drops root's capabilities with it), git (diff against HEAD, git sources), mmdebstrap and GNU time (the
# benchmark), podman (builds strata's own image, Dockerfile.base, with pinned timestamps: `npm run image`).
# Idempotent; uses sudo when not root.
set -euo pipefail
pkgs=(docker.io docker-registry apache2-utils skopeo umoci golang-github-opencontainers-image-spec-dev bubblewrap busybox-static mmdebstrap
      dpkg-dev gnupg gpgv xz-utils zstd dctrl-tools python3 uidmap util-linux libcap2-bin tar time git podman)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
as_root=()
if [ "$(id -u)" != 0 ]; then
  if [ ${#missing[@]} -eq 0 ] && ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then exit 0; fi
  command -v sudo >/dev/null || { echo "setup-host: run as root to install: ${missing[*]:-apt indexes}" >&2; exit 1; }
  as_root=(sudo)
fi
# The version and relation tests read real Packages indexes from apt's lists.
"${as_root[@]}" apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
