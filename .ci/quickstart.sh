#!/usr/bin/env bash
# README quick start, first command: set up, build, and run the main job: the quickstart study
# (examples/quickstart.toml) on Fashion-MNIST. It ends by printing the report's path. Run again,
# it continues the study in studies/quickstart (finished runs are kept); extra arguments go to
# `vaelab study` (e.g. --out DIR for a fresh study).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
build_dir="${VAELAB_BUILD_DIR:-build}"
args=("$@")
if [ ${#args[@]} -eq 0 ] && [ -e studies/quickstart/study.sqlite ]; then args=(--resume); fi
"$build_dir/bin/vaelab" study examples/quickstart.toml "${args[@]}"
