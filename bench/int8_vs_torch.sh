#!/usr/bin/env bash
# bitplan's real INT8 path vs PyTorch's own INT8 (torch.ao.quantization FX static PTQ,
# bench/torch_ptq.py) on the fixture models, same batch and thread count, in one run.
# Each side's INT8/fp32 speed-up is measured against its own fp32 in the same process;
# the last column is bitplan's INT8 time over PyTorch's (< 1: bitplan faster).
#   bench/int8_vs_torch.sh [BUILD_DIR] [THREADS] [SECONDS] [PLAN] [PYTHON]
# MODELS="a b" limits the run to those fixture models.
# PLAN: bitplan's uniform INT8 plan (default: W8A8 where the CPU has VNNI, else W7A8, the
# widest weights that run exactly on oneDNN's non-VNNI int8 kernels; docs/quantization.md).
# PYTHON: an interpreter with torch (default /usr/bin/python3, Debian's torch).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build}
threads=${2:-$(nproc)}
seconds=${3:-2}
plan=${4:-auto}
python=${5:-/usr/bin/python3}
if [ "$plan" = auto ]; then
  if grep -qw avx512_vnni /proc/cpuinfo || grep -qw avx_vnni /proc/cpuinfo; then plan=W8A8; else plan=W7A8; fi
fi
printf '%-18s %5s %5s | %9s %9s %7s | %9s %9s %7s | %13s\n' model batch plan \
  fp32_ms int8_ms speedup torch_fp32 torch_int8 speedup int8_vs_torch
for model in ${MODELS:-fmnist_mlp fmnist_resnet fmnist_mobilenetv2 fmnist_vit cifar10_resnet20 cifar10_resnet32}; do
  [ -f "$repo/configs/$model.yaml" ] || continue
  peer=$("$python" "$repo/bench/torch_ptq.py" --model "$model" --threads "$threads" \
    --seconds "$seconds" --batch-sizes 1,64 2>/dev/null) || { echo "$model: torch_ptq failed" >&2; continue; }
  for batch in 1 64; do
    ours=$("$build/bench/bench_quant" "$repo/configs/$model.yaml" "$plan" "$batch" "$threads" "$seconds")
    "$python" - "$ours" "$peer" "$model" "$batch" "$plan" <<'PY'
import json, sys
ours, peer = json.loads(sys.argv[1]), json.loads(sys.argv[2])
t = peer["latency"][sys.argv[4]]
print(f"{sys.argv[3]:<18} {sys.argv[4]:>5} {sys.argv[5]:>5} | {ours['fp32_ms']:>9.3f} {ours['int8_ms']:>9.3f} "
      f"{ours['fp32_over_int8']:>6.2f}x | {t['fp32_ms']:>9.3f} {t['int8_ms']:>9.3f} {t['fp32_ms'] / t['int8_ms']:>6.2f}x | "
      f"{ours['int8_ms'] / t['int8_ms']:>13.2f}")
PY
  done
done
