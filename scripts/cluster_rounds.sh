#!/usr/bin/env bash
# Issue 24: rounds on any replica, measured (docs/scale-out.md, "Rounds on any replica").
#
#   scripts/cluster_rounds.sh [--configs "home queue"] [--edges 4] [--seconds 300] [--port 53051]
#       [--out out/cluster_rounds]
#
# PostgreSQL, 2 replicas pinned to one core each (r1 on cpu 0, r2 on cpu 1), one training worker
# of one thread each; real streamdistill-edge processes on vtest.avi (configs/edge.yaml: the
# main job's student and adaptive budget, real time, looping), every one connected straight to
# r1, so that r1 serves and labels them all: what HAProxy's hash does to a cluster when the
# cameras it holds land on one replica.
#   home   r2 runs with --training-workers 0: every round runs on r1, the replica serving the
#          cameras (the cluster before rounds were claimed from the queue)
#   queue  r2 trains too: its idle worker claims r1's queued rounds
# Prints one JSON line per configuration (stdout and OUT/results.jsonl): rounds stored by each
# replica, versions per camera, each camera's first version (seconds after the edges started),
# and the replicas' CPU. (Accuracy is the main job's business: scripts/demo.sh.)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/yaml.sh
source scripts/lib/yaml.sh
BUILD_DIR=${BUILD_DIR:-build}
export BUILD_DIR

configs="home queue" edges=4 seconds=300 port=53051 out=out/cluster_rounds
while [ $# -gt 0 ]; do
  case $1 in
    --configs) configs=$2; shift 2 ;;
    --edges) edges=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) sed -n 2,17p "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
done
for bin in streamdistill-server streamdistill-edge; do
  [ -x "$BUILD_DIR/$bin" ] || { echo "cluster_rounds: $BUILD_DIR/$bin missing (scripts/build.sh)" >&2; exit 1; }
