#!/usr/bin/env bash
# Installs streamdistill as systemd services (docs/deploy.md, "One box with systemd"):
#
#   sudo bash scripts/install_systemd.sh server
#   sudo bash scripts/install_systemd.sh edge NAME --server HOST:PORT --token TOKEN --source URI
#
# builds (scripts/build.sh) unless build/ has the binaries, installs them under --prefix
# (/usr/local), the units into /etc/systemd/system, the streamdistill user (systemd-sysusers),
# and a config into /etc/streamdistill when none is there (an existing one is kept), then
# enables and starts the unit. --root DIR installs everything under DIR instead and starts
# nothing (a package's staging tree).
set -euo pipefail
cd "$(dirname "$0")/.."
usage() {
  echo "usage: $0 server|edge NAME [--server HOST:PORT] [--token T] [--source URI] [--prefix P] [--root DIR]" >&2
  exit 2
}
role=${1:-}; shift || true
name=""
case "$role" in
  server) ;;
  edge) name=${1:-}; shift || true
        [[ "$name" =~ ^[A-Za-z0-9_.-]{1,64}$ ]] || { echo "edge NAME: 1-64 of A-Z a-z 0-9 _ . -" >&2; usage; } ;;
  *) usage ;;
esac
prefix=/usr/local root="" server=127.0.0.1:50051 token="" source=camera:0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --root) root=$2; shift 2 ;;
    --server) server=$2; shift 2 ;;
    --token) token=$2; shift 2 ;;
    --source) source=$2; shift 2 ;;
    *) usage ;;
  esac
done
if [ "$role" = edge ] && [ -z "$token" ]; then
  echo "edge: --token is required (the server's operator makes it: streamdistill-admin enrol $name ...)" >&2
  exit 2
fi

[ -x build/streamdistill-server ] && [ -x build/streamdistill-edge ] || { bash scripts/setup.sh && bash scripts/build.sh; }
DESTDIR="$root" cmake --install build --prefix "$prefix" >/dev/null

units=$root/etc/systemd/system conf=$root/etc/streamdistill
install -d "$units" "$root/etc/sysusers.d" "$conf"
# The units name /usr/local/bin: another prefix is written into them.
for unit in deploy/systemd/*.service; do
  sed "s#/usr/local/bin/#$prefix/bin/#g" "$unit" > "$units/$(basename "$unit")"
  chmod 0644 "$units/$(basename "$unit")"
done
install -m 0644 deploy/systemd/streamdistill.sysusers.conf "$root/etc/sysusers.d/streamdistill.conf"
if [ -z "$root" ]; then systemd-sysusers /etc/sysusers.d/streamdistill.conf; fi
group=$( [ -z "$root" ] && echo streamdistill || id -gn )

if [ "$role" = server ]; then
  config=$conf/server.yaml unit=streamdistill-server.service
  [ -e "$config" ] || install -m 0640 -g "$group" deploy/systemd/server.yaml "$config"
else
  config=$conf/edge-$name.yaml unit=streamdistill-edge@$name.service
  if [ ! -e "$config" ]; then
    umask 027
    sed -e "s#@NAME@#$name#g" -e "s#@SERVER@#$server#g" -e "s#@SOURCE@#$source#g" \
      deploy/systemd/edge.yaml > "$config"
    chgrp "$group" "$config"
  fi
  # The token, root's alone: the unit's LoadCredential= passes it to the edge.
  (umask 077 && printf '%s\n' "$token" > "$conf/edge-$name.token")
fi
echo "installed: $prefix/bin/streamdistill-*, $units/$unit, config $config"
if [ -n "$root" ]; then exit 0; fi
systemctl daemon-reload
systemctl enable --now "$unit"
systemctl --no-pager status "$unit" | head -5
