#!/usr/bin/env bash
# Installs every Debian/Ubuntu package streamdistill builds, runs or tests with (`images`: and
# what scripts/image.sh needs). Idempotent:
# when everything is present it changes nothing and does not touch the network.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev libopencv-dev libopencv-contrib-dev opencv-doc
  opencv-data                     # Haar cascades: the privacy filter's face detector (privacy_test, bench)
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libspdlog-dev libyaml-cpp-dev libgtest-dev libgmock-dev libcli11-dev
  libsqlite3-dev sqlite3 libzstd-dev nlohmann-json3-dev libssl-dev
  gnuplot-nox openssl
  libcpp-httplib-dev prometheus   # the daemons' /metrics; prometheus_test scrapes them with the real Prometheus
  chromium                        # dashboard_test renders the server's dashboard headless
  # rtsp_reconnect_test: a real RTSP server on loopback (scripts/rtsp_test_server.py, GStreamer's
  # RTSP server from /usr/bin/python3) serving the sample video as Motion-JPEG
  python3 python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good gstreamer1.0-libav
  clang-14 libclang-rt-14-dev llvm-14   # sanitizer and libFuzzer builds (scripts/sanitize.sh, fuzz.sh)
  postgresql libpqxx-dev haproxy  # the cluster backend (docs/scale-out.md); tests start their own PostgreSQL
  systemd                         # deploy_test: systemd-analyze verify and security on deploy/systemd
  # the edge's object events over MQTT (libmosquitto); mqtt_events_test starts a real broker and
  # subscribes with mosquitto_sub
  libmosquitto-dev mosquitto mosquitto-clients
)
# deploy_test renders deploy/k8s with `kubectl kustomize`: Debian's kubernetes-client (1.20),
# unless a kubectl is on the PATH already (another package's kubectl owns /usr/bin/kubectl).
command -v kubectl >/dev/null || PACKAGES+=(kubernetes-client)
# `setup.sh images`: what scripts/image.sh builds the container images with, besides.
if [ "${1:-}" = images ]; then PACKAGES+=(podman runc mmdebstrap uidmap); fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
