#!/usr/bin/env bash
# README quick start, first command: set up, build, and run the main job (a training run of the
# paper's Fashion-MNIST MLP on a small training subset). Prints where the results are.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
build_dir="${VAELAB_BUILD_DIR:-build}"
"$build_dir/bin/vaelab" train examples/fmnist-mlp.toml "$@"
