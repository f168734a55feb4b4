#!/usr/bin/env bash
# Runs streamdistill-bench on one synthetic stream layout under several scene seeds, then
# compares each strategy with `uniform` across the streams (streamdistill-bench --compare-streams).
#
# Why: a strategy like `diversity` picks the same frames on a given stream whatever the run's
# seed, so the seeds of one stream replicate only the training's randomness. Whether a strategy
# chooses better frames is a question over streams: each scene seed renders other objects,
# paths and backgrounds with the same layout (drift point, sizes, classes).
#
# usage: scripts/bench_streams.sh CONFIG OUT_PREFIX "SCENE_SEEDS" [streamdistill-bench flags]
#   e.g. scripts/bench_streams.sh configs/bench_drift.yaml out/bench/drift_streams "7 8 9 10 11 12" \
#            --strategies uniform,diversity --budgets 25 --seeds 3
# Each stream goes to OUT_PREFIX/s<seed>/ (its config beside the results) and is resumed if
# already there. No all-frames baseline: it does not pair with a budget.
set -euo pipefail
config=$1 prefix=$2 seeds=$3
shift 3
here=$(cd "$(dirname "$0")/.." && pwd)
bench=${BENCH:-$here/build/streamdistill-bench}
grep -q 'video: "synthetic:seed=' "$config" || { echo "$config: not a synthetic: stream" >&2; exit 2; }
dirs=()
for seed in $seeds; do
  out=$prefix/s$seed
  mkdir -p "$out"
  sed -e "s/synthetic:seed=[0-9]*,/synthetic:seed=$seed,/" \
      -e "s/^name: \(.*\)$/name: \1_s$seed/" \
      -e '/^grid:$/a\  all_frames_baseline: false' "$config" > "$out/config.yaml"
  echo "=== scene seed $seed -> $out"
  "$bench" --config "$out/config.yaml" --out "$out" --resume "$@"
  dirs+=("$out")
done
"$bench" --compare-streams "${dirs[@]}" | tee "$prefix/streams.md"
