#!/usr/bin/env bash
# Builds the container images from Debian packages and this checkout's build (docs/deploy.md,
# "Containers"), with podman, never from a registry image:
#
#   bash scripts/image.sh [--tag TAG] [--mirror URL]
#   bash scripts/image.sh --postgres [--tag TAG] [--mirror URL]
#
#   localhost/streamdistill-runtime:TAG  Debian bookworm's Essential set plus exactly the
#                                        runtime libraries the binaries link (found from their
#                                        ELF NEEDED entries), made by mmdebstrap; no compiler,
#                                        no -dev package, no apt; user streamdistill (10001)
#   localhost/streamdistill-server:TAG   + streamdistill-server, -admin (its health check), -export
#   localhost/streamdistill-edge:TAG     + streamdistill-edge
#   localhost/streamdistill-haproxy:TAG  bookworm's Essential set plus haproxy (the cluster's router)
#
# --postgres makes only localhost/streamdistill-postgres:TAG (bookworm's Essential set plus
# postgresql-15, a throw-away database initialised at its first start), for the cluster check
# (scripts/kube_check.sh --overlay cluster) and nothing else: the project ships no database; a
# deployment points storage.dsn at the operator's PostgreSQL (docs/deploy.md).
#
# Prints each image's size and the packages that fill the runtime most. TAG defaults to the
# project's version; `latest` is tagged too. Takes a few minutes (the packages come from the
# Debian mirror); out/images/ keeps the root file system tars.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=""
MIRROR=http://deb.debian.org
POSTGRES=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) TAG=$2; shift 2 ;;
    --mirror) MIRROR=$2; shift 2 ;;
    --postgres) POSTGRES=1; shift ;;
    *) echo "usage: $0 [--postgres] [--tag TAG] [--mirror URL]" >&2; exit 2 ;;
  esac
