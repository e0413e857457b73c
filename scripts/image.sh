#!/usr/bin/env bash
# `npm run image`: strata's own container image, built from this checkout with no network and no public base image,
# loaded into the engine at DOCKER_HOST as strata:latest and strata:<version>.
#  1. the base (base/strata.toml, locked in base/strata.lock, which must be up to date) is realised by strata itself
#     with --load as strata-base:latest (the BASE default of Dockerfile.base), and as an OCI layout for podman;
#  2. the build context is staged: strata's tracked files (without tests, bench, CI) and its production node_modules
#     (the packages package-lock.json does not mark dev, copied from the checkout's node_modules, with the pinned Node
#     binary) under opt/strata; /etc/passwd and /etc/group with a non-root user `strata` (1000:1000) and the empty
#     /work under rootfs; /cache (under owned) and /home/strata (under home), owned by that user. Modes are normalised
#     (directories 755, files 755 or 644), every mtime is SOURCE_DATE_EPOCH (else the commit time of HEAD), owners
#     are the builder's (root, or 1000:1000 by --chown);
#  3. Dockerfile.base is built by the builder that gives one image ID for one commit:
#     - docker (`docker buildx build --load` with SOURCE_DATE_EPOCH) when the docker CLI has buildx and the engine's
#       builder is BuildKit >= 0.11, the first that applies SOURCE_DATE_EPOCH to the image's and its history's created
#       times (Docker Engine >= 24 ships it; 23 has BuildKit 0.10); the layers' file times are the staged ones, and
#       no step makes a directory of its own (WORKDIR finds /work);
#     - podman otherwise: `podman build --timestamp` (the image's and every history entry's created time, and the
#       mtime of every file it commits, are that time) with --format oci, in a private storage under a temporary
#       directory; the image is saved as a docker-archive and docker-loaded, which keeps its config bytes and so
#       its image ID. Docker's legacy builder (Docker 20.10, or a CLI without buildx) stamps each step's build time.
#     The choice, and why, is said in one line; STRATA_IMAGE_BUILDER=docker|podman overrides it (docker on an engine
#     without BuildKit runs the legacy `docker build -f Dockerfile.base`, which works but is not reproducible).
# Environment: DOCKER_HOST (the engine), SOURCE_DATE_EPOCH, STRATA_IMAGE_BUILDER, STRATA_IMAGE_TMP (where the temporary
# directory goes), STRATA_CACHE_DIR (strata's store for the base's .debs and layers), STRATA_DEBIAN_MIRROR (as for
# any realise); STRATA_IMAGE_LOAD=0 builds with podman and prints the image ID without loading it (the test's
# second build).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
say() { echo "npm run image: [$(date +%T)] $*" >&2; }
die() { echo "npm run image: $*" >&2; exit 1; }

engine=${DOCKER_HOST:-unix:///var/run/docker.sock}
command -v docker >/dev/null || die "the docker CLI is not installed (it loads and tags the image in the engine at $engine)"
docker version --format '{{.Server.APIVersion}}' >/dev/null 2>&1 || die "no Docker engine answers at $engine: start one or set DOCKER_HOST"
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct HEAD)}

# The builder: docker where the engine's builder applies SOURCE_DATE_EPOCH, else podman; STRATA_IMAGE_BUILDER decides.
server=$(docker version --format '{{.Server.Version}}' 2>/dev/null || echo unknown)
buildkit= driver= reproducible=0
if docker buildx version >/dev/null 2>&1; then
  inspect=$(docker buildx inspect 2>/dev/null || true)
  driver=$(sed -n -E 's/^Driver:[[:space:]]*([^[:space:]]+).*/\1/p' <<<"$inspect" | head -1)
  # "BuildKit version: v0.13.1" (older buildx: "Buildkit: v0.11.6"); none for a builder that has not started.
  buildkit=$(sed -n -E 's/^[[:space:]]*buildkit( version)?:[[:space:]]*v?([0-9]+\.[0-9]+\.[0-9]+).*/\2/Ip' <<<"$inspect" | head -1)
  IFS=. read -r bk_major bk_minor _ <<<"${buildkit:-0.0.0}"
  if [ "$bk_major" -gt 0 ] || [ "$bk_minor" -ge 11 ]; then reproducible=1; fi
  # The docker driver is the engine's own BuildKit, which Debian's engine reports as v0.0.0+unknown: there the
  # engine's version tells (Docker Engine 24.0 vendors BuildKit 0.11.6, 23.0 vendors 0.10.6).
  if [ "$driver" = docker ] && [ "${buildkit:-0.0.0}" = 0.0.0 ]; then
    major=${server%%.*}
    if [[ "$major" =~ ^[0-9]+$ ]] && [ "$major" -ge 24 ]; then reproducible=1 buildkit="the engine's own"; else buildkit=; fi
  fi
