#!/usr/bin/env bash
# README quick start, second command: set up, build, and run the test suite (tests tagged [slow]
# are left out; run them with `build/bin/<test> "[slow]"`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
build_dir="${VAELAB_BUILD_DIR:-build}"
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)"