done
start=$SECONDS
bash scripts/setup.sh images
TAG=${TAG:-$(sed -n 's/^project(streamdistill VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)}
export CONTAINERS_CONF=$PWD/deploy/podman/containers.conf
out=$PWD/out/images
sources=("deb $MIRROR/debian bookworm main" "deb $MIRROR/debian bookworm-updates main"
         "deb $MIRROR/debian-security bookworm-security main")
slim=(--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*'
      --dpkgopt='path-exclude=/usr/share/info/*')

if [ -n "$POSTGRES" ]; then
  # The cluster check's database: PostgreSQL 15 as its package installs it, the cluster its
  # postinst makes removed; the entrypoint makes a fresh one at the first start (initdb, the
  # role POSTGRES_USER with the password in POSTGRES_PASSWORD_FILE, the database POSTGRES_DB;
  # password logins over TCP), as the postgres user, data in the container's own layer.
  mkdir -p "$out"
  echo "image: streamdistill-postgres (mmdebstrap, bookworm + postgresql-15; for the cluster check only)"
  mmdebstrap --quiet --variant=essential --include=postgresql-15 "${slim[@]}" \
    --customize-hook='rm -rf "$1/var/lib/postgresql/15" "$1/etc/postgresql/15"' \
    --customize-hook='upload scripts/postgres_entrypoint.sh /usr/local/bin/postgres-entrypoint' \
    --customize-hook='chmod 755 "$1/usr/local/bin/postgres-entrypoint"' \
    bookworm "$out/postgres.tar" "${sources[@]}"
  podman import --quiet --change 'USER postgres' --change 'EXPOSE 5432' \
    --change 'ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]' \
    "$out/postgres.tar" "localhost/streamdistill-postgres:$TAG" >/dev/null
  podman tag "localhost/streamdistill-postgres:$TAG" localhost/streamdistill-postgres:latest
  printf '  %-28s %s\n' "streamdistill-postgres:$TAG" \
    "$(podman image inspect --format '{{.Size}}' "localhost/streamdistill-postgres:$TAG" | awk '{printf "%.0f MB", $1 / 1e6}')"
  echo "image: done in $((SECONDS - start)) s"
  exit 0
fi

bash scripts/build.sh
rm -rf "$out" && mkdir -p "$out"

# What goes into the images: `cmake --install` into a staging folder (binaries, example configs).
stage=$out/stage
cmake --install build --prefix "$stage" >/dev/null
mkdir -p "$stage/examples"
cp "$stage/share/streamdistill/examples/"*.yaml "$stage/examples/"

# The runtime packages: the package of every library the binaries name in their NEEDED
# entries (apt brings what those need in turn).
binaries=("$stage/bin/streamdistill-server" "$stage/bin/streamdistill-edge" "$stage/bin/streamdistill-admin"
          "$stage/bin/streamdistill-export")
packages=$(for b in "${binaries[@]}"; do readelf -d "$b" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; done | sort -u |
  while read -r lib; do
    path=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64/ {print $NF; exit}')
    [ -n "$path" ] || { echo "image: $lib (NEEDED) is not installed here" >&2; exit 1; }
    dpkg -S "$(realpath "$path")" 2>/dev/null | head -1 | cut -d: -f1
  done | sort -u)
# The edge's face redaction reads OpenCV's cascades from opencv-data (edge.yaml privacy.faces).
packages="$packages opencv-data"
echo "image: runtime packages: $(echo $packages)"

# The daemons' user and the folders they own; then the installed sizes, largest first.
user_hook='echo "streamdistill:x:10001:10001:streamdistill:/var/lib/streamdistill:/usr/sbin/nologin" >> "$1/etc/passwd";
  echo "streamdistill:x:10001:" >> "$1/etc/group";
  mkdir -p "$1/var/lib/streamdistill" "$1/etc/streamdistill"; chown 10001:10001 "$1/var/lib/streamdistill"'
sizes_hook() { echo "dpkg-query --admindir=\"\$1/var/lib/dpkg\" -W -f='\${Installed-Size}\t\${Package}\n' | sort -rn > $1"; }

rootfs() {  # name, extra packages...
  local name=$1
  shift
  local include
  include=$(echo "$@" | tr ' ' ',')
  mmdebstrap --quiet --variant=essential --include="$include" "${slim[@]}" \
    --customize-hook="$user_hook" --customize-hook="$(sizes_hook "$out/$name.packages")" \
    bookworm "$out/$name.tar" "${sources[@]}"
}

echo "image: runtime root file system (mmdebstrap, bookworm)"
rootfs runtime $packages
# Nothing of a toolchain may come in with the libraries.
if grep -P '\t(gcc|g\+\+|cpp|clang|binutils|libc6-dev|libstdc\+\+-[0-9]+-dev|.*-dev)(-[0-9]+)?$' "$out/runtime.packages"; then
  echo "image: a build package is in the runtime (above)" >&2
  exit 1
fi
podman import --quiet --change 'USER 10001:10001' "$out/runtime.tar" "localhost/streamdistill-runtime:$TAG" >/dev/null
podman tag "localhost/streamdistill-runtime:$TAG" localhost/streamdistill-runtime:latest

for role in server edge; do
  echo "image: streamdistill-$role"
  podman build --quiet --format docker --build-arg BASE="localhost/streamdistill-runtime:$TAG" \
    -f "deploy/podman/Containerfile.$role" -t "localhost/streamdistill-$role:$TAG" "$stage" >/dev/null
  podman tag "localhost/streamdistill-$role:$TAG" "localhost/streamdistill-$role:latest"
done

echo "image: streamdistill-haproxy (mmdebstrap, bookworm + haproxy)"
rootfs haproxy haproxy
podman import --quiet --change 'USER 10001:10001' --change 'EXPOSE 50051' --change 'EXPOSE 8404' \
  --change 'ENTRYPOINT ["/usr/sbin/haproxy"]' --change 'CMD ["-W", "-db", "-f", "/etc/haproxy/haproxy.cfg"]' \
  "$out/haproxy.tar" "localhost/streamdistill-haproxy:$TAG" >/dev/null
podman tag "localhost/streamdistill-haproxy:$TAG" localhost/streamdistill-haproxy:latest

# Each image starts: the binaries find every library, as the user it runs as.
podman run --rm "localhost/streamdistill-server:$TAG" --help >/dev/null
podman run --rm "localhost/streamdistill-edge:$TAG" --help >/dev/null
podman run --rm --entrypoint /usr/local/bin/streamdistill-admin "localhost/streamdistill-server:$TAG" --help >/dev/null
podman run --rm "localhost/streamdistill-haproxy:$TAG" -v >/dev/null

echo
echo "image sizes (podman's, uncompressed; the server and edge images share the runtime layer):"
for name in runtime server edge haproxy; do
  printf '  %-28s %s\n' "streamdistill-$name:$TAG" \
    "$(podman image inspect --format '{{.Size}}' "localhost/streamdistill-$name:$TAG" | awk '{printf "%.0f MB", $1 / 1e6}')"
done
echo "what fills the runtime (installed size, the 12 largest of $(wc -l < "$out/runtime.packages") packages):"
head -12 "$out/runtime.packages" | awk -F'\t' '{printf "  %7.1f MB  %s\n", $1 / 1024, $2}'
echo "image: done in $((SECONDS - start)) s"
