#!/usr/bin/env bash
# Debian packages the tests (and the demo camera) need: GStreamer's RTSP server
# with PyGObject for the camera, x264 for H.264, ffmpeg for the benchmarks'
# baselines, python3-venv for the virtualenv, python3-dev and gcc for the
# capture worker's C demux loop, etcd and openssl for the test
# Kubernetes control plane; containerd, runc, CNI plugins, podman, buildah,
# debootstrap, iptables and gcc (the static pause binary) for the test node.
# Installs only what is missing.
set -euo pipefail

packages=(
  python3 python3-venv python3-dev python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-tools ffmpeg make etcd-server openssl
  # The test node (issue 5): containers, pod networking, image builds.
  containerd runc containernetworking-plugins podman buildah catatonit debootstrap
  iptables conntrack iproute2 ethtool socat gcc libc6-dev
  # The interoperability tests (issue 11): live555's C++ server; TLS for the
  # test camera's rtsps:// port (GIO's GnuTLS backend).
  g++ glib-networking

)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "system packages: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
