#!/usr/bin/env bash
# The test suite under sanitizers, built with clang (docs/hardening.md):
#   bash scripts/sanitize.sh asan        ASan + UBSan, every test. build-asan/ also holds the
#                                        libFuzzer targets (scripts/fuzz.sh uses it).
#   bash scripts/sanitize.sh tsan        ThreadSanitizer, the tests of our own threads, build-tsan/.
#   bash scripts/sanitize.sh tsan-grpc   ThreadSanitizer, the gRPC tests, triaged (not in CI).
# Extra arguments go to ctest (e.g. -R Spool). Any sanitizer report fails the run. Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-}
shift || true
# ThreadSanitizer: "tsan" runs the tests of our own threads and locks (labeler pool, spool,
# frame store), where TSan sees every synchronisation: any report fails. "tsan-grpc" runs the
# tests that talk gRPC: gRPC core, abseil, protobuf and libtorch are not instrumented, so TSan
# reports thousands of races on what they hand between threads, and the wall-clock assertions
# of the daemon tests fail at TSan's speed; their reports go to files and
# scripts/tsan_triage.py fails only on reports with no frame in those libraries. Not a CI gate
# (docs/hardening.md explains why).
TSAN_STRICT=(labeler_test spool_test frame_store_test regroup_race_test pg_round_queue_test)
TSAN_GRPC=(server_protocol_test daemon_e2e_test daemon_restart_test update_stream_test uplink_stall_test)
label_regex() { local IFS='|'; echo "^($*)\$"; }
case "$kind" in
  asan) dir=build-asan; flags=(-DSD_SANITIZE=address,undefined -DSD_FUZZ=ON); targets=(all) ;;
  tsan) dir=build-tsan; flags=(-DSD_SANITIZE=thread); targets=("${TSAN_STRICT[@]}") ;;
  tsan-grpc) dir=build-tsan; flags=(-DSD_SANITIZE=thread); targets=("${TSAN_GRPC[@]}") ;;
  *) echo "usage: $0 asan|tsan|tsan-grpc [ctest args...]" >&2; exit 2 ;;
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

status=0
if [ "$kind" = asan ]; then
  echo "sanitize asan: running every test"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 900 "$@" || status=$?
elif [ "$kind" = tsan ]; then
  echo "sanitize tsan: running ${TSAN_STRICT[*]} (any report fails)"
  echo "sanitize tsan: not run under TSan: ${TSAN_GRPC[*]} (uninstrumented gRPC; bash scripts/sanitize.sh tsan-grpc)"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 900 -L "$(label_regex "${TSAN_STRICT[@]}")" "$@" || status=$?
else
  reports=$PWD/$dir/tsan-reports
  rm -rf "$reports" && mkdir -p "$reports"
  echo "sanitize tsan-grpc: running ${TSAN_GRPC[*]} (reports to $reports, then tsan_triage.py)"
  TSAN_OPTIONS="${TSAN_OPTIONS/halt_on_error=1:exitcode=66/halt_on_error=0:exitcode=0}:log_path=$reports/report" \
    ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 900 -L "$(label_regex "${TSAN_GRPC[@]}")" "$@" || status=$?
  python3 scripts/tsan_triage.py "$reports" || status=$?
fi
echo "sanitize $kind: $( [ $status -eq 0 ] && echo PASSED || echo FAILED ) (build $((built - start)) s, tests $((SECONDS - built)) s)"
exit $status
