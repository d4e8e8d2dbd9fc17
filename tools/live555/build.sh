#!/usr/bin/env bash
# Builds live555 (the LIVE555 Streaming Media libraries, 2024.06.26) and our
# small on-demand RTSP server on it (tools/live555/streamgrid_live555_server.cpp),
# for the interoperability tests (tests/integration/test_interop.py).
# live555 is not packaged in Debian; its C++ source is the PyPI sdist
# `liblivemedia` 1.0.5, downloaded with pip and checked against a pinned hash.
# Only the library sources are compiled (not its Python binding), without
# OpenSSL (no TLS/SRTP needed; Digest uses live555's own MD5).
# The binary goes to ~/.cache/streamgrid/live555/bin, keyed by the sdist's hash,
# this script and our server's source; a build with the same key is kept.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${LIVE555_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/streamgrid/live555}
out=$cache/bin
name=streamgrid-live555-server
sdist_version=1.0.5
sdist_sha256=564f65501ea5e823e5c53b1847ce3f41bd7b71ee2e9f3ba154a7e955817dfb48
server_src=$root/tools/live555/streamgrid_live555_server.cpp
mkdir -p "$out" "$cache/src"

key=$( (echo "$sdist_sha256"; cat "$0" "$server_src") | sha256sum | cut -c1-16)
if [ -x "$out/$name" ] && [ "$(cat "$out/$name.stamp" 2>/dev/null)" = "$key" ]; then
  echo "live555-build: $name cached"
  exit 0
fi
command -v g++ >/dev/null || { echo "live555-build: g++ is needed (scripts/install-system-deps.sh)" >&2; exit 1; }
started=$SECONDS

sdist=$cache/src/liblivemedia-$sdist_version.tar.gz
if [ ! -f "$sdist" ] || ! echo "$sdist_sha256  $sdist" | sha256sum -c --status; then
  pip=${PIP:-}
  if [ -z "$pip" ]; then
    if [ -x "$root/.venv/bin/pip" ]; then pip="$root/.venv/bin/pip"; else pip="python3 -m pip"; fi
  fi
  download=$(mktemp -d)
  $pip download -q --no-binary :all: --no-deps -d "$download" \
    "liblivemedia==$sdist_version"
  mv "$download/liblivemedia-$sdist_version.tar.gz" "$sdist"
  rm -rf "$download"
  echo "$sdist_sha256  $sdist" | sha256sum -c --status \
    || { echo "live555-build: $sdist does not match its pinned sha256" >&2; exit 1; }
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$sdist" -C "$work"
src=$work/liblivemedia-$sdist_version
dirs=(UsageEnvironment BasicUsageEnvironment groupsock liveMedia)
includes=()
for d in "${dirs[@]}"; do includes+=("-I$src/$d/include"); done
# The flags of live555's config.linux, less OpenSSL.
flags=(-O2 -fPIC -DSOCKLEN_T=socklen_t -D_LARGEFILE_SOURCE=1 -D_FILE_OFFSET_BITS=64
  -DNO_OPENSSL=1 -w "${includes[@]}")
export flags_joined="${flags[*]}" src
mkdir -p "$work/obj"
# One compiler per core; each source becomes obj/<dir>_<name>.o.
# RTSPServer.cpp logs each request it receives (-DDEBUG), for the tests' diagnostics.
for d in "${dirs[@]}"; do
  for f in "$src/$d"/*.cpp "$src/$d"/*.c; do [ -e "$f" ] && echo "$d/$(basename "$f")"; done
done | xargs -P "$(nproc)" -I{} bash -c '
  f={}; o="$0/obj/${f//\//_}.o"; extra=""
  [ "$f" = liveMedia/RTSPServer.cpp ] && extra=-DDEBUG
  case "$f" in
    *.c) gcc $flags_joined $extra -c "$src/$f" -o "$o" ;;
    *) g++ -std=c++20 $flags_joined $extra -c "$src/$f" -o "$o" ;;
  esac' "$work"
g++ -std=c++20 "${flags[@]}" -o "$out/$name.new" "$server_src" "$work"/obj/*.o
mv "$out/$name.new" "$out/$name"
echo "$key" > "$out/$name.stamp"
echo "live555-build: $name (live555 2024.06.26) built in $((SECONDS - started)) s"
