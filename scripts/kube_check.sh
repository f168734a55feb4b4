#!/usr/bin/env bash
# The main job in containers, from the Kubernetes manifests (docs/deploy.md): an overlay rendered
# by `kubectl kustomize`, adapted to podman 4.3 (scripts/kube_for_podman.py), run by `podman kube
# play` beside edge pods on the sample video, then scored as scripts/demo.sh scores it, printing
# the same JSON line.
#
#   bash scripts/kube_check.sh [--duration SECONDS]     (default 300, as the main job)
#   bash scripts/kube_check.sh --overlay cluster [--duration SECONDS] [--edges N] [--kill-at FRACTION]
#                                                       (default 600 s, 2 edges, removal at 0.4)
#
# single (the default): the server pod and one edge pod on the host's network (ports 50051 and
# 9464 must be free on the host). Output in out/kube_check/.
#
# cluster: the cluster overlay's 2 server replicas and HAProxy, a PostgreSQL pod for this check
# only (localhost/streamdistill-postgres from `scripts/image.sh --postgres`: the project ships no
# database, a deployment points storage.dsn at the operator's), and N edge pods (default 2, each
# enrolled in the database, each writing an ack log) through HAProxy, all on podman's kube
# network, where pods find each other by name as in Kubernetes (no host port is used). At
# FRACTION of the run (default 0.4) the replica pod holding most devices is removed (`podman pod
# rm -f -t 0`: SIGKILL, and no restart). At the end: every frame an edge saw acked is in
# PostgreSQL's frames table exactly once, each device's versions strictly increase, every device
# of the removed replica was served again, and every edge runs a version stored after the
# removal. Prints the demo's JSON line for each edge and a line of cluster checks; exits 1 when a
# check fails. Output in out/kube_check_cluster/.
#
# Needs the images (scripts/image.sh; made when missing) and a build for the host's
# streamdistill-admin and -eval (scripts/build.sh runs first; NO_BUILD=1 BUILD_DIR=DIR uses
# another build's binaries instead).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=""
OVERLAY=single
EDGES=2
KILL_AT=0.4
usage() { echo "usage: $0 [--overlay single|cluster] [--duration SECONDS] [--edges N] [--kill-at FRACTION]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --overlay) OVERLAY=$2; shift 2 ;;
    --edges) EDGES=$2; shift 2 ;;
    --kill-at) KILL_AT=$2; shift 2 ;;
    *) usage ;;
  esac
done
case "$OVERLAY" in single|cluster) ;; *) usage ;; esac
# The cluster's default is longer: its 2 replicas train at once on the same cores, so a round
# takes about 3 minutes on a 2-core machine (1 minute for the single server), and a version
# after the removal needs the time of a round or two (docs/deploy.md).
[ -n "$DURATION" ] || { [ "$OVERLAY" = cluster ] && DURATION=600 || DURATION=300; }
export CONTAINERS_CONF=$PWD/deploy/podman/containers.conf
bash scripts/setup.sh images >/dev/null
for role in server edge haproxy; do
  podman image exists "localhost/streamdistill-$role:latest" || { bash scripts/image.sh; break; }
done
if [ "$OVERLAY" = cluster ]; then
  podman image exists localhost/streamdistill-postgres:latest || bash scripts/image.sh --postgres
fi
BUILD_DIR=${BUILD_DIR:-build}
[ -n "${NO_BUILD:-}" ] || bash scripts/build.sh  # the host's streamdistill-admin (enrolment) and -eval (the score)
admin=$BUILD_DIR/streamdistill-admin
eval_bin=$BUILD_DIR/streamdistill-eval

