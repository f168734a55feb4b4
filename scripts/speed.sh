#!/usr/bin/env bash
# The edge speed benchmark, several runs in a row: each run is a fresh process of
# `streamdistill-bench --speed` (student and HOG teacher alternating at one thread on the same
# 200 frames, privacy masking of a copy of each (a fifth of the frame; faces, filled), the edge's whole path at 1 and 2 threads, the edge daemon's start-up and memory).
# Prints each run's medians and how far the runs spread; out/speed/run-<i>/ holds each run's
# speed.json and speed.md, out/speed/runs.md the table that docs/detector.md quotes.
#   bash scripts/speed.sh [RUNS (default 5)] [WEIGHTS (default: the main job's deployed student)]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
WEIGHTS=${2:-state/edge-cam1/deployed.sdw}
bash scripts/build.sh
WEIGHTS_FLAG=()
if [[ -f "$WEIGHTS" ]]; then
  WEIGHTS_FLAG=(--weights "$WEIGHTS")
else
  echo "speed: $WEIGHTS not found (run scripts/demo.sh first for a trained student); timing random weights" >&2
fi
field() { sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p" <<<"$2"; }
mkdir -p out/speed
{
  echo "| run | student median ms | HOG median ms | speed-up | edge path fps, 1 thread | 2 threads | edge start-up s | edge peak MB | mask (a fifth) ms | face redaction ms |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
} > out/speed/runs.md
speedups=()
for i in $(seq 1 "$RUNS"); do
  summary=$(./build/streamdistill-bench --speed "${WEIGHTS_FLAG[@]}" --out "out/speed/run-$i" | tail -1)
  printf '| %d | %.2f | %.1f | %.1fx | %.1f | %.1f | %.2f | %.0f | %.2f | %.1f |\n' "$i" \
    "$(field student_median_ms "$summary")" "$(field teacher_median_ms "$summary")" \
    "$(field speedup_median "$summary")" "$(field edge_fps_1_thread "$summary")" \
    "$(field edge_fps_2_threads "$summary")" "$(field edge_startup_s "$summary")" \
    "$(field edge_max_rss_mb "$summary")" "$(field mask_fifth_median_ms "$summary")" \
    "$(field faces_fill_median_ms "$summary")" | tee -a out/speed/runs.md
  speedups+=("$(field speedup_median "$summary")")
done
# The ratio moves with the processor (HOG and the student gain differently from a newer core):
# the table says which one it comes from.
cpu=$(sed -n 's/.*"cpu_model": "\(.*\)".*/\1/p' out/speed/run-1/speed.json | head -1)
printf '\nprocessor: %s (lscpu model name); the ratio varies between machines\n' "${cpu:-unknown}" | tee -a out/speed/runs.md
# The spread: the largest speed-up over the smallest, as a percentage above the smallest.
printf '%s\n' "${speedups[@]}" | sort -g | awk '
  NR == 1 { min = $1 } { max = $1 }
  END { printf "\nspeed-up %.1fx to %.1fx over %d runs: the largest is %.1f%% above the smallest\n", min, max, NR, 100 * (max / min - 1) }' |
  tee -a out/speed/runs.md
