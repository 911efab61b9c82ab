#!/usr/bin/env bash
# Packs bitplan's built binaries with their Debian runtime (every shared library ldd names,
# and the loader) and the Fashion-MNIST files into one archive, so that the CPU
# benchmarks can run on a machine without Debian's packages (e.g. a lent GPU host, whose
# CPU has VNNI: bench/run_packed.sh runs them there).
#   bench/pack_runtime.sh [BUILD_DIR] [OUT.tar.xz]      (default .carry/runtime.tar.xz)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build}
out=${2:-$repo/.carry/runtime.tar.xz}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/data"
cp "$build/cli/bitplan" "$build/bench/bench_quant" "$build/bench/bench_lowbit" "$build/bench/bench_sgemm" \
  "$build/tests/bitplan_tests_executor" "$stage/bin/"
for b in "$stage"/bin/*; do ldd "$b" | awk '/=>/ {print $3} /ld-linux/ {print $1}'; done |
  sort -u | grep / | xargs -I{} cp -L {} "$stage/lib/"
# The test split, and the train split the configs calibrate on.
cp /usr/share/datasets/fashion-mnist/*-ubyte.gz "$stage/data/"
mkdir -p "$(dirname "$out")"
tar cJf "$out.tmp" -C "$stage" . && mv "$out.tmp" "$out"
echo "packed $(du -h "$out" | cut -f1) into $out"
