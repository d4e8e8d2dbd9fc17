#!/usr/bin/env bash
# Builds the test cluster's binaries from the pinned Go modules (tools/kube,
# tools/helm, tools/coredns, tools/minio): kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy, kubectl, helm, CoreDNS, MinIO. They go to
# ~/.cache/streamgrid/kube/bin, outside the clone, since CI clones afresh each
# run. A binary already built from the same go.mod/go.sum is kept, and Go's
# build and module caches make a rebuild cheap.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${KUBE_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/streamgrid/kube/bin}
mkdir -p "$out"
export GOFLAGS=${GOFLAGS:--mod=mod}
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
  export PATH=$PATH:/usr/local/go/bin  # where this machine kind installs Go
fi
command -v go >/dev/null || { echo "kube-build: Go >= 1.24 is needed (https://go.dev/dl)" >&2; exit 1; }

# The modules first, quietly: a first build would print a `go: downloading`
# line for each of some 600 modules. Their names go to a log, and one line here.
download_log="$out/../go-mod-download.log"
: > "$download_log"
for dir in tools/kube tools/helm tools/coredns tools/minio; do
  (cd "$root/$dir" && go mod download -x) >> "$download_log" 2>&1 || {
    tail -n 20 "$download_log" >&2
    echo "kube-build: go mod download failed in $dir (log: $download_log)" >&2
    exit 1
  }
done
fetched=$(grep -c '^# get .*\.zip$' "$download_log" || true)
echo "kube-build: Go modules ready ($fetched downloaded; ~/go/pkg/mod; log: $download_log)"

kube_version=$(cd "$root/tools/kube" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
minor=$(echo "$kube_version" | cut -d. -f2)
[ -n "$minor" ] || { echo "kube-build: cannot read the pinned k8s.io/kubernetes version" >&2; exit 1; }
version_flags="-X k8s.io/component-base/version.gitVersion=$kube_version \
 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/client-go/pkg/version.gitVersion=$kube_version \
 -X k8s.io/component-base/version.gitTreeState=clean"

build() {
  local dir=$1 flags=$2; shift 2
  local key  # what a binary is built from: a change to the pins or the flags rebuilds it
  key=$( (cat "$root/$dir/go.mod" "$root/$dir/go.sum"; [ -z "$flags" ] || echo "$flags") | sha256sum | cut -c1-16)
  for pkg in "$@"; do
    local name
    name=$(basename "$pkg")
    if [ -x "$out/$name" ] && [ "$(cat "$out/$name.stamp" 2>/dev/null)" = "$key" ]; then
      echo "kube-build: $name cached"
      continue
    fi
    local started=$SECONDS
    (cd "$root/$dir" && go build -trimpath -ldflags "-s -w $flags" -o "$out/$name" "$pkg")
    echo "$key" > "$out/$name.stamp"
    echo "kube-build: $name built in $((SECONDS - started)) s"
  done
}

build tools/kube "$version_flags" k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy \
  k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl
# helm's version, as its release builds stamp it (else `helm version` says just
# v3.19). Its git commit stays empty: a module zip carries none, and anything
# else there would read as a hash (`helm version --short` prints v3.19.5+g<7 chars>).
helm_version=$(cd "$root/tools/helm" && go list -m -f '{{.Version}}' helm.sh/helm/v3)
helm_flags="-X helm.sh/helm/v3/internal/version.version=$helm_version \
 -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
build tools/helm "$helm_flags" helm.sh/helm/v3/cmd/helm
build tools/coredns "" github.com/coredns/coredns
build tools/minio "" github.com/minio/minio
"$out/kube-apiserver" --version
"$out/helm" version --short
