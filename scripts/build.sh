#!/usr/bin/env bash
# Configures and builds streamdistill (Release, Ninja, ccache when present) into build/.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release} >/dev/null
# Each torch translation unit takes ~1.5 GB to compile: one job per core is the limit.
cmake --build "$BUILD_DIR" -j "$(nproc)"
