#!/usr/bin/env bash
# A streamdistill cluster on one machine (docs/scale-out.md): a throw-away PostgreSQL 15
# cluster, N server replicas sharing it, and HAProxy in front routing each device's stream by
# its id. For trying the cluster, for its tests and for the failover soak; production runs the
# same pieces on their own machines.
#
#   scripts/cluster.sh up DIR [--replicas N] [--config configs/server.yaml] [--port 50051]
#   scripts/cluster.sh kill DIR K       # SIGKILL replica K (1-based)
#   scripts/cluster.sh start DIR K      # start replica K again (or a new one: K = N+1)
#   scripts/cluster.sh status DIR
#   scripts/cluster.sh down DIR
#
# Edges connect to 127.0.0.1:<port> (HAProxy). Replica K listens on 127.0.0.1:<port+K>, its
# /metrics on <port+100+K>; PostgreSQL on a Unix socket in DIR/pg (and 127.0.0.1:<port+99>).
# Run as root, PostgreSQL runs as the `postgres` user (initdb refuses root).
# REPLICA_CPUS="0 1" starts replica K under `taskset -c` with the K-th entry (taken in turn):
# scripts/cluster_scaling.sh confines each replica to one core that way. REPLICA_ARGS_K adds
# streamdistill-server flags to replica K (REPLICA_ARGS_2="--training-workers 0").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PG_BIN=/usr/lib/postgresql/15/bin
BUILD_DIR=${BUILD_DIR:-build}
[[ $BUILD_DIR = /* ]] || BUILD_DIR=$ROOT/$BUILD_DIR

usage() { sed -n 2,19p "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 dir=$2
shift 2
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
state() { cat "$dir/cluster.env"; }

replica_start() {
  local k=$1
  # shellcheck disable=SC1091
  source "$dir/cluster.env"
  mkdir -p "$dir/replica$k"
  local pin=()
  if [ -n "${REPLICA_CPUS:-}" ]; then
    local cpus
    read -ra cpus <<<"$REPLICA_CPUS"
    pin=(taskset -c "${cpus[$(((k - 1) % ${#cpus[@]}))]}")
  fi
  local extra_var="REPLICA_ARGS_$k" extra=()
  [ -n "${!extra_var:-}" ] && read -ra extra <<<"${!extra_var}"
  "${pin[@]}" "$BUILD_DIR/streamdistill-server" --config "$dir/server.yaml" --replica "r$k" \
      --listen "127.0.0.1:$((PORT + k))" --http-port "$((PORT + 100 + k))" "${extra[@]}" \
      >>"$dir/replica$k/server.log" 2>&1 &
  echo $! > "$dir/replica$k/pid"
  echo "cluster: replica r$k (pid $!) on 127.0.0.1:$((PORT + k)), log $dir/replica$k/server.log"
}

haproxy_config() {
  # shellcheck disable=SC1091
  source "$dir/cluster.env"
  local servers=""
  for k in $(seq 1 "$REPLICAS"); do
    servers+="    server r$k 127.0.0.1:$((PORT + k)) proto h2 check port $((PORT + 100 + k)) check-proto h1 inter 1s fall 2 rise 1"$'\n'
  done
  sed -e "s|@PORT@|$PORT|g" -e "s|@STATS_PORT@|$((PORT + 98))|g" "$ROOT/deploy/haproxy/streamdistill.cfg" |
    awk -v servers="$servers" '{ if ($0 ~ /^[[:space:]]*@SERVERS@[[:space:]]*$/) printf "%s", servers; else print }' > "$dir/haproxy.cfg"
}

case $cmd in
  up)
    replicas=3 config=configs/server.yaml port=50051
    while [ $# -gt 0 ]; do
      case $1 in
        --replicas) replicas=$2; shift 2 ;;
        --config) config=$2; shift 2 ;;
        --port) port=$2; shift 2 ;;
        *) usage ;;
      esac
    done
    [ -x "$BUILD_DIR/streamdistill-server" ] || { echo "cluster: build first (scripts/build.sh)" >&2; exit 1; }
    command -v haproxy >/dev/null || { echo "cluster: haproxy is not installed (scripts/setup.sh)" >&2; exit 1; }
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    echo "PORT=$port REPLICAS=$replicas" > "$dir/cluster.env"
    # PostgreSQL: a fresh cluster in DIR/pg, trusted on its socket and loopback only.
    mkdir -p "$dir/pg"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir/pg" && chmod 755 "$dir"
    as_pg "$PG_BIN/initdb" -A trust -U postgres -D "$dir/pg" >"$dir/initdb.log" 2>&1
    as_pg "$PG_BIN/pg_ctl" -D "$dir/pg" -l "$dir/pg/server.log" -w \
        -o "-p $((port + 99)) -k $dir/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
    as_pg "$PG_BIN/psql" -q -h "$dir/pg" -p $((port + 99)) -U postgres -c "CREATE DATABASE streamdistill" >/dev/null
    echo "cluster: PostgreSQL on $dir/pg (port $((port + 99)))"
    # One config for every replica: the base config with the cluster's storage.
    {
      grep -v -E '^(storage_dir|storage):' "$config"
      echo "storage_dir: $dir/local"
      echo "storage:"
      echo "  backend: postgres"
      echo "  dsn: \"host=$dir/pg port=$((port + 99)) user=postgres dbname=streamdistill\""
      echo "  blobs: postgres"
    } > "$dir/server.yaml"
    for k in $(seq 1 "$replicas"); do replica_start "$k"; done
    haproxy_config
    haproxy -f "$dir/haproxy.cfg" -D -p "$dir/haproxy.pid"
    echo "cluster: HAProxy on 127.0.0.1:$port (stats on 127.0.0.1:$((port + 98))/stats), $replicas replicas"
    ;;
  kill)
    k=$1
    kill -9 "$(cat "$dir/replica$k/pid")" && echo "cluster: replica r$k killed (SIGKILL)"
    ;;
  start)
    k=$1
    # shellcheck disable=SC1091
    source "$dir/cluster.env"
    if [ "$k" -gt "$REPLICAS" ]; then
      echo "PORT=$PORT REPLICAS=$k" > "$dir/cluster.env"
      haproxy_config
      # HAProxy takes the new server list on a soft reload: open streams stay where they are.
      haproxy -f "$dir/haproxy.cfg" -D -p "$dir/haproxy.pid" -sf "$(cat "$dir/haproxy.pid")"
    fi
    replica_start "$k"
    ;;
  status)
    # shellcheck disable=SC1091
    source "$dir/cluster.env"
    for k in $(seq 1 "$REPLICAS"); do
      if kill -0 "$(cat "$dir/replica$k/pid" 2>/dev/null)" 2>/dev/null; then echo "r$k up"; else echo "r$k down"; fi
    done
    as_pg "$PG_BIN/psql" -h "$dir/pg" -p $((PORT + 99)) -U postgres -d streamdistill \
        -c "SELECT device_id, replica, epoch, expires_at > now() AS live FROM device_leases ORDER BY device_id"
    ;;
  down)
    # shellcheck disable=SC1091
    source "$dir/cluster.env"
    [ -f "$dir/haproxy.pid" ] && kill "$(cat "$dir/haproxy.pid")" 2>/dev/null || true
    for pidfile in "$dir"/replica*/pid; do
      [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    sleep 1
    as_pg "$PG_BIN/pg_ctl" -D "$dir/pg" -m fast stop >/dev/null 2>&1 || true
    echo "cluster: down ($dir kept; remove it to forget the cluster)"
    ;;
  *) usage ;;
esac
