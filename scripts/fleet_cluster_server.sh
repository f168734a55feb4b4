#!/usr/bin/env bash
# A cluster in the place of streamdistill-fleet's server: PostgreSQL, N replicas and HAProxy
# (scripts/cluster.sh) started from the fleet's server.yaml, so that a fleet run measures the
# cameras a cluster keeps current against one server's (issue 24, done-when 4):
#
#   CLUSTER_REPLICAS=2 REPLICA_CPUS="0 1" ./build/streamdistill-fleet --config configs/fleet_8.yaml \
#       --no-groups --server-binary scripts/fleet_cluster_server.sh --out out/fleet_cluster
#
# The fleet starts it as it starts streamdistill-server (--config PATH --listen 127.0.0.1:0
# --http-port 0) and reads its log: the port it logs is HAProxy's, the HTTP port r1's (the
# fleet's labeller figures are r1's alone), and the CPU the fleet samples is this script's,
# not the cluster's (scripts/cluster_scaling.sh measures that). SIGINT or SIGTERM stops the
# cluster and exits 0. Env: CLUSTER_REPLICAS (2), CLUSTER_PORT (the first of 200 ports from
# 53051), REPLICA_CPUS (scripts/cluster.sh), CLUSTER_KEEP=1 keeps the cluster's folder.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
config=""
while [ $# -gt 0 ]; do
  case $1 in
    --config) config=$2; shift 2 ;;
    --listen | --http-port) shift 2 ;;  # the cluster's ports are its own
    *) echo "fleet_cluster_server: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$config" ] || { echo "fleet_cluster_server: --config is required" >&2; exit 2; }
config=$(realpath "$config")  # cluster.sh runs in the repository's root
replicas=${CLUSTER_REPLICAS:-2}
port=${CLUSTER_PORT:-53051}
dir=$(dirname "$config")/cluster
rm -rf "$dir"

# CPU seconds (user + system) of a process, from /proc/PID/stat (fields 14 and 15).
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.1f", ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || echo "?"
}

stop() {
  # The replicas' CPU, which the fleet cannot see (it samples this script).
  for k in $(seq 1 "$replicas"); do
    pid=$(cat "$dir/replica$k/pid" 2>/dev/null || true)
    [ -n "$pid" ] && echo "fleet_cluster_server: replica r$k used $(cpu_seconds "$pid") CPU seconds"
  done
  bash "$here/cluster.sh" down "$dir" >/dev/null 2>&1 || true
  # The replicas' logs beside the fleet's server.log, for a reader of the run.
  for k in $(seq 1 "$replicas"); do cp "$dir/replica$k/server.log" "$(dirname "$config")/replica$k.log" 2>/dev/null || true; done
  [ "${CLUSTER_KEEP:-0}" = 1 ] || rm -rf "$dir"
  exit 0
}
trap stop INT TERM

bash "$here/cluster.sh" up "$dir" --replicas "$replicas" --config "$config" --port "$port"
# The fleet's cameras connect through HAProxy once every replica listens.
for k in $(seq 1 "$replicas"); do
  for _ in $(seq 1 600); do
    grep -q "listening on" "$dir/replica$k/server.log" 2>/dev/null && break
    sleep 0.1
  done
  grep -q "listening on" "$dir/replica$k/server.log" || { echo "fleet_cluster_server: replica r$k did not start" >&2; cat "$dir/replica$k/server.log" >&2; stop; }
done
# The lines streamdistill-fleet waits for (fleet/server_process.cc).
echo "HTTP (streamdistill-server) on 127.0.0.1:$((port + 101)) serves /metrics (replica r1)"
echo "listening on 127.0.0.1:$port (port $port, HAProxy over $replicas replicas)"
while true; do sleep 1 & wait $!; done
