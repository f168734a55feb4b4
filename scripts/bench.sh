#!/usr/bin/env bash
# The sampling benchmark: installs, builds, then runs streamdistill-bench on the sample video
# and on the synthetic drift stream. Results in out/bench/<stream>/ (strategies.csv, .md, .png);
# docs/results.md quotes them. Extra arguments go to both runs, e.g. --quick (a smoke test of
# a few minutes) or --resume (keep the runs already done).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
for stream in vtest drift; do
  ./build/streamdistill-bench --config "configs/bench_${stream}.yaml" --out "out/bench/${stream}" "$@"
done
