#!/usr/bin/env bash
# Images for the test node, without a registry:
#   streamgrid-debian:bookworm   a minbase Debian rootfs from debootstrap, `podman import`ed
#   streamgrid-debian-build:bookworm   the same with gcc and Python's headers (a build stage)
#   streamgrid-runtime-{gateway,operator,capture}:dev   + a virtualenv with that
#                                component's dependency group (offline, from a wheelhouse)
#   streamgrid-{gateway,operator,capture}:dev   the repository's Containerfiles on top
#   streamgrid-pause:dev         the pod sandbox (tools/node/pause.c, static)
#   streamgrid-minio:dev         the chart's S3: MinIO built by tools/kube/build.sh
# then saved as OCI archives into $NODE_CACHE/images, which the test fixture
# imports into its containerd. Slow steps are cached by the hash of their
# inputs (the rootfs tarball, the wheelhouse) or by podman's layer cache.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/tools/node
cache=${NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamgrid/node}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
export CONTAINERS_CONF=$here/containers.conf
mkdir -p "$cache/images"
log() { echo "node-images: $*"; }
step_started=$SECONDS
timed() { log "$1 in $((SECONDS - step_started)) s"; step_started=$SECONDS; }

# 1. Debian rootfs images (debootstrap), each cached as a tarball keyed by its
#    packages: the base every image runs on, and the capture image's build
#    stage, which also has a C compiler and Python's headers.
rootfs_image() {
  local image=$1 packages=$2 tar key tmp
  tar=$cache/debian-bookworm-$(echo "$packages $mirror" | sha256sum | cut -c1-12).tar
  if [ ! -s "$tar" ]; then
    tmp=$(mktemp -d "$cache/rootfs.XXXXXX")
    debootstrap --variant=minbase --include="$packages" bookworm "$tmp/rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1 \
      || { tail -20 "$tmp/debootstrap.log" >&2; exit 1; }
    rm -rf "$tmp/rootfs/var/cache/apt/archives/"*.deb "$tmp/rootfs/var/lib/apt/lists/"*
    tar -C "$tmp/rootfs" --numeric-owner -cf "$tar.part" .
    mv "$tar.part" "$tar"
    rm -rf "$tmp"
    timed "debootstrap $image"
  else
    log "debootstrap $image cached"
  fi
  key=$(basename "$tar")
  if [ "$(podman image inspect --format '{{index .Config.Labels "io.streamgrid.rootfs"}}' "$image" 2>/dev/null)" != "$key" ]; then
    podman import --quiet --change "LABEL io.streamgrid.rootfs=$key" --change 'CMD ["/bin/bash"]' \
      "$tar" "$image" >/dev/null
    timed "podman import $image"
  fi
}
base=localhost/streamgrid-debian:bookworm
builder=localhost/streamgrid-debian-build:bookworm
rootfs_image "$base" python3,python3-venv,ca-certificates
rootfs_image "$builder" python3,python3-venv,python3-dev,gcc,libc6-dev

# 2. Wheelhouse: the project's dependencies and build backend, for offline installs.
wheels=$cache/wheels-$(cat "$root/pyproject.toml" | sha256sum | cut -c1-12)
if [ ! -s "$wheels/requirements.txt" ]; then
  python=${PYTHON:-$root/.venv/bin/python}
  rm -rf "$wheels.part" && mkdir -p "$wheels.part"
  "$python" -m pip wheel -q --wheel-dir "$wheels.part" "$root" "setuptools>=68" wheel
  rm -f "$wheels.part"/streamgrid-*.whl
  # Everything but the build backend is a runtime dependency.
  # Paths as the build sees the wheelhouse (mounted at /wheels).
  (cd "$wheels.part" && ls ./*.whl | sed 's|^\./||' | grep -v -E '^(setuptools|wheel)-' | sed 's|^|/wheels/|' > requirements.txt)
  rm -rf "$wheels" && mv "$wheels.part" "$wheels"
  timed "wheelhouse"
fi

# 3. Images, each through podman's layer cache; builds have no network.
build() {
  local tag=$1 file=$2 from=$3
  shift 3
  podman build --quiet --network=none --volume "$wheels:/wheels:ro" \
    --build-arg "BASE=$from" --build-arg "PIP_ARGS=--no-index --find-links /wheels" "$@" \
    -f "$file" -t "$tag" "$root" >/dev/null
  timed "build $tag"
}
for component in gateway operator capture; do
  build "localhost/streamgrid-runtime-$component:dev" "$here/Containerfile.runtime" "$base" \
    --build-arg "GROUP=$component"
done
build localhost/streamgrid-gateway:dev "$root/gateway/Containerfile" localhost/streamgrid-runtime-gateway:dev
build localhost/streamgrid-operator:dev "$root/operator/Containerfile" localhost/streamgrid-runtime-operator:dev
build localhost/streamgrid-capture:dev "$root/capture-pod/Containerfile" localhost/streamgrid-runtime-capture:dev \
  --build-arg "BUILDER=$builder"

bin=${KUBE_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/streamgrid/kube/bin}
[ -x "$bin/minio" ] || { echo "node-images: $bin/minio missing: run tools/kube/build.sh" >&2; exit 1; }
context=$(mktemp -d)
cp "$bin/minio" "$context/minio"
podman build --quiet --network=none --build-arg "BASE=$base" \
  -f "$here/Containerfile.minio" -t localhost/streamgrid-minio:dev "$context" >/dev/null
rm -rf "$context"
timed "build localhost/streamgrid-minio:dev"

pause_key=$(sha256sum "$here/pause.c" | cut -c1-12)
if [ "$(podman image inspect --format '{{index .Config.Labels "io.streamgrid.pause"}}' localhost/streamgrid-pause:dev 2>/dev/null)" != "$pause_key" ]; then
  tmp=$(mktemp -d)
  gcc -static -O2 -o "$tmp/pause" "$here/pause.c"
  tar -C "$tmp" -cf "$tmp/pause.tar" pause
  podman import --quiet --change "LABEL io.streamgrid.pause=$pause_key" --change 'ENTRYPOINT ["/pause"]' \
    --change 'USER 65535:65535' "$tmp/pause.tar" localhost/streamgrid-pause:dev >/dev/null
  rm -rf "$tmp"
  timed "pause image"
fi

# 4. OCI archives, rewritten only when the image changed.
for name in pause gateway operator capture minio; do
  image=localhost/streamgrid-$name:dev
  id=$(podman image inspect --format '{{.Id}}' "$image")
  archive=$cache/images/$name.tar
  if [ "$(cat "$archive.id" 2>/dev/null)" != "$id" ]; then
    rm -f "$archive"
    podman save --quiet --format oci-archive -o "$archive" "$image"
    echo "$id" > "$archive.id"
    timed "save $name"
  fi
done
log "images ready in $cache/images"
