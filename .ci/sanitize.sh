#!/usr/bin/env bash
# Builds vaelab with AddressSanitizer and UndefinedBehaviorSanitizer (CMakePresets.json, preset
# "asan": gcc, RelWithDebInfo, build-asan/) and runs the test suite under them.
#
#   .ci/sanitize.sh               the whole suite (the full build: about 30 min of CPU at -j1)
#   .ci/sanitize.sh --torch-free  only the test executables that do not link LibTorch (the config,
#                                 the pools, the plugin loader, the data-source readers), run
#                                 directly rather than through ctest: minutes instead of half an hour
#
# Environment: VAELAB_SANITIZE_JOBS (build jobs, default 1).
#
# Sanitizer settings, and why:
# - ASAN_OPTIONS: halt_on_error and abort_on_error stop a test at its first report, so ctest marks
#   it failed; detect_stack_use_after_return and the init-order checks catch what plain ASan misses.
# - LSAN_OPTIONS: leak checking stays on, with .ci/lsan.supp. LibTorch, OpenMP, OpenBLAS and
#   protobuf (which LibTorch loads) are not built with the sanitizers and keep allocations for the
#   life of the process on purpose (operator registries, thread pools, per-thread buffers); without
#   the suppressions every test that touches LibTorch would "leak". The suppressions name only
#   those libraries, so a leak whose stack lies in vaelab's code alone is still reported (one that
#   passes through LibTorch's allocator, a leaked tensor, is not: the price of keeping leak checks).
# - UBSAN_OPTIONS: halt_on_error makes every report fatal, print_stacktrace shows where. The checks
#   are compiled recoverable (GCC's default) rather than with -fno-sanitize-recover, because only
#   recoverable checks can be suppressed: .ci/ubsan.supp names the one report in third-party code
#   that the tests reach (stb_image_write's JPEG encoder, used by a test to write its fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
mode=${1:-all}
jobs=${VAELAB_SANITIZE_JOBS:-1}

export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1"
export LSAN_OPTIONS="suppressions=$root/.ci/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$root/.ci/ubsan.supp"

cmake --preset asan
case "$mode" in
  all)
    cmake --build --preset asan -j "$jobs"
    ctest --preset asan
    ;;
  --torch-free)
    # These link vaelab::sdk / vaelab::host only (and load the torch-free plugins). Each executable
    # is run as ctest runs its test cases: everything not tagged [slow].
    targets=(test-sdk test-pool test-loader test-idx test-npy test-cifar10 test-image-folder)
    cmake --build build-asan -j "$jobs" --target "${targets[@]}"
    status=0
    for t in "${targets[@]}"; do
      echo "== $t under ASan+UBSan"
      "build-asan/bin/$t" "~[slow]" || status=1
    done
    exit $status
    ;;
  *)
    echo "usage: .ci/sanitize.sh [--torch-free]" >&2
    exit 2
    ;;
esac