# configs/edge.yaml (the main job's) as DEVICE with TOKEN against SERVER, its state in
# /var/lib/streamdistill/edge-DEVICE (a host folder mounted there, where the host scores it).
edge_config() {  # device token server
  sed -e "s#^device_id: .*#device_id: $1#" -e "s#^token: .*#token: $2#" -e "s#^server: .*#server: $3#" \
      -e "s#^state_dir: .*#state_dir: /var/lib/streamdistill/edge-$1#" \
      -e "s#^  path: state/edge-cam1/detections.jsonl#  path: /var/lib/streamdistill/edge-$1/detections.jsonl#" \
      -e "s#^summary_path: .*#summary_path: /var/lib/streamdistill/edge-$1/summary.json#" \
      configs/edge.yaml
}
# The edge in a Pod that runs once (restartPolicy Never), its config as a ConfigMap, the sample
# video mounted read-only. ARGS: further edge arguments.
video_dir=/usr/share/doc/opencv-doc/examples/data
edge_pod() {  # device config-file state-dir [args...]
  local device=$1 config=$2 state=$3
  shift 3
  local args="--config=/etc/streamdistill/edge.yaml, --duration=$DURATION, --log-level=warn"
  for a in "$@"; do args+=", $a"; done
  cat <<EOF
apiVersion: v1
kind: ConfigMap
metadata: {name: streamdistill-edge-$device-config}
data:
  edge.yaml: |
$(sed 's/^/    /' "$config")
---
apiVersion: v1
kind: Pod
metadata:
  name: streamdistill-edge-$device
  labels: {app.kubernetes.io/name: streamdistill-edge}
spec:
  restartPolicy: Never
  securityContext: {runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001}
  containers:
    - name: edge
      image: localhost/streamdistill-edge:latest
      imagePullPolicy: IfNotPresent
      args: [$args]
      workingDir: /var/lib/streamdistill
      securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
      volumeMounts:
        - {name: config, mountPath: /etc/streamdistill, readOnly: true}
        - {name: state, mountPath: /var/lib/streamdistill}
        - {name: video, mountPath: $video_dir, readOnly: true}
        - {name: tmp, mountPath: /tmp}
  volumes:
    - {name: config, configMap: {name: streamdistill-edge-$device-config}}
    - {name: state, hostPath: {path: $state, type: Directory}}
    - {name: video, hostPath: {path: $video_dir, type: Directory}}
    - {name: tmp, emptyDir: {}}
EOF
}

# The names of the ConfigMaps in play files (podman 4.3 makes a volume of each).
configmaps() {
  /usr/bin/python3 -c '
import os, sys, yaml
for path in sys.argv[1:]:
    for d in (yaml.safe_load_all(open(path)) if os.path.exists(path) else []):
        if d and d["kind"] == "ConfigMap":
            print(d["metadata"]["name"])' "$@"
}

