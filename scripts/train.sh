#!/usr/bin/env bash
# The offline job: installs, builds, then trains the student from the HOG teacher on the
# sample video and prints its held-out accuracy and speed (streamdistill-train).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
./build/streamdistill-train --config configs/train_vtest.yaml --json out/train_vtest.json "$@"
