#!/usr/bin/env bash
# Runs strata's main job on the bundled example: lock the manifest, realise the image (an OCI layout under
# examples/numpy/out/), then run NumPy inside it.
set -euo pipefail
cd "$(dirname "$0")/.."
strata=bin/strata
m=examples/numpy/strata.toml
$strata lock -m "$m"
$strata realise -m "$m" --locked --oci examples/numpy/out/oci
$strata run -m "$m" --locked -- python3 -c 'import numpy; print(numpy.__version__); print(numpy.linalg.inv(numpy.eye(3)))'
