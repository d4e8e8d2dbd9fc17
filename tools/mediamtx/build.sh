#!/usr/bin/env bash
# Builds mediamtx, the RTSP server of the interoperability tests
# (tests/integration/test_interop.py), from the version pinned in
# tools/mediamtx/go.mod. Its main package embeds files that its `go generate`
# would download (hls.js) or compute from git (VERSION), so it is built from a
# copy of the module's source with those files written. The binary goes to
# ~/.cache/streamgrid/mediamtx/bin (outside the clone, since CI clones afresh);
# one already built from the same go.mod/go.sum is kept.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${MEDIAMTX_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/streamgrid/mediamtx/bin}
mkdir -p "$out"
export GOFLAGS=${GOFLAGS:--mod=mod}
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
  export PATH=$PATH:/usr/local/go/bin  # where this machine kind installs Go
fi
command -v go >/dev/null || { echo "mediamtx-build: Go >= 1.24 is needed (https://go.dev/dl)" >&2; exit 1; }

key=$(cat "$root/tools/mediamtx/go.mod" "$root/tools/mediamtx/go.sum" | sha256sum | cut -c1-16)
if [ -x "$out/mediamtx" ] && [ "$(cat "$out/mediamtx.stamp" 2>/dev/null)" = "$key" ]; then
  echo "mediamtx-build: cached ($("$out/mediamtx" --version 2>/dev/null || true))"
  exit 0
fi

started=$SECONDS
cd "$root/tools/mediamtx"
version=$(go list -m -f '{{.Version}}' github.com/bluenviron/mediamtx)
src=$(go mod download -json "github.com/bluenviron/mediamtx@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -d "$src" ] || { echo "mediamtx-build: no source for mediamtx $version in the module cache" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$src/." "$work/"
chmod -R u+w "$work"  # the module cache is read-only
echo "$version" > "$work/internal/core/VERSION"
# The HLS server is off in the tests; an empty hls.js satisfies its go:embed.
: > "$work/internal/servers/hls/hls.min.js"
(cd "$work" && go build -trimpath -ldflags "-s -w" -o "$out/mediamtx.new" .)
mv "$out/mediamtx.new" "$out/mediamtx"
echo "$key" > "$out/mediamtx.stamp"
echo "mediamtx-build: mediamtx $version built in $((SECONDS - started)) s"
