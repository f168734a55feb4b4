#!/usr/bin/env bash
# Runs libFuzzer targets (fuzz/<target>_fuzz.cc) from their seed corpora (docs/hardening.md):
#   bash scripts/fuzz.sh TARGET [SECONDS]   one target, e.g. spool, for SECONDS (default 60)
#   bash scripts/fuzz.sh all [SECONDS]      every target, SECONDS each (.ci/run)
#   bash scripts/fuzz.sh list               the target names
# Builds build-asan/ (ASan + UBSan + libFuzzer) when needed. Seeds come from fuzz/corpus/TARGET;
# new inputs and any crash go to $FUZZ_OUT/TARGET (default out/fuzz/), never into the repo.
# A crash, leak, timeout (-timeout, s per input) or out-of-memory (-rss_limit_mb) fails the run;
# reproduce one with build-asan/TARGET_fuzz FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-}
seconds=${2:-60}
targets=()
for f in fuzz/*_fuzz.cc; do n=$(basename "$f" _fuzz.cc); targets+=("$n"); done
case "$what" in
  list) printf '%s\n' "${targets[@]}"; exit 0 ;;
  all) ;;
  "") echo "usage: $0 TARGET|all|list [SECONDS]" >&2; exit 2 ;;
  *) [ -f "fuzz/${what}_fuzz.cc" ] || { echo "fuzz: no target '$what' (have: ${targets[*]})" >&2; exit 2; }
     targets=("$what") ;;
esac
bash scripts/setup.sh
# Before sanitizer_env.sh: nproc obeys its OMP_NUM_THREADS=1.
jobs=$(nproc)
source scripts/sanitizer_env.sh
# libFuzzer's own flags decide; ASan must not abort before libFuzzer saves the input.
export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=1"

dir=build-asan
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++-14 \
  -DSD_SANITIZE=address,undefined -DSD_FUZZ=ON >/dev/null
cmake --build "$dir" -j "$jobs" --target "${targets[@]/%/_fuzz}"

out=${FUZZ_OUT:-out/fuzz}
failed=()
summary=()
for t in "${targets[@]}"; do
  work="$out/$t"
  rm -rf "$work"
  mkdir -p "$work/new" "$work/tmp"
  echo "fuzz $t: ${seconds}s from fuzz/corpus/$t ($(ls "fuzz/corpus/$t" | wc -l) seeds), new inputs in $work/new"
  status=0
  # Temp files of the targets (spool dirs, label files) go to the scratch dir.
  TMPDIR=$PWD/$work/tmp "$dir/${t}_fuzz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/" "$work/new" "fuzz/corpus/$t" >"$work/log.txt" 2>&1 || status=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/log.txt" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$work/log.txt" | tail -1 | grep -o '[0-9]*' || echo "?")
  line="fuzz $t: $([ $status -eq 0 ] && echo ok || echo FAILED) ($execs execs in ${seconds}s, cov $cov, $(ls "$work/new" | wc -l) new inputs)"
  if [ $status -ne 0 ]; then
    tail -n 60 "$work/log.txt"
    failed+=("$t")
  fi
  rm -rf "$work/tmp"
  echo "$line"
  summary+=("$line")
done
echo "fuzz summary: ${#targets[@]} targets, ${#failed[@]} failed${failed:+ (${failed[*]})}"
[ ${#failed[@]} -eq 0 ]
