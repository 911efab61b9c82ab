#!/usr/bin/env bash
# Top-1 accuracy of every fixture model under uniform plans (simulated quantization, min/max
# calibration on the config's calibration selection), as a Markdown table:
#   bench/accuracy_table.sh [BUILD_DIR] [COUNT]      COUNT: validation samples (0 = all)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build}
count=${2:-0}
plans=(W8A8 W7A8 W4A8 W4g128A16 W2g128A16)
printf '| model | fp32 |'; printf ' %s |' "${plans[@]}"; printf '\n|---|---:|'; printf -- '---:|%.0s' "${plans[@]}"; printf '\n'
for model in fmnist_mlp fmnist_resnet fmnist_mobilenetv2 fmnist_vit cifar10_resnet20 cifar10_resnet32; do
  config="$repo/configs/$model.yaml"
  row="| $model |"
  fp32=""
  for plan in "${plans[@]}"; do
    out=$("$build/cli/bitplan" evaluate --config "$config" --plan "$plan" --count "$count" --json 2>&1) || { row="$row n/a |"; continue; }
    read -r f q <<<"$(printf '%s' "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["top1"], d["quantized"]["top1"])')"
    [ -n "$fp32" ] || { fp32=$f; row="$row $(python3 -c "print(f'{100*$f:.2f}')") |"; }
    row="$row $(python3 -c "print(f'{100*$q:.2f}')") |"
  done
  echo "$row"
done
