#!/usr/bin/env bash
# Issue 24, done-when 4: labelling throughput of the cluster against one server, on loopback.
#
#   scripts/cluster_scaling.sh [--configs "sqlite1 pg1 pg2 sqlite2"] [--edges 4] [--budget 600]
#       [--light-budget 60] [--light-s 45] [--warmup-s 30] [--window-s 90] [--utilisation 1.0]
#       [--port 52051] [--out out/cluster_scaling]
#
# Configurations (each replica or server started under `taskset -c`; PostgreSQL, HAProxy and
# the edges unpinned):
#   sqlite1  one server, SQLite and files (storage_dir), on cpu 0, 1 labeller
#   pg1      PostgreSQL, 1 replica on cpu 0, HAProxy
#   pg2      PostgreSQL, 2 replicas (r1 on cpu 0, r2 on cpu 1), HAProxy
#   sqlite2  one server, SQLite, on cpus 0-1, 2 labellers
# Each runs: a light phase (one camera at --light-budget frames a minute, far below capacity:
# the ack latency of an unloaded server), then --edges more cameras at --budget frames a minute
# each (fixed budgets far above capacity, bounded by the server's shares of its labellers:
# issue 26), --warmup-s, and a window of --window-s over which the labelled frames per second
# (streamdistill_server_frames_acked_total, summed over the replicas), the latency histograms
# (streamdistill_server_frame_ack_seconds, _frame_store_seconds) and the CPU of every process
# (/proc/PID/stat; PostgreSQL: the postmaster, its backends and the children it reaped) are
# read. Training is off (trigger_frames 1e9): the labellers' throughput is what is measured.
# The cameras are real streamdistill-edge processes on vtest.avi (real time, 10 fps, looping),
# with a tiny student (128x96) so that they cost little CPU; the server labels their 640 px
# JPEGs with HOG at 768 px as in configs/server.yaml.
#
# Prints one JSON line per configuration (stdout and OUT/results.jsonl) and a summary table
# (OUT/summary.md). Cameras kept current are derived from capacity: labelled frames a minute
# over 20 (configs/edge.yaml's budget), not from training rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/yaml.sh
source scripts/lib/yaml.sh
ROOT=$PWD
BUILD_DIR=${BUILD_DIR:-build}
export BUILD_DIR

configs="sqlite1 pg1 pg2 sqlite2" edges=4 budget=600 light_budget=60 light_s=45 warmup_s=30 window_s=90
utilisation=1.0 port=52051 out=out/cluster_scaling
while [ $# -gt 0 ]; do
  case $1 in
    --configs) configs=$2; shift 2 ;;
    --edges) edges=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --light-budget) light_budget=$2; shift 2 ;;
    --light-s) light_s=$2; shift 2 ;;
    --warmup-s) warmup_s=$2; shift 2 ;;
    --window-s) window_s=$2; shift 2 ;;
    --utilisation) utilisation=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) sed -n 2,28p "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
done
for bin in streamdistill-server streamdistill-edge; do
  [ -x "$BUILD_DIR/$bin" ] || { echo "cluster_scaling: $BUILD_DIR/$bin missing (scripts/build.sh)" >&2; exit 1; }