fi
builder=${STRATA_IMAGE_BUILDER:-}
case "$builder" in
  docker | podman) why="STRATA_IMAGE_BUILDER=$builder" ;;
  '')
    if [ "$reproducible" = 1 ]; then
      builder=docker why="Docker $server, BuildKit $buildkit: docker buildx build applies SOURCE_DATE_EPOCH"
    elif ! docker buildx version >/dev/null 2>&1; then
      builder=podman why="Docker $server and a docker CLI without buildx: the legacy docker build stamps each step's build time into the image"
    elif [ -z "$buildkit" ]; then
      builder=podman why="Docker $server: docker buildx inspect names no BuildKit version (a builder not started?), so SOURCE_DATE_EPOCH support is unknown"
    else
      builder=podman why="Docker $server, BuildKit $buildkit: SOURCE_DATE_EPOCH needs BuildKit >= 0.11 (Docker Engine >= 24)"
    fi
    ;;
  *) die "STRATA_IMAGE_BUILDER must be docker or podman, not \"$builder\"" ;;
esac
if [ "$builder" = docker ] && [ "$reproducible" != 1 ]; then
  say "builder: docker ($why); not reproducible here (Docker $server${buildkit:+, BuildKit $buildkit}): each build gives another image ID"
else
  say "builder: $builder ($why)"
fi
if [ "$builder" = podman ]; then
  command -v podman >/dev/null || die "podman is not installed (it builds Dockerfile.base with pinned timestamps): run scripts/setup-host.sh or apt-get install podman"
  command -v skopeo >/dev/null || die "skopeo is not installed (it copies the base into the builder's storage): run scripts/setup-host.sh"
fi
[ -x node_modules/.bin/node ] || die "node_modules has no pinned Node binary: run \`npm ci\` first"
node=node_modules/.bin/node
version=$("$node" -p 'JSON.parse(require("node:fs").readFileSync("package.json", "utf8")).version')

work=$(mktemp -d "${STRATA_IMAGE_TMP:-${TMPDIR:-/tmp}}/strata-image.XXXXXX")
# podman refuses a runroot over 50 characters: that one goes straight under /tmp.
runroot=$(mktemp -d /tmp/strata-image-run.XXXXXX)
podman_() { podman --root "$work/storage" --runroot "$runroot" --storage-driver overlay --cgroup-manager cgroupfs --events-backend none "$@"; }
cleanup() {
  [ "$builder" != podman ] || podman_ rmi -a -f >/dev/null 2>&1 || true
  # overlay mounts the builder may leave behind
  findmnt -rn -o TARGET | awk -v r="$work" 'index($0, r) == 1' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  findmnt -rn -o TARGET | awk -v r="$runroot" 'index($0, r) == 1' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$work" "$runroot"
}
trap cleanup EXIT

say "the base: strata lock --check, then strata realise (base/strata.lock)"
bin/strata lock --check -m base/strata.toml >&2 || die "base/strata.lock is not up to date with base/strata.toml: run \`bin/strata lock -m base/strata.toml\` and commit it"
oci=()
[ "$builder" != podman ] || oci=(--oci "$work/base-oci")
bin/strata realise -m base/strata.toml --locked "${oci[@]}" --load --tag strata-base:latest >&2

say "staging the build context"
ctx=$work/ctx
mkdir -p "$ctx/opt/strata" "$ctx/rootfs/work" "$ctx/owned/cache" "$ctx/home/strata"
cp -a base/rootfs/. "$ctx/rootfs/"
git ls-files -z --cached -- . ':!:tests' ':!:bench' ':!:.ci' ':!:base' ':!:Dockerfile.base' ':!:examples/*/out' \
  | (cd "$root" && xargs -0 cp --parents -P -t "$ctx/opt/strata" --)