single_check() {
  out=$PWD/out/kube_check
  rm -rf "$out"
  mkdir -p "$out/secrets/streamdistill-admin-token" "$out/secrets/streamdistill-devices" "$out/edge-state"
  # The Secrets the overlay expects, as files (podman 4.3 has no Secret kind).
  openssl rand -hex 16 > "$out/secrets/streamdistill-admin-token/admin_token"
  token=$("$admin" enrol --devices-file "$out/secrets/streamdistill-devices/devices.yaml" \
    --device cam1 | grep -E '^[0-9a-f]{48}$')
  # The containers run as user 10001; the edge writes its state where the host can score it.
  chmod -R a+rX "$out/secrets"
  chown 10001:10001 "$out/edge-state"
  edge_config cam1 "$token" 127.0.0.1:50051 > "$out/edge.yaml"
  edge_pod cam1 "$out/edge.yaml" "$out/edge-state" > "$out/edge-pod.yaml"

  kubectl kustomize deploy/k8s/overlays/single 2>/dev/null > "$out/rendered.yaml"
  /usr/bin/python3 scripts/kube_for_podman.py "$out/rendered.yaml" "$out/secrets" > "$out/server-play.yaml"
  /usr/bin/python3 scripts/kube_for_podman.py "$out/edge-pod.yaml" "$out/secrets" > "$out/edge-play.yaml"

  down() {
    podman kube play --down "$out/edge-play.yaml" >/dev/null 2>&1 || true
    podman kube play --down "$out/server-play.yaml" >/dev/null 2>&1 || true
    # podman 4.3 keeps each ConfigMap as a volume of that name after --down.
    # shellcheck disable=SC2046
    podman volume rm -f state-streamdistill-server-0 $(configmaps "$out"/*-play.yaml) >/dev/null 2>&1 || true
  }
  down
  trap down EXIT
  echo "kube_check: the server (overlay single, podman kube play)"
  podman kube play "$out/server-play.yaml" >/dev/null
  # podman names a Deployment's container <deployment>-pod-<n>-<container>.
  server_container=$(podman ps --format '{{.Names}}' | grep -E '^streamdistill-server-0-pod.*-server$' | head -1)
  for _ in $(seq 120); do
    [ "$(podman healthcheck run "$server_container" >/dev/null 2>&1 && echo up)" = up ] && break
    "$admin" health --target 127.0.0.1:50051 --timeout 1 >/dev/null 2>&1 && break
    sleep 1
  done
  "$admin" health --target 127.0.0.1:50051 --service streamdistill.v1.EdgeLink --timeout 5
  echo "kube_check: the edge on the sample video for ${DURATION} s"
  podman kube play "$out/edge-play.yaml" >/dev/null
  edge_container=$(podman ps -a --format '{{.Names}}' | grep -E '^streamdistill-edge-cam1.*-edge$' | head -1)
  podman wait "$edge_container" >/dev/null
  podman logs "$edge_container" 2>&1 | tail -4
  podman logs "$server_container" > "$out/server.log" 2>&1 || true
  down
  trap - EXIT

  echo
  echo "scoring the edge's start and deployed models on the held-out frames"
  state=$out/edge-state/edge-cam1
  "$eval_bin" --config configs/train_vtest.yaml \
    --weights "$state/initial.sdw" --weights "$state/deployed.sdw" --edge-summary "$state/summary.json" |
    tee "$out/summary.txt"
}

cluster_check() {
  out=$PWD/out/kube_check_cluster
  rm -rf "$out"
  mkdir -p "$out/secrets/streamdistill-admin-token" "$out/secrets/streamdistill-db" "$out/edge-state" "$out/logs"
  # The Secrets the overlay expects, as files (podman 4.3 has no Secret kind): the dashboard's
  # token and the database password, which the check's PostgreSQL is initialised with.
  openssl rand -hex 16 > "$out/secrets/streamdistill-admin-token/admin_token"
  openssl rand -hex 16 > "$out/secrets/streamdistill-db/password"
  chmod -R a+rX "$out/secrets"
  chown 10001:10001 "$out/edge-state"

  kubectl kustomize deploy/k8s/overlays/cluster 2>/dev/null > "$out/rendered.yaml"
  # What the overlay says, read back: the replicas, the database's address and HAProxy's port.
  read -r replicas dsn < <(/usr/bin/python3 -c '
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
sts = next(d for d in docs if d["kind"] == "StatefulSet")
cm = next(d for d in docs if d["kind"] == "ConfigMap" and "server.yaml" in d["data"])
print(sts["spec"]["replicas"], yaml.safe_load(cm["data"]["server.yaml"])["storage"]["dsn"])' "$out/rendered.yaml")
  [ "$replicas" = 2 ] || { echo "kube_check: overlay cluster has $replicas replicas, expected 2" >&2; exit 1; }
  pg_user=$(sed -n 's/.*user=\([^ ]*\).*/\1/p' <<<"$dsn")
  pg_db=$(sed -n 's/.*dbname=\([^ ]*\).*/\1/p' <<<"$dsn")
  pg_host=$(sed -n 's/.*host=\([^ ]*\).*/\1/p' <<<"$dsn")
  /usr/bin/python3 scripts/kube_for_podman.py --pod-network "$out/rendered.yaml" "$out/secrets" > "$out/server-play.yaml"

  # The check's PostgreSQL, a pod named as the overlay's storage.dsn names the database's host
  # (a Service `streamdistill-postgres` in Kubernetes, the operator's). Not part of the product.
  cat > "$out/postgres-pod.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $pg_host
  labels: {app.kubernetes.io/name: streamdistill-postgres}
spec:
  restartPolicy: Always
  containers:
    - name: postgres
      image: localhost/streamdistill-postgres:latest
      imagePullPolicy: IfNotPresent
      args: [-c, max_connections=200]
      env:
        - {name: POSTGRES_USER, value: $pg_user}
        - {name: POSTGRES_DB, value: $pg_db}
        - {name: POSTGRES_PASSWORD_FILE, value: /etc/streamdistill-secrets/db/password}
      volumeMounts:
        - {name: db, mountPath: /etc/streamdistill-secrets/db, readOnly: true}
  volumes:
    - name: db
      secret: {secretName: streamdistill-db}
EOF
  /usr/bin/python3 scripts/kube_for_podman.py --pod-network "$out/postgres-pod.yaml" "$out/secrets" > "$out/postgres-play.yaml"

  # podman names a Pod's container <pod>-<container>.
  local pg_container=$pg_host-postgres
  pods=("$pg_host" streamdistill-haproxy)
  for k in $(seq 0 $((replicas - 1))); do pods+=("streamdistill-server-$k"); done
  for i in $(seq 1 "$EDGES"); do pods+=("streamdistill-edge-cam$i"); done
  down() {
    local c
    for c in $(podman ps -a --format '{{.Names}}' | grep -E '^streamdistill-(server-[0-9]+-server|haproxy-haproxy|postgres-postgres|edge-cam[0-9]+-edge)$'); do
      [ -s "$out/logs/$c.log" ] || podman logs "$c" > "$out/logs/$c.log" 2>&1 || true
    done
    for f in edges server postgres; do
      [ -f "$out/$f-play.yaml" ] && podman kube play --down "$out/$f-play.yaml" >/dev/null 2>&1 || true
    done
    podman pod rm -f -t 5 --ignore "${pods[@]}" >/dev/null 2>&1 || true
    # podman 4.3 keeps each ConfigMap as a volume of that name after --down.
    # shellcheck disable=SC2046
    podman volume rm -f $(configmaps "$out"/*-play.yaml) >/dev/null 2>&1 || true
  }
  down
  trap down EXIT
  psql() {
    podman exec "$pg_container" /usr/lib/postgresql/15/bin/psql -h /tmp -U postgres -d "$pg_db" -AtF ' ' -c "$1"
  }

  echo "kube_check: PostgreSQL for the check (localhost/streamdistill-postgres, pod $pg_host)"
  podman kube play "$out/postgres-play.yaml" >/dev/null
  for _ in $(seq 60); do
    podman exec "$pg_container" /usr/lib/postgresql/15/bin/pg_isready -q -h 127.0.0.1 2>/dev/null && break
    sleep 1
  done
  podman exec "$pg_container" /usr/lib/postgresql/15/bin/pg_isready -h 127.0.0.1 2>/dev/null

  echo "kube_check: $replicas server replicas and HAProxy (overlay cluster, podman kube play)"
  podman kube play "$out/server-play.yaml" >/dev/null
  for k in $(seq 0 $((replicas - 1))); do
    for _ in $(seq 120); do
      podman exec "streamdistill-server-$k-server" streamdistill-admin health --target 127.0.0.1:50051 \
        --service streamdistill.v1.EdgeLink --timeout 1 >/dev/null 2>&1 && break
      sleep 1
    done
    echo -n "streamdistill-server-$k: "
    podman exec "streamdistill-server-$k-server" streamdistill-admin health --target 127.0.0.1:50051 \
      --service streamdistill.v1.EdgeLink --timeout 5
  done

  # Each edge enrolled in the database, as an operator does (streamdistill-admin enrol --dsn),
  # here from inside a replica's pod: it reaches the database by the same name.
  : > "$out/edges-pod.yaml"
  for i in $(seq 1 "$EDGES"); do
    device=cam$i
    token=$(podman exec streamdistill-server-0-server streamdistill-admin enrol --dsn "$dsn" \
      --password-file /etc/streamdistill-secrets/db/password --device "$device" 2>>"$out/logs/enrol.log" |
      grep -E '^[0-9a-f]{48}$')
    mkdir -p "$out/edge-state/edge-$device"
    chown 10001:10001 "$out/edge-state/edge-$device"
    edge_config "$device" "$token" streamdistill-haproxy:50051 > "$out/edge-$device.yaml"
    [ "$i" -gt 1 ] && echo --- >> "$out/edges-pod.yaml"
    edge_pod "$device" "$out/edge-$device.yaml" "$out/edge-state" \
      "--ack-log=/var/lib/streamdistill/edge-$device/acks.log" >> "$out/edges-pod.yaml"
  done
  /usr/bin/python3 scripts/kube_for_podman.py --pod-network "$out/edges-pod.yaml" "$out/secrets" > "$out/edges-play.yaml"

  echo "kube_check: $EDGES edges through HAProxy on the sample video for ${DURATION} s"
  podman kube play "$out/edges-play.yaml" >/dev/null
  local start kill_after
  start=$(date +%s.%N)
  kill_after=$(awk -v d="$DURATION" -v f="$KILL_AT" 'BEGIN {printf "%.0f", d * f}')
  acked() { local n; n=$(grep -c ' 0$' "$out/edge-state/edge-$1/acks.log" 2>/dev/null) || true; echo "${n:-0}"; }
  sleep "$kill_after"

  # The replica holding most devices (their leases) goes, without notice.
  psql "SELECT device_id, replica FROM device_leases WHERE expires_at > now() ORDER BY device_id" > "$out/leases-at-kill.txt"
  psql "SELECT device_id, max(version) FROM versions GROUP BY device_id ORDER BY device_id" > "$out/versions-at-kill.txt"
  victim=$(awk '{print $2}' "$out/leases-at-kill.txt" | sort | uniq -c | sort -rn | awk 'NR == 1 {print $2}')
  [ -n "$victim" ] || { echo "kube_check: no device holds a lease at the kill" >&2; exit 1; }
  declare -A acked_at_kill=()
  for i in $(seq 1 "$EDGES"); do acked_at_kill[cam$i]=$(acked "cam$i"); done
  podman logs "$victim-server" > "$out/logs/$victim-server.log" 2>&1 || true
  podman pod rm -f -t 0 "$victim" >/dev/null
  local killed_at
  killed_at=$(date +%s.%N)
  orphans=$(awk -v r="$victim" '$2 == r {print $1}' "$out/leases-at-kill.txt" | tr '\n' ' ')
  echo "kube_check: $(awk -v a="$killed_at" -v s="$start" 'BEGIN {printf "%.0f", a - s}') s in, pod $victim removed (SIGKILL);" \
       "its devices: $orphans"
  # Seconds until each of them has a frame acked again (through HAProxy, by the other replica).
  : > "$out/served-again.txt"
  local pending=$orphans
  while [ -n "${pending// /}" ] && awk -v n="$(date +%s.%N)" -v s="$start" -v d="$DURATION" 'BEGIN {exit !(n - s < d + 30)}'; do
    sleep 0.5
    local still=""
    for device in $pending; do
      if [ "$(acked "$device")" -gt "${acked_at_kill[$device]}" ]; then
        echo "$device $(awk -v n="$(date +%s.%N)" -v k="$killed_at" 'BEGIN {printf "%.1f", n - k}')" >> "$out/served-again.txt"
      else
        still+="$device "
      fi
    done
    pending=$still
  done

  for i in $(seq 1 "$EDGES"); do
    podman wait "streamdistill-edge-cam$i-edge" >/dev/null
    echo "cam$i: $(podman logs "streamdistill-edge-cam$i-edge" 2>&1 | tail -1)"
  done
  psql "SELECT device_id, sequence FROM frames ORDER BY device_id, sequence" > "$out/frames.txt"
  psql "SELECT device_id, version, stored_by FROM versions ORDER BY device_id, created_ms, version" > "$out/versions.txt"
  down
  trap - EXIT

  echo
  echo "scoring the edges' start and deployed models on the held-out frames"
  for i in $(seq 1 "$EDGES"); do
    state=$out/edge-state/edge-cam$i
    if [ ! -f "$state/deployed.sdw" ]; then echo "cam$i: no version deployed"; continue; fi
    "$eval_bin" --config configs/train_vtest.yaml \
      --weights "$state/initial.sdw" --weights "$state/deployed.sdw" --edge-summary "$state/summary.json" \
      > "$out/summary-cam$i.txt"
    if [ "$i" = 1 ]; then cat "$out/summary-cam1.txt"; else echo "cam$i: $(tail -1 "$out/summary-cam$i.txt")"; fi
  done

  echo
  echo "cluster checks (every acked frame stored once, versions increasing, devices served again, updates after the removal):"
  /usr/bin/python3 - "$out" "$EDGES" "$victim" "$kill_after" "$orphans" <<'EOF' | tee "$out/cluster.txt"
import collections, json, sys
out, edges, victim, kill_after, orphans = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5].split()
def rows(name):
    return [line.split() for line in open(f"{out}/{name}") if line.strip()]
stored = collections.Counter((d, int(s)) for d, s in rows("frames.txt"))
versions = collections.defaultdict(list)
for d, v, by in rows("versions.txt"):
    versions[d].append((int(v), by))
at_kill = {d: int(v) for d, v in rows("versions-at-kill.txt")}
served = {d: float(s) for d, s in rows("served-again.txt")}
acked = lost = 0
updates_after, increasing, failures = {}, True, []
for i in range(1, edges + 1):
    d = f"cam{i}"
    seqs = {int(s) for s, code in rows(f"edge-state/edge-{d}/acks.log") if code == "0"}
    acked += len(seqs)
    missing = [s for s in seqs if (d, s) not in stored]
    lost += len(missing)
    vs = [v for v, _ in versions[d]]
    if any(b <= a for a, b in zip(vs, vs[1:])):
        increasing = False
        failures.append(f"{d}: versions not increasing {vs}")
    summary = json.load(open(f"{out}/edge-state/edge-{d}/summary.json"))
    updates_after[d] = summary["model_version"] - at_kill.get(d, 0)
    if updates_after[d] < 1:
        failures.append(f"{d}: runs v{summary['model_version']}, none newer than v{at_kill.get(d, 0)} (the newest at the removal)")
    if missing:
        failures.append(f"{d}: {len(missing)} acked frames not stored, e.g. {sorted(missing)[:5]}")
duplicates = sum(n - 1 for n in stored.values() if n > 1)
for d in orphans:
    if d not in served:
        failures.append(f"{d}: not served again after {victim} was removed")
by_replica = collections.Counter(by for vs in versions.values() for _, by in vs)
print(json.dumps({"replicas": 2, "edges": edges, "removed": victim, "removed_at_s": kill_after,
                  "acked": acked, "stored": sum(stored.values()), "lost": lost, "duplicates": duplicates,
                  "versions_increasing": increasing, "served_again_s": served,
                  "versions_after_removal": updates_after, "versions_stored_by": dict(by_replica)}, sort_keys=True))
for f in failures:
    print("FAILED:", f)
sys.exit(1 if failures or lost or duplicates else 0)
EOF
}

if [ "$OVERLAY" = cluster ]; then cluster_check; else single_check; fi
