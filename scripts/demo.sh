#!/usr/bin/env bash
# The main job: installs, builds, then runs the daemon pair on the sample video. The server
# labels the frames the edge samples with the HOG teacher and trains the edge's student from
# a random start; the edge runs the student on every frame and hot-swaps each new version.
# At the end the edge's start and deployed models are scored on the held-out frames 600-794
# against the teacher's labels, and one JSON line sums the run up.
#
#   bash scripts/demo.sh [--fast] [--duration SECONDS] [--fixed-budget] [--server-config F] [--edge-config F]
#   (default: real time, 300 s, configs/server.yaml and configs/edge.yaml with its adaptive
#   sampling budget; --fixed-budget: sampling.budget_per_minute, 20 a minute, all along)
set -euo pipefail
cd "$(dirname "$0")/.."

FAST=""
DURATION=300
SERVER_CONFIG=configs/server.yaml
EDGE_CONFIG=configs/edge.yaml
BUDGET_MODE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --fast) FAST="--fast"; shift ;;
    --duration) DURATION="$2"; shift 2 ;;
    --fixed-budget) BUDGET_MODE="--budget-mode fixed"; shift ;;
    --server-config) SERVER_CONFIG="$2"; shift 2 ;;
    --edge-config) EDGE_CONFIG="$2"; shift 2 ;;
    *) echo "usage: $0 [--fast] [--duration SECONDS] [--fixed-budget] [--server-config F] [--edge-config F]" >&2; exit 2 ;;
  esac
done

bash scripts/setup.sh
bash scripts/build.sh

# A fresh start: no stored frames, no versions, a random student on the edge.
rm -rf state/server state/edge-cam1
mkdir -p state out
./build/streamdistill-server --config "$SERVER_CONFIG" > state/server.log 2>&1 &
SERVER_PID=$!
trap 'kill -INT $SERVER_PID 2>/dev/null || true' EXIT
echo "server started (pid $SERVER_PID, log state/server.log); edge runs ${DURATION}s ${FAST:-at real time}"
# The server makes its dashboard's token on its first start (http.admin_token_file).
for _ in $(seq 50); do [ -s state/admin_token ] && break; sleep 0.2; done
if [ -s state/admin_token ] && grep -q "admin_token_file: state/admin_token" "$SERVER_CONFIG"; then
  echo "dashboard (the run live): http://127.0.0.1:9464/dashboard?token=$(cat state/admin_token)"
fi

./build/streamdistill-edge --config "$EDGE_CONFIG" --duration "$DURATION" $FAST $BUDGET_MODE --log-level warn

kill -INT $SERVER_PID
wait $SERVER_PID || true
trap - EXIT
echo
echo "scoring the edge's start and deployed models on the held-out frames"
./build/streamdistill-eval --config configs/train_vtest.yaml \
  --weights state/edge-cam1/initial.sdw --weights state/edge-cam1/deployed.sdw \
  --edge-summary state/edge-cam1/summary.json | tee out/demo_summary.txt