# Production node_modules: every package the lock does not mark dev (or devOptional) that the checkout has installed.
"$node" -e '
  const { packages } = JSON.parse(require("node:fs").readFileSync("package-lock.json", "utf8"));
  for (const [p, e] of Object.entries(packages)) {
    if (p === "" || e.dev || e.devOptional || e.link || p.startsWith("node_modules/node/node_modules/")) continue;
    if (require("node:fs").existsSync(p)) process.stdout.write(p + "\0");
  }' | xargs -0 -r cp -a --parents -t "$ctx/opt/strata" --
# Only nested packages were copied with their parents; drop any nested node_modules the parents carried in whole
# that the lock marks dev.
"$node" -e '
  const fs = require("node:fs");
  const { packages } = JSON.parse(fs.readFileSync("package-lock.json", "utf8"));
  for (const [p, e] of Object.entries(packages)) if (p !== "" && (e.dev || e.devOptional)) fs.rmSync(process.argv[1] + "/" + p, { recursive: true, force: true });
' "$ctx/opt/strata"
# The pinned Node is node_modules/node/bin/node, a copy (a hard link) of the platform package's binary; that package's
# headers and npm, and the installer, are not needed at run time.
rm -rf "$ctx/opt/strata/node_modules/node/node_modules"
[ -f "$ctx/opt/strata/node_modules/node/bin/node" ] || die "node_modules/node/bin/node is not the Node binary: run \`npm ci\` again"
mkdir -p "$ctx/opt/strata/node_modules/.bin"
ln -sfn ../node/bin/node "$ctx/opt/strata/node_modules/.bin/node"
rm -f "$ctx/opt/strata/node_modules/.package-lock.json"
find "$ctx" -type d -exec chmod 0755 {} +
find "$ctx" -type f -perm /111 -exec chmod 0755 {} +
find "$ctx" -type f ! -perm /111 -exec chmod 0644 {} +
# One mtime for everything (podman's --timestamp sets it anyway; BuildKit's COPY keeps the context's).
find "$ctx" -exec touch -h -d "@$epoch" {} +
say "context: $(du -sh --apparent-size "$ctx" | cut -f1), $(find "$ctx" -type f | wc -l) files; SOURCE_DATE_EPOCH=$epoch"

if [ "$builder" = docker ]; then
  if [ "$reproducible" = 1 ]; then
    say "docker buildx build -f Dockerfile.base --load, SOURCE_DATE_EPOCH=$epoch"
    SOURCE_DATE_EPOCH=$epoch docker buildx build --quiet --load --provenance=false --build-arg "SOURCE_DATE_EPOCH=$epoch" \
      --build-arg BASE=strata-base:latest -f "$root/Dockerfile.base" -t strata:latest "$ctx" >/dev/null
  else
    say "docker build -f Dockerfile.base"
    docker build --quiet --build-arg BASE=strata-base:latest -f "$root/Dockerfile.base" -t strata:latest "$ctx" >/dev/null
  fi
  id=$(docker image inspect --format '{{.Id}}' strata:latest)
  docker tag "$id" "strata:$version"
  echo "strata:latest strata:$version $id"
  exit 0
fi

say "podman build -f Dockerfile.base --timestamp $epoch"
# skopeo, not podman pull, which names an image from an OCI layout after the layout's path.
skopeo copy -q "oci:$work/base-oci:latest" "containers-storage:[overlay@$work/storage+$runroot]localhost/strata-base:latest" >&2
podman_ build --quiet --timestamp "$epoch" --format oci --layers=false --network none --pull=never \
  --build-arg BASE=localhost/strata-base:latest -f "$root/Dockerfile.base" -t strata:latest "$ctx" >/dev/null
id=$(podman_ image inspect --format '{{.Id}}' strata:latest)
if [ "${STRATA_IMAGE_LOAD:-1}" = 0 ]; then echo "sha256:$id"; exit 0; fi
podman_ save --quiet --format docker-archive -o "$work/strata.tar" strata:latest
say "docker load into $engine"
docker load -q -i "$work/strata.tar" >/dev/null
docker tag "sha256:$id" strata:latest
docker tag "sha256:$id" "strata:$version"
docker rmi localhost/strata:latest >/dev/null 2>&1 || true
echo "strata:latest strata:$version sha256:$id"