done
video=/usr/share/doc/opencv-doc/examples/data/vtest.avi
[ -f "$video" ] || { echo "cluster_rounds: $video missing (scripts/setup.sh)" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
: > "$out/results.jsonl"

# configs/server.yaml with one worker of one thread (a replica per core) and the cameras.
server_yaml() {
  yaml_without_keys "listen http storage_dir storage devices" configs/server.yaml |
    sed -e 's/^  workers: [0-9]*/  workers: 1/' -e 's/^  threads_per_worker: [0-9]*/  threads_per_worker: 1/'
  echo "http: {enabled: true, bind: 127.0.0.1, port: 0, admin_token: cluster-rounds-admin-token}"
  echo "storage_dir: STORAGE_DIR"
  echo "devices:"
  for i in $(seq 1 "$edges"); do echo "  cam$i: {token: rounds-token-cam$i}"; done
}

edge_yaml() {  # device server start_frame
  yaml_without_keys "device_id token server http source detections state_dir summary_path linger_s" configs/edge.yaml
  cat <<EOF
device_id: $1
token: rounds-token-$1
server: $2
http: {enabled: false}
source: {uri: $video, start_frame: $3, loop: true, realtime: true}
detections: {path: /dev/null}
state_dir: $run/edges/$1
linger_s: 0
EOF
}

cluster_dir=""
edge_pids=()
cleanup() {
  for pid in "${edge_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${edge_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  edge_pids=()
  [ -n "$cluster_dir" ] && scripts/cluster.sh down "$cluster_dir" >/dev/null 2>&1 || true
  cluster_dir=""
}
trap cleanup EXIT

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
psql_q() { runuser -u postgres -- /usr/lib/postgresql/15/bin/psql -qAt -h "$cluster_dir/pg" -p $((port + 99)) -U postgres -d streamdistill -c "$1" 2>/dev/null ||
             /usr/lib/postgresql/15/bin/psql -qAt -h "$cluster_dir/pg" -p $((port + 99)) -U postgres -d streamdistill -c "$1"; }

for name in $configs; do
  case $name in
    home) r2_args="--training-workers 0" ;;
    queue) r2_args="" ;;
    *) echo "cluster_rounds: unknown configuration '$name'" >&2; exit 2 ;;
  esac
  run=$out/$name
  rm -rf "$run"
  mkdir -p "$run/edges"
  server_yaml | sed "s|STORAGE_DIR|$run/storage|" > "$run/base_server.yaml"
  cluster_dir=$run/cluster
  REPLICA_CPUS="0 1" REPLICA_ARGS_2="$r2_args" scripts/cluster.sh up "$cluster_dir" --replicas 2 \
      --config "$run/base_server.yaml" --port "$port" > "$run/cluster.log" 2>&1
  r1_pid=$(cat "$cluster_dir/replica1/pid") r2_pid=$(cat "$cluster_dir/replica2/pid")
  for _ in $(seq 1 60); do
    curl -sf "http://127.0.0.1:$((port + 101))/healthz" >/dev/null && curl -sf "http://127.0.0.1:$((port + 102))/healthz" >/dev/null && break
    sleep 1
  done
  r1_start=$(ticks "$r1_pid") r2_start=$(ticks "$r2_pid")
  start_ms=$(date +%s%3N)
  for i in $(seq 1 "$edges"); do
    mkdir -p "$run/edges/cam$i"
    edge_yaml "cam$i" "127.0.0.1:$((port + 1))" $(((i - 1) * 150)) > "$run/edges/cam$i.yaml"
    "$BUILD_DIR/streamdistill-edge" --config "$run/edges/cam$i.yaml" --duration "$seconds" --log-level warn \
        >>"$run/edges/cam$i.log" 2>&1 &
    edge_pids+=($!)
  done
  echo "cluster_rounds: $name: $edges edges on r1 for $seconds s (r2: ${r2_args:-trains})" >&2
  for pid in "${edge_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  elapsed=$(awk -v a="$(date +%s%3N)" -v b="$start_ms" 'BEGIN { print (a - b) / 1000 }')
  r1_cores=$(awk -v a="$(ticks "$r1_pid")" -v b="$r1_start" -v t="$elapsed" 'BEGIN { print (a - b) / 100 / t }')
  r2_cores=$(awk -v a="$(ticks "$r2_pid")" -v b="$r2_start" -v t="$elapsed" 'BEGIN { print (a - b) / 100 / t }')
  edge_pids=()
  by_replica=$(psql_q "SELECT string_agg(stored_by || ':' || n, ',') FROM (SELECT stored_by, count(*) n FROM versions GROUP BY stored_by ORDER BY stored_by) t")
  per_camera=$(psql_q "SELECT string_agg(device_id || ':' || n || ':' || round((first_ms - $start_ms) / 1000.0, 1), ',') FROM (SELECT device_id, count(*) n, min(created_ms) first_ms FROM versions GROUP BY device_id ORDER BY device_id) t")
  served=$(psql_q "SELECT string_agg(device_id || '=' || replica, ',') FROM (SELECT device_id, replica FROM device_leases ORDER BY device_id) t")
  cleanup
  python3 - "$name" "$seconds" "$by_replica" "$per_camera" "$served" "$r1_cores" "$r2_cores" <<'EOF' | tee -a "$out/results.jsonl"
import json, sys
name, seconds, by_replica, per_camera, served, r1, r2 = sys.argv[1:]
versions = {}
first = {}
for item in filter(None, per_camera.split(",")):
    device, n, t = item.split(":")
    versions[device] = int(n)
    first[device] = float(t)
stored_by = {k: int(v) for k, v in (i.split(":") for i in filter(None, by_replica.split(",")))}
print(json.dumps({
    "config": name, "seconds": float(seconds), "versions_by_replica": stored_by,
    "versions_total": sum(versions.values()), "versions_each": versions,
    "first_version_s": first, "first_version_s_max": max(first.values()) if first else None,
    "served": served, "cores": {"r1": round(float(r1), 3), "r2": round(float(r2), 3)}}))
EOF
done