done
video=/usr/share/doc/opencv-doc/examples/data/vtest.avi
[ -f "$video" ] || { echo "cluster_scaling: $video missing (scripts/setup.sh)" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || echo "cluster_scaling: warning: $(nproc) core(s); pg2 and sqlite2 want 2" >&2
mkdir -p "$out"
out=$(cd "$out" && pwd)
: > "$out/results.jsonl"
PG_BIN=/usr/lib/postgresql/15/bin
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# The cameras: "light" (the light phase), then cam1..camN.
devices() { echo light; for i in $(seq 1 "$edges"); do echo "cam$i"; done; }

# configs/server.yaml without the keys set here: HOG, the labeller's queue and its shares as
# shipped; a tiny student (the edges run it); no training rounds.
server_yaml() {  # workers
  yaml_without_keys "listen http storage_dir storage devices labeler student training" configs/server.yaml
  cat <<EOF
http: {enabled: true, bind: 127.0.0.1, port: 0, admin_token: cluster-scaling-admin-token}
storage_dir: STORAGE_DIR
labeler:
  workers: $1
  queue: 16
  max_queue_seconds: 5
  share_capacity: true
  target_utilisation: $utilisation
  min_budget_per_minute: 0.5
student: {input_width: 128, input_height: 96, classes: 1, channels: [8, 16, 32, 32, 64], block: separable}
training: {workers: 1, threads_per_worker: 1, trigger_frames: 1000000000, trigger_seconds: 1000000000}
devices:
EOF
  for d in $(devices); do echo "  $d: {token: scaling-token-$d}"; done
}

edge_yaml() {  # device server budget start_frame
  yaml_without_keys "device_id token server http source student sampling budget detections state_dir summary_path detect_every linger_s" configs/edge.yaml
  cat <<EOF
device_id: $1
token: scaling-token-$1
server: $2
http: {enabled: false}
source: {uri: $video, start_frame: $4, end_frame: 600, loop: true, realtime: true}
student: {input_width: 128, input_height: 96, classes: 1, channels: [8, 16, 32, 32, 64], block: separable}
detect_every: 1
sampling: {strategy: uniform, budget_per_minute: $3, uniform_probability: 1.0, warmup_frames: 0}
budget: {mode: fixed}
detections: {path: /dev/null}
state_dir: $run/edges/$1
linger_s: 0
EOF
}

pids_edges=()
start_edge() {  # device server budget start_frame
  mkdir -p "$run/edges/$1"
  edge_yaml "$@" > "$run/edges/$1.yaml"
  "$BUILD_DIR/streamdistill-edge" --config "$run/edges/$1.yaml" --budget-mode fixed --log-level warn \
      >>"$run/edges/$1.log" 2>&1 &
  pids_edges+=($!)
}

server_pids=()   # the replicas or the server
pg_pid=""        # the postmaster
haproxy_pids=""
metrics_ports=()

cleanup() {
  for pid in "${pids_edges[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids_edges[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids_edges=()
  if [ -n "${cluster_dir:-}" ]; then
    scripts/cluster.sh down "$cluster_dir" >/dev/null 2>&1 || true
    cluster_dir=""
  fi
  for pid in "${server_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${server_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  server_pids=()
}
trap cleanup EXIT

# A snapshot: every /metrics, the CPU ticks of every process of the run, /proc/stat.
snapshot() {  # file
  local f=$1 i=0
  : > "$f"
  for p in "${metrics_ports[@]}"; do
    i=$((i + 1))
    echo "#METRICS server$i" >> "$f"
    curl -s --max-time 5 "http://127.0.0.1:$p/metrics" >> "$f" || echo "#METRICS-FAILED server$i" >> "$f"
  done
  echo "#PROCSTAT" >> "$f"
  grep '^cpu' /proc/stat >> "$f"
  ticks() { awk '{ print $14 + $15 + ($1 == ENVIRON["REAP"] ? $16 + $17 : 0) }' "/proc/$1/stat" 2>/dev/null || echo 0; }
  i=0
  for pid in "${server_pids[@]}"; do i=$((i + 1)); echo "#CPU server$i $(ticks "$pid")" >> "$f"; done
  local e=0
  for pid in "${pids_edges[@]}"; do e=$((e + $(ticks "$pid"))); done
  echo "#CPU edges $e" >> "$f"
  if [ -n "$pg_pid" ]; then
    local t=0
    t=$(REAP=$pg_pid ticks "$pg_pid")
    for c in $(ps -o pid= --ppid "$pg_pid"); do t=$((t + $(ticks "$c"))); done
    echo "#CPU postgres $t" >> "$f"
  fi
  if [ -n "$haproxy_pids" ]; then
    local h=0
    for pid in $haproxy_pids; do h=$((h + $(ticks "$pid"))); done
    echo "#CPU haproxy $h" >> "$f"
  fi
  echo "#TIME $(date +%s.%N)" >> "$f"
}

run_config() {  # name
  local name=$1 backend replicas cpus workers
  case $name in
    sqlite1) backend=sqlite replicas=1 cpus=0 workers=1 ;;
    sqlite2) backend=sqlite replicas=1 cpus=0,1 workers=2 ;;
    pg1) backend=postgres replicas=1 cpus=0 workers=1 ;;
    pg2) backend=postgres replicas=2 cpus="0 1" workers=1 ;;
    *) echo "cluster_scaling: unknown configuration '$name'" >&2; exit 2 ;;
  esac
  run=$out/$name
  rm -rf "$run"
  mkdir -p "$run/edges"
  server_yaml "$workers" | sed "s|STORAGE_DIR|$run/storage|" > "$run/base_server.yaml"
  metrics_ports=() server_pids=() pg_pid="" haproxy_pids="" cluster_dir=""
  local target
  if [ "$backend" = sqlite ]; then
    taskset -c "$cpus" "$BUILD_DIR/streamdistill-server" --config "$run/base_server.yaml" \
        --listen "127.0.0.1:$((port + 1))" --http-port $((port + 101)) >"$run/server.log" 2>&1 &
    server_pids=($!)
    metrics_ports=($((port + 101)))
    target=127.0.0.1:$((port + 1))
  else
    cluster_dir=$run/cluster
    REPLICA_CPUS="$cpus" scripts/cluster.sh up "$cluster_dir" --replicas "$replicas" --config "$run/base_server.yaml" \
        --port "$port" > "$run/cluster.log" 2>&1
    for k in $(seq 1 "$replicas"); do
      server_pids+=("$(cat "$cluster_dir/replica$k/pid")")
      metrics_ports+=($((port + 100 + k)))
    done
    pg_pid=$(head -1 "$cluster_dir/pg/postmaster.pid")
    haproxy_pids=$(cat "$cluster_dir/haproxy.pid" | tr '\n' ' ')
    target=127.0.0.1:$port
  fi
  for p in "${metrics_ports[@]}"; do
    for _ in $(seq 1 60); do curl -sf "http://127.0.0.1:$p/healthz" >/dev/null 2>&1 && break; sleep 0.5; done
  done
  for pid in "${server_pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "cluster_scaling: $name: a server died at start (logs in $run)" >&2; exit 1; }
  done
  # Light phase: one camera far below capacity.
  start_edge light "$target" "$light_budget" 0
  sleep 10
  snapshot "$run/light0.txt"
  sleep "$light_s"
  snapshot "$run/light1.txt"
  # Saturation: the heavy cameras, a warm-up, the window.
  for i in $(seq 1 "$edges"); do start_edge "cam$i" "$target" "$budget" $(((i * 97) % 600)); done
  sleep "$warmup_s"
  snapshot "$run/window0.txt"
  sleep "$window_s"
  snapshot "$run/window1.txt"
  local split=""
  if [ "$backend" = postgres ]; then
    split=$(as_pg "$PG_BIN/psql" -At -h "$cluster_dir/pg" -p $((port + 99)) -U postgres -d streamdistill \
        -c "SELECT device_id || '=' || replica FROM device_leases WHERE expires_at > now() ORDER BY device_id" | tr '\n' ' ')
  fi
  for pid in "${server_pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "cluster_scaling: $name: a server died during the run (logs in $run)" >&2; exit 1; }
  done
  cleanup
  python3 - "$run" "$name" "$backend" "$replicas" "$cpus" "$edges" "$budget" "$light_budget" "$split" <<'EOF' | tee -a "$out/results.jsonl"
