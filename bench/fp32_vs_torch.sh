#!/usr/bin/env bash
# bitplan's fp32 executor vs PyTorch (Debian's torch, eager, inference_mode) on the fixture
# models, same batch and thread count, in one run. Prints a table with the time ratio
# bitplan/PyTorch (< 1 = bitplan faster). Run on a quiet machine:
#   bench/fp32_vs_torch.sh [BUILD_DIR] [THREADS] [SECONDS]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build}
threads=${2:-$(nproc)}
seconds=${3:-3}
printf '%-20s %6s %8s %12s %12s %8s\n' model batch threads bitplan_ms torch_ms ratio
for model in fmnist_mlp fmnist_resnet fmnist_mobilenetv2 fmnist_vit cifar10_resnet20 cifar10_resnet32; do
  [ -f "$repo/models/$model.onnx" ] || continue
  for batch in 1 64; do
    ours=$("$build/bench/bench_fp32" "$repo/models/$model.onnx" "$batch" "$threads" "$seconds")
    peer=$(/usr/bin/python3 "$repo/bench/torch_peer.py" --model "$model" --batch "$batch" --threads "$threads" --seconds "$seconds")
    /usr/bin/python3 - "$ours" "$peer" "$model" "$batch" "$threads" <<'PY'
import json, sys
ours, peer = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{sys.argv[3]:<20} {sys.argv[4]:>6} {sys.argv[5]:>8} {ours['median_ms']:>12.3f} {peer['median_ms']:>12.3f} "
      f"{ours['median_ms'] / peer['median_ms']:>8.2f}")
PY
  done
done
