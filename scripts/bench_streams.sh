#!/usr/bin/env bash
# Runs streamdistill-bench on one stream layout under several scene seeds, then compares each
# strategy with `uniform` across the streams (streamdistill-bench --compare-streams). The layout
# is a synthetic: video (its seed= draws the scene) or a made stream section (its seed: draws
# the noise, streaks and where a quiet condition's busy stretches lie).
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
if grep -q 'video: "synthetic:seed=' "$config"; then
  reseed() { sed -e "s/synthetic:seed=[0-9]*,/synthetic:seed=$1,/"; }
elif grep -q '^stream:$' "$config"; then
  # Only the stream section's seed: training and sampling keep theirs.
  reseed() { sed -e "/^stream:\$/,/^[a-z]/ s/^  seed: [0-9]*\$/  seed: $1/"; }
else
  echo "$config: neither a synthetic: video nor a stream: section" >&2; exit 2
fi
# A base named relative to the config must still resolve from the copy in the stream's folder.
config_dir=$(cd "$(dirname "$config")" && pwd)
absolute_base="s|^base: \([^/].*\)\$|base: $config_dir/\1|"
no_baseline='/^grid:$/a\  all_frames_baseline: false'
grep -q '^  all_frames_baseline: false' "$config" && no_baseline=''
dirs=()
for seed in $seeds; do
  out=$prefix/s$seed
  mkdir -p "$out"
  reseed "$seed" < "$config" | sed -e "s/^name: \(.*\)$/name: \1_s$seed/" -e "$absolute_base" \
      ${no_baseline:+-e "$no_baseline"} > "$out/config.yaml"
  grep -q "synthetic:seed=$seed,\|^  seed: $seed\$" "$out/config.yaml" ||
    { echo "$config: no scene seed to set: name the synthetic: video or stream.seed in it, not only in its base" >&2; exit 2; }
  echo "=== scene seed $seed -> $out"
  "$bench" --config "$out/config.yaml" --out "$out" --resume "$@"
  dirs+=("$out")
done
"$bench" --compare-streams "${dirs[@]}" | tee "$prefix/streams.md"