import json, os, re, sys
run, name, backend, replicas, cpus, edges, budget, light_budget, split = sys.argv[1:10]
HZ = os.sysconf("SC_CLK_TCK")

def load(path):
    snap = {"metrics": [], "cpu": {}, "stat": {}}
    cur = None
    for line in open(path):
        line = line.rstrip("\n")
        if line.startswith("#METRICS "):
            cur = {}; snap["metrics"].append(cur); continue
        if line.startswith("#PROCSTAT"):
            cur = None; continue
        if line.startswith("#CPU "):
            _, who, t = line.split(); snap["cpu"][who] = int(t); continue
        if line.startswith("#TIME "):
            snap["time"] = float(line.split()[1]); continue
        if line.startswith("cpu"):
            f = line.split(); v = list(map(int, f[1:9]))
            snap["stat"][f[0]] = (sum(v), v[3] + v[4]); continue  # total, idle + iowait
        if cur is None or not line or line.startswith("#"): continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$', line)
        if m: cur[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return snap

def total(metrics, metric):
    return sum(v for (n, _), v in metrics.items() if n == metric)

def buckets(metrics, metric):
    out = {}
    for (n, labels), v in metrics.items():
        if n != metric + "_bucket": continue
        le = re.search(r'le="([^"]+)"', labels).group(1)
        b = float("inf") if le == "+Inf" else float(le)
        out[b] = out.get(b, 0) + v
    return out

def quantile(q, b):  # Prometheus' histogram_quantile() over cumulative buckets
    bounds = sorted(b)
    if not bounds or b[bounds[-1]] <= 0: return None
    rank = q * b[bounds[-1]]
    prev_bound, prev_count = 0.0, 0.0
    for bound in bounds:
        if b[bound] >= rank:
            if bound == float("inf"): return prev_bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / max(b[bound] - prev_count, 1e-12)
        prev_bound, prev_count = bound, b[bound]
    return bounds[-1]

def window(a_path, b_path):
    a, b = load(a_path), load(b_path)
    seconds = b["time"] - a["time"]
    res = {"seconds": round(seconds, 1)}
    acked = [total(mb, "streamdistill_server_frames_acked_total") - total(ma, "streamdistill_server_frames_acked_total")
             for ma, mb in zip(a["metrics"], b["metrics"])]
    busy = [total(mb, "streamdistill_server_labeler_busy_seconds_total") - total(ma, "streamdistill_server_labeler_busy_seconds_total")
            for ma, mb in zip(a["metrics"], b["metrics"])]
    res["labelled"] = sum(acked)
    res["labelled_per_s"] = round(sum(acked) / seconds, 3)
    res["labelled_per_s_each"] = [round(x / seconds, 3) for x in acked]
    res["labeler_busy_s_per_s_each"] = [round(x / seconds, 3) for x in busy]
    res["labeler_s_per_frame"] = round(sum(busy) / sum(acked), 4) if sum(acked) else None
    for metric, key in (("streamdistill_server_frame_ack_seconds", "ack"),
                        ("streamdistill_server_frame_store_seconds", "store"),
                        ("streamdistill_server_label_queue_wait_seconds", "queue_wait")):
        delta = {}
        for ma, mb in zip(a["metrics"], b["metrics"]):
            ba, bb = buckets(ma, metric), buckets(mb, metric)
            for k, v in bb.items(): delta[k] = delta.get(k, 0) + v - ba.get(k, 0)
        count = delta.get(float("inf"), 0)
        s = sum(total(mb, metric + "_sum") - total(ma, metric + "_sum") for ma, mb in zip(a["metrics"], b["metrics"]))
        res[key + "_n"] = int(count)
        res[key + "_p50_s"] = None if not count else round(quantile(0.5, delta), 4)
        res[key + "_p95_s"] = None if not count else round(quantile(0.95, delta), 4)
        res[key + "_mean_s"] = None if not count else round(s / count, 4)
    cores = {}
    for who in b["cpu"]:
        cores[who] = round((b["cpu"][who] - a["cpu"].get(who, 0)) / HZ / seconds, 3)
    for cpu in sorted(b["stat"]):
        t = b["stat"][cpu][0] - a["stat"][cpu][0]
        idle = b["stat"][cpu][1] - a["stat"][cpu][1]
        cores["machine" if cpu == "cpu" else cpu] = round((t - idle) / t * (1 if cpu != "cpu" else len(b["stat"]) - 1), 3) if t else None
    ours = sum(v for k, v in cores.items() if k.startswith("server") or k in ("edges", "postgres", "haproxy"))
    cores["other"] = round(cores["machine"] - ours, 3)
    res["cores"] = cores
    return res

light = window(run + "/light0.txt", run + "/light1.txt")
sat = window(run + "/window0.txt", run + "/window1.txt")
line = {
    "config": name, "backend": backend, "replicas": int(replicas), "cpus": cpus.replace(" ", "|"),
    "edges": int(edges), "budget_per_minute": float(budget),
    "window_s": sat["seconds"], "labelled_per_s": sat["labelled_per_s"],
    "labelled_per_s_each": sat["labelled_per_s_each"],
    "labeler_busy_each": sat["labeler_busy_s_per_s_each"], "labeler_s_per_frame": sat["labeler_s_per_frame"],
    "cameras_current_at_20_per_min": round(sat["labelled_per_s"] * 60 / 20, 1),
    "ack_p50_s": sat["ack_p50_s"], "ack_p95_s": sat["ack_p95_s"], "ack_mean_s": sat["ack_mean_s"],
    "store_p50_s": sat["store_p50_s"], "store_p95_s": sat["store_p95_s"], "store_mean_s": sat["store_mean_s"],
    "queue_wait_p50_s": sat["queue_wait_p50_s"], "queue_wait_p95_s": sat["queue_wait_p95_s"],
    "cores": sat["cores"],
    "light": {"budget_per_minute": float(light_budget), "seconds": light["seconds"], "frames": light["labelled"],
              "ack_p50_s": light["ack_p50_s"], "ack_p95_s": light["ack_p95_s"], "ack_mean_s": light["ack_mean_s"],
              "store_p50_s": light["store_p50_s"], "store_p95_s": light["store_p95_s"],
              "store_mean_s": light["store_mean_s"], "cores": light["cores"]},
}
if split.strip(): line["leases"] = split.split()
print(json.dumps(line))
EOF
}

