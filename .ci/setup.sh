#!/usr/bin/env bash
# Installs what vaelab needs from Debian 12's packages (only what is missing), then configures
# and builds it with Ninja. Idempotent. Used by both README quick-start commands and by CI.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  cmake ninja-build g++ ccache pkg-config
  libtorch-dev libopenblas0-pthread       # LibTorch 1.13 CPU; OpenBLAS, else reference BLAS (~30x slower)
  libgloo-dev                             # Gloo headers for c10d data-parallel training (LibTorch has the library)
  libdnnl-dev ocl-icd-opencl-dev opencl-headers  # oneDNN 2.6; its CMake config requires OpenCL
  libboost-dev libboost-filesystem-dev    # Boost.DLL
  libtomlplusplus-dev libspdlog-dev libfmt-dev catch2 libcli11-dev nlohmann-json3-dev
  libsqlite3-dev zlib1g-dev libstb-dev
  libbz2-dev liblzma-dev libzstd-dev libpng-dev   # vaelab compress --compare: bzip2, xz, zstd, PNG
  gnuplot-nox                             # the plots of vaelab report (optional: tables render without it)
  dataset-fashion-mnist                   # /usr/share/datasets/fashion-mnist/*.gz
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

build_dir="${VAELAB_BUILD_DIR:-build}"
werror=OFF
if [ "${CI:-}" = "true" ]; then werror=ON; fi
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVAELAB_WERROR="$werror"
cmake --build "$build_dir" -j "$(nproc)"
