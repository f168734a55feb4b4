# Sourced by scripts/sanitize.sh and scripts/fuzz.sh: the sanitizer runtime options. Every
# report in our code stops the process with a non-zero exit, so the test or fuzz run fails;
# tools/sanitizers/*.supp only name frames inside the uninstrumented libraries (libtorch,
# libgomp, OpenCV, gRPC), each with its reason (docs/hardening.md).
SD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SD_SUPP=$SD_ROOT/tools/sanitizers
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=0:detect_leaks=1:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=1:print_suppressions=0"
export LSAN_OPTIONS="suppressions=$SD_SUPP/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$SD_SUPP/ubsan.supp:print_suppressions=0"
export TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1:suppressions=$SD_SUPP/tsan.supp:print_suppressions=0"
# libtorch's OpenMP pool (libgomp) is not instrumented: one thread keeps its work in the
# calling thread, where TSan sees it.
export OMP_NUM_THREADS=1
# OpenCV's gphoto2 backend probes for cameras on every failed VideoCapture open: no port or
# camera drivers for it, so it loads (and unloads) no plugin whose leaks LSan could not name
# (tools/sanitizers/lsan.supp). No test uses a gphoto2 camera.
export IOLIBS=$SD_ROOT/tools/sanitizers/none CAMLIBS=$SD_ROOT/tools/sanitizers/none
# The daemon tests' wall-clock deadlines, x3 (tests/daemon_test_util.h).
export SD_TEST_TIME_SCALE=${SD_TEST_TIME_SCALE:-3}
# Symbolized stacks (file:line) in reports.
if [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ]; then
  export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer
  export PATH=/usr/lib/llvm-14/bin:$PATH
fi
