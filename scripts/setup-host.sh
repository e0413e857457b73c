#!/usr/bin/env bash
# Installs the Debian packages strata's tests use as real components and oracles: a Docker engine, skopeo and
# umoci (independent image checkers), the OCI image-spec JSON schemas, bubblewrap (sandbox backend), a static
# busybox (the fixture's runnable shell), dpkg-dev/gnupg/xz/zstd (building the signed fixture archive),
# dctrl-tools (deb822 oracle), mmdebstrap (the benchmark's peer). Idempotent; needs root.
set -euo pipefail
pkgs=(docker.io skopeo umoci golang-github-opencontainers-image-spec-dev bubblewrap busybox-static mmdebstrap
      dpkg-dev gnupg gpgv xz-utils zstd dctrl-tools uidmap util-linux tar)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if [ "$(id -u)" != 0 ]; then
  [ ${#missing[@]} -eq 0 ] || { echo "setup-host: missing Debian packages (run as root to install): ${missing[*]}" >&2; exit 1; }
  exit 0
fi
# The version and relation tests read real Packages indexes from apt's lists.
apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
