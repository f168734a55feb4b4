#!/usr/bin/env bash
# The test suite under sanitizers, built with clang (docs/hardening.md):
#   bash scripts/sanitize.sh asan   ASan + UBSan, every test. build-asan/ also holds the
#                                   libFuzzer targets (scripts/fuzz.sh uses it).
#   bash scripts/sanitize.sh tsan   ThreadSanitizer, the concurrency-heavy tests, in build-tsan/.
# Extra arguments go to ctest (e.g. -R Spool). Any sanitizer report fails the run. Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-}
shift || true
# The tests whose threads share state: gRPC streams, the labeler pool, the spool, the store.
TSAN_TESTS=(server_protocol_test daemon_e2e_test daemon_restart_test update_stream_test labeler_test
            spool_test frame_store_test)
case "$kind" in
  asan) dir=build-asan; flags=(-DSD_SANITIZE=address,undefined -DSD_FUZZ=ON); targets=(all); labels="" ;;
  tsan) dir=build-tsan; flags=(-DSD_SANITIZE=thread); targets=("${TSAN_TESTS[@]}")
        labels=$(IFS='|'; echo "^(${TSAN_TESTS[*]})\$") ;;
  *) echo "usage: $0 asan|tsan [ctest args...]" >&2; exit 2 ;;
esac
bash scripts/setup.sh
# Before sanitizer_env.sh: nproc obeys its OMP_NUM_THREADS=1.
jobs=$(nproc)
source scripts/sanitizer_env.sh

start=$SECONDS
echo "sanitize $kind: building ${targets[*]} in $dir/ (clang, ${flags[*]})"
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++-14 "${flags[@]}" >/dev/null
# One job per core: a torch translation unit takes ~1.5 GB to compile.
cmake --build "$dir" -j "$jobs" --target "${targets[@]}"
built=$SECONDS

echo "sanitize $kind: running ${labels:+tests labelled $labels}${labels:-every test}"
status=0
ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 900 ${labels:+-L "$labels"} "$@" || status=$?
echo "sanitize $kind: $( [ $status -eq 0 ] && echo PASSED || echo FAILED ) (build $((built - start)) s, tests $((SECONDS - built)) s)"
exit $status
