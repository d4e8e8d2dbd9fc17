#!/usr/bin/env bash
# Debian packages, by what needs them. Installs only what is missing, with
# apt-get (as root, else through sudo: it says so before asking).
#
#   scripts/install-system-deps.sh runtime   `make serve`: the virtualenv, and gcc
#                                            and Python's headers for the capture
#                                            worker's C receive loop
#   scripts/install-system-deps.sh camera    `make demo-camera`: the runtime's, and
#                                            GStreamer's RTSP server with PyGObject,
#                                            its plugins and x264 (plugins-ugly)
#   scripts/install-system-deps.sh [all]     `make test`: everything below
set -euo pipefail

runtime=(python3 python3-venv python3-dev gcc libc6-dev make)
camera=(
  python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  # TLS for the camera's rtsps:// port (GIO's GnuTLS backend).
  glib-networking
)
packages=(
  "${runtime[@]}" "${camera[@]}"
  # The tests: ffmpeg for the benchmarks' baselines and test media, GStreamer's
  # tools; etcd and openssl for the test Kubernetes control plane.
  gstreamer1.0-tools ffmpeg etcd-server openssl
  # The test node (issue 5): containers, pod networking, image builds.
  containerd runc containernetworking-plugins podman buildah catatonit debootstrap
  iptables conntrack iproute2 ethtool socat
  # The interoperability tests (issue 11): live555's C++ server.
  g++
  # The dashboard's browser test (issue 15): headless Chromium and its driver.
  chromium chromium-driver
  # The chart's alert rules (issue 23): promtool checks and unit-tests them
  # (tests/e2e/test_alerts.py); the package's server is stopped below.
  prometheus
  # The RTP parser's libFuzzer target (issue 21): clang with its fuzzer and
  # sanitizer runtimes; llvm-profdata and llvm-cov for its line coverage.
  clang libclang-rt-14-dev llvm

)

mode=${1:-all}
case "$mode" in
  runtime) wanted=("${runtime[@]}") ;;
  camera) wanted=("${runtime[@]}" "${camera[@]}") ;;
  all) wanted=("${packages[@]}") ;;
  *) echo "usage: $0 [runtime|camera|all]" >&2; exit 2 ;;
esac

# One run at a time (`make serve` and `make demo-camera` in two terminals): the
# second waits, then finds the first's packages installed.
exec 9>"${TMPDIR:-/tmp}/streamgrid-system-deps.lock"
flock 9

missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages ($mode): all present"
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "system packages ($mode): missing ${missing[*]}; installing them needs root:" >&2
    echo "  apt-get install ${missing[*]}" >&2
    exit 1
  fi
  sudo="sudo"
  echo "system packages ($mode): installing them needs root: apt-get runs through sudo"
fi
echo "system packages ($mode): installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Booted with systemd, the package started its server: promtool is all we use.
if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ] \
  && systemctl is-enabled --quiet prometheus.service 2>/dev/null; then
  $sudo systemctl disable --now prometheus.service
fi
