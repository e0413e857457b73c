#!/usr/bin/env bash
# Runs on a GPU host with no network and no Node.js, from a copy of the repository that holds .gpu-kit/ (made by
# scripts/gpu-kit.sh): installs the kit's Node and node_modules, realises examples/gpu offline from the kit's store,
# then runs the CUDA check through `strata run` in the sandbox backend, as root and as an ordinary user.
# The mirror is pointed at a closed port, so any attempt to fetch would fail loudly.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
kit=$root/.gpu-kit
step() { printf '\n$ %s\n' "$*"; "$@"; echo "[exit $?]"; }

mkdir -p node_modules/node/bin
tar -xJf "$kit/node_modules.tar.xz"
xz -dc "$kit/node.xz" > node_modules/node/bin/node
chmod +x node_modules/node/bin/node
mkdir -p node_modules/.bin && ln -sf ../node/bin/node node_modules/.bin/node
export STRATA_CACHE_DIR=/tmp/strata-cache STRATA_DEBIAN_MIRROR=http://127.0.0.1:9/closed
rm -rf "$STRATA_CACHE_DIR" && mkdir -p "$STRATA_CACHE_DIR" && tar -xf "$kit/store.tar" -C "$STRATA_CACHE_DIR"
s=$root/bin/strata

echo "== host"
uname -srm; sed -n 's/^PRETTY_NAME=//p' /etc/os-release; cat /proc/driver/nvidia/version
nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader
command -v bwrap || echo "bwrap: not installed"; command -v docker || echo "docker: not installed"
node_modules/.bin/node --version

cd examples/gpu
echo "== as root"
step "$s" realise --locked --oci /tmp/cuda-oci
step "$s" run --locked -- python3 cuda_check.py
step "$s" run --locked -- nvidia-smi
step "$s" run --locked -- sh -c 'echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; ls /run/opengl-driver/lib /run/opengl-driver/bin; ls /dev/nvidia* /dev/nvidia-caps; id'
step "$s" run --locked --gpus 0 -- sh -c 'ls /dev | grep nvidia'
step "$s" run --locked --gpus none -- python3 cuda_check.py
printf '%s\n' 'echo "shell: $0, PS1=$PS1"' 'nvidia-smi -L' 'exit 3' > /tmp/shell-input
step sh -c "'$s' shell --locked < /tmp/shell-input"
for m in unshare unshare-compat; do
  echo "== entering a realised environment, 5 times: STRATA_SANDBOX=$m strata run --locked -- true"
  for i in 1 2 3 4 5; do STRATA_SANDBOX=$m /usr/bin/time -f '%e s' "$s" run --locked -- true 2>&1 | grep -v 'using the'; done
done

echo "== as an ordinary user (rootless: user namespaces)"
id strata-user >/dev/null 2>&1 || useradd -m strata-user
rm -rf /home/strata-user/strata-copy /home/strata-user/cache
cp -a "$root" /home/strata-user/strata-copy
rm -rf /home/strata-user/strata-copy/.gpu-kit
mkdir -p /home/strata-user/cache && tar -xf "$kit/store.tar" -C /home/strata-user/cache
chown -R strata-user: /home/strata-user
cat /proc/sys/kernel/apparmor_restrict_unprivileged_userns 2>/dev/null | sed 's/^/apparmor_restrict_unprivileged_userns=/'
cat /proc/sys/user/max_user_namespaces | sed 's/^/max_user_namespaces=/'
step runuser -u strata-user -- env HOME=/home/strata-user STRATA_CACHE_DIR=/home/strata-user/cache STRATA_DEBIAN_MIRROR=$STRATA_DEBIAN_MIRROR \
  sh -c 'cd /home/strata-user/strata-copy/examples/gpu && ../../bin/strata run --locked -- sh -c "id; python3 cuda_check.py; touch made-inside" && ls -ln made-inside'
