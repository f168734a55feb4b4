#!/usr/bin/env bash
# The main job in containers, from the Kubernetes manifests (docs/deploy.md): the `single`
# overlay rendered by `kubectl kustomize`, adapted to podman 4.3 (scripts/kube_for_podman.py),
# run by `podman kube play` beside an edge pod on the sample video, then scored as
# scripts/demo.sh scores it, printing the same JSON line.
#
#   bash scripts/kube_check.sh [--duration SECONDS]     (default 300, as the main job)
#
# Needs the images (scripts/image.sh; made when missing) and ports 50051 and 9464 free on the
# host (the pods use the host's network). Output in out/kube_check/.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=300
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    *) echo "usage: $0 [--duration SECONDS]" >&2; exit 2 ;;
  esac
done
export CONTAINERS_CONF=$PWD/deploy/podman/containers.conf
bash scripts/setup.sh images >/dev/null
podman image exists localhost/streamdistill-server:latest && podman image exists localhost/streamdistill-edge:latest ||
  bash scripts/image.sh
bash scripts/build.sh  # the host's streamdistill-admin (enrolment) and -eval (the score)

out=$PWD/out/kube_check
rm -rf "$out"
mkdir -p "$out/secrets/streamdistill-admin-token" "$out/secrets/streamdistill-devices" "$out/edge-state"
# The Secrets the overlay expects, as files (podman 4.3 has no Secret kind).
openssl rand -hex 16 > "$out/secrets/streamdistill-admin-token/admin_token"
token=$(./build/streamdistill-admin enrol --devices-file "$out/secrets/streamdistill-devices/devices.yaml" \
  --device cam1 | grep -E '^[0-9a-f]{48}$')
# The containers run as user 10001; the edge writes its state where the host can score it.
chmod -R a+rX "$out/secrets"
chown 10001:10001 "$out/edge-state"

# The edge: configs/edge.yaml (the main job's) with the enrolled token and the state on the
# host, in a Pod that runs once (restartPolicy Never), the sample video mounted read-only.
video_dir=/usr/share/doc/opencv-doc/examples/data
sed -e "s#^token: .*#token: $token#" -e "s#^state_dir: .*#state_dir: /var/lib/streamdistill/edge-cam1#" \
    -e "s#^  path: state/edge-cam1/detections.jsonl#  path: /var/lib/streamdistill/edge-cam1/detections.jsonl#" \
    -e "s#^summary_path: .*#summary_path: /var/lib/streamdistill/edge-cam1/summary.json#" \
    configs/edge.yaml > "$out/edge.yaml"
cat > "$out/edge-pod.yaml" <<EOF
apiVersion: v1
kind: ConfigMap
metadata: {name: streamdistill-edge-config}
data:
  edge.yaml: |
$(sed 's/^/    /' "$out/edge.yaml")
---
apiVersion: v1
kind: Pod
metadata:
  name: streamdistill-edge-cam1
  labels: {app.kubernetes.io/name: streamdistill-edge}
spec:
  restartPolicy: Never
  securityContext: {runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001}
  containers:
    - name: edge
      image: localhost/streamdistill-edge:latest
      imagePullPolicy: IfNotPresent
      args: [--config=/etc/streamdistill/edge.yaml, --duration=$DURATION, --log-level=warn]
      workingDir: /var/lib/streamdistill
      securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
      volumeMounts:
        - {name: config, mountPath: /etc/streamdistill, readOnly: true}
        - {name: state, mountPath: /var/lib/streamdistill}
        - {name: video, mountPath: $video_dir, readOnly: true}
        - {name: tmp, mountPath: /tmp}
  volumes:
    - {name: config, configMap: {name: streamdistill-edge-config}}
    - {name: state, hostPath: {path: $out/edge-state, type: Directory}}
    - {name: video, hostPath: {path: $video_dir, type: Directory}}
    - {name: tmp, emptyDir: {}}
EOF

kubectl kustomize deploy/k8s/overlays/single 2>/dev/null > "$out/rendered.yaml"
/usr/bin/python3 scripts/kube_for_podman.py "$out/rendered.yaml" "$out/secrets" > "$out/server-play.yaml"
/usr/bin/python3 scripts/kube_for_podman.py "$out/edge-pod.yaml" "$out/secrets" > "$out/edge-play.yaml"

down() {
  podman kube play --down "$out/edge-play.yaml" >/dev/null 2>&1 || true
  podman kube play --down "$out/server-play.yaml" >/dev/null 2>&1 || true
  podman volume rm -f state-streamdistill-server-0 >/dev/null 2>&1 || true
}
down
trap down EXIT
echo "kube_check: the server (overlay single, podman kube play)"
podman kube play "$out/server-play.yaml" >/dev/null
# podman names a Deployment's container <deployment>-pod-<n>-<container>.
server_container=$(podman ps --format '{{.Names}}' | grep -E '^streamdistill-server-0-pod.*-server$' | head -1)
for _ in $(seq 120); do
  [ "$(podman healthcheck run "$server_container" >/dev/null 2>&1 && echo up)" = up ] && break
  ./build/streamdistill-admin health --target 127.0.0.1:50051 --timeout 1 >/dev/null 2>&1 && break
  sleep 1
done
./build/streamdistill-admin health --target 127.0.0.1:50051 --service streamdistill.v1.EdgeLink --timeout 5
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
./build/streamdistill-eval --config configs/train_vtest.yaml \
  --weights "$state/initial.sdw" --weights "$state/deployed.sdw" --edge-summary "$state/summary.json" |
  tee "$out/summary.txt"