for c in $configs; do
  echo "cluster_scaling: $c ..." >&2
  run_config "$c"
done

python3 - "$out" <<'EOF' | tee "$out/summary.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/results.jsonl")]
by = {r["config"]: r for r in rows}
def f(x, d=3): return "" if x is None else f"{x:.{d}f}"
def ms(x): return "" if x is None else f"{x * 1000:.1f}"
print("| config | cores | labelled/s | cameras at 20/min | labeller busy | ack p50 / p95 (ms), loaded | ack p50 / p95 (ms), light | store p50 / p95 (ms), light | CPU: servers | PostgreSQL | HAProxy | edges | machine |")
print("|---|---|---:|---:|---|---|---|---|---|---:|---:|---:|---:|")
for r in rows:
    c = r["cores"]
    servers = " + ".join(f(v, 2) for k, v in sorted(c.items()) if k.startswith("server"))
    print(f"| {r['config']} | {r['cpus'].replace('|', ' and ')} | {f(r['labelled_per_s'], 2)} | {f(r['cameras_current_at_20_per_min'], 1)} | "
          f"{' + '.join(f(x, 2) for x in r['labeler_busy_each'])} | {ms(r['ack_p50_s'])} / {ms(r['ack_p95_s'])} | "
          f"{ms(r['light']['ack_p50_s'])} / {ms(r['light']['ack_p95_s'])} | "
          f"{ms(r['light']['store_p50_s'])} / {ms(r['light']['store_p95_s'])} | {servers} | "
          f"{f(c.get('postgres'), 2)} | {f(c.get('haproxy'), 2)} | {f(c.get('edges'), 2)} | {f(c.get('machine'), 2)} |")
print()
if "pg1" in by and "pg2" in by and by["pg1"]["labelled_per_s"]:
    print(f"2 replicas / 1 replica: {by['pg2']['labelled_per_s'] / by['pg1']['labelled_per_s']:.2f}x (bound: >= 1.7x)")
for s in ("sqlite1", "sqlite2"):
    if "pg2" in by and s in by:
        print(f"pg2 keeps {by['pg2']['cameras_current_at_20_per_min']:.1f} cameras current against {s}'s "
              f"{by[s]['cameras_current_at_20_per_min']:.1f} (derived from labelled frames a minute / 20)")
if "pg1" in by and "sqlite1" in by and by["sqlite1"]["labelled_per_s"]:
    print(f"pg1 / sqlite1 (the shared state's cost on one core): {by['pg1']['labelled_per_s'] / by['sqlite1']['labelled_per_s']:.2f}x")
EOF
