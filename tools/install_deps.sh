#!/usr/bin/env bash
# Installs the Debian 12 packages bitplan needs to build, test and run its default job,
# skipping those already installed. Needs root (or sudo). Non-interactive. clang-14 with its
# sanitizer/libFuzzer runtimes and OpenMP is for the fuzz harnesses (tools/test.sh); OpenMPI
# for the distributed search (BITPLAN_MPI, docs/distributed.md).
set -euo pipefail
packages=(
  build-essential cmake pkg-config
  libdnnl-dev libtbb-dev libyaml-cpp-dev libboost-program-options-dev libcli11-dev doctest-dev
  libprotobuf-dev protobuf-compiler libonnx-dev
  libfmt-dev nlohmann-json3-dev zlib1g-dev libjpeg62-turbo-dev libpng-dev libsqlite3-dev libeigen3-dev
  dataset-fashion-mnist libonnx-testdata
  libopenmpi-dev openmpi-bin
  clang-14 libclang-rt-14-dev libomp-14-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install_deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
