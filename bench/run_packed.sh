#!/usr/bin/env bash
# On a machine without Debian's packages (a lent GPU host, run from the repository root with
# the archive of bench/pack_runtime.sh): unpacks bitplan's binaries and runtime, puts the
# Fashion-MNIST files where the configs expect them, and runs the INT8 benchmarks:
# bitplan's INT8 vs PyTorch's (bench/int8_vs_torch.sh), the integer path's agreement with
# the simulation on the full test sets, the low-bit kernels (bench_lowbit; AVX-512 and AVX2)
# the packed SGEMM against oneDNN (bench_sgemm) and the executor unit tests (the AVX-512 and
# VNNI kernel paths among them). Output goes to $OUT (default ./out). STAGES picks and orders
# them (default: int8 agreement lowbit sgemm unit; lowbit_dram on request).
#   [STAGES="unit lowbit"] bench/run_packed.sh ARCHIVE THREADS [PYTHON]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
archive=$1
threads=$2
python=${3:-python3}
out=${OUT:-$repo/out}
rt=/tmp/bitplan-runtime
mkdir -p "$rt" "$out" && tar xJf "$archive" -C "$rt"
mkdir -p /usr/share/datasets/fashion-mnist && cp "$rt"/data/* /usr/share/datasets/fashion-mnist/
# The binaries were linked against Debian 12's libraries: run them through its loader.
# GOMP_SPINCOUNT set up front stops bitplan's re-exec of /proc/self/exe (the loader here).
mkdir -p "$rt/build/bench" "$rt/build/cli"
for b in bench/bench_quant bench/bench_lowbit cli/bitplan; do
  printf '#!/bin/sh\nGOMP_SPINCOUNT=${GOMP_SPINCOUNT:-1000} exec %s/lib/ld-linux-x86-64.so.2 --library-path %s/lib %s/bin/%s "$@"\n' \
    "$rt" "$rt" "$rt" "$(basename $b)" >"$rt/build/$b"
  chmod +x "$rt/build/$b"
done
{ lscpu; grep -o -w -E 'avx512_vnni|avx_vnni|amx_int8|avx512f' /proc/cpuinfo | sort | uniq -c || true; } >"$out/cpu.txt" 2>&1
for stage in ${STAGES:-int8 agreement lowbit sgemm unit}; do
  case $stage in
    int8)
      "$repo/bench/int8_vs_torch.sh" "$rt/build" "$threads" 2 auto "$python" 2>&1 | tee "$out/int8_vs_torch.txt" ;;
    agreement)
      plan=W7A8
      grep -qw -E 'avx512_vnni|avx_vnni' /proc/cpuinfo && plan=W8A8
      for model in fmnist_mlp fmnist_resnet fmnist_mobilenetv2 fmnist_vit; do
        echo "== $model $plan" && "$rt/build/cli/bitplan" evaluate --config "$repo/configs/$model.yaml" \
          --plan "$plan" --real --threads "$threads" | grep -A3 -E '^(plan|real)'
      done 2>&1 | tee "$out/agreement.txt" ;;
    lowbit)
      # Low-bit kernels against fp32/int8 and the memory bandwidth (docs/performance.md), with
      # the widest kernel ISA here and with AVX2 forced.
      "$rt/build/bench/bench_lowbit" "$threads" 2>&1 | tee "$out/lowbit.txt"
      BITPLAN_MAX_CPU_ISA=avx2 "$rt/build/bench/bench_lowbit" "$threads" 2>&1 | tee "$out/lowbit_avx2.txt" ;;
    lowbit_dram)
      # Weights larger than any L3 (32768 x 8192: 134 MB in 4 bits), so that every call reads
      # them from DRAM: the kernels' share of the copy bandwidth, on THREADS and on all cores.
      for t in "$threads" "$(nproc)"; do
        "$rt/build/bench/bench_lowbit" "$t" 0.3 --shapes 32768x8192,8192x8192 --m 1,8 2>&1 |
          tee "$out/lowbit_dram_${t}t.txt"
      done ;;
    sgemm)
      "$rt/lib/ld-linux-x86-64.so.2" --library-path "$rt/lib" "$rt/bin/bench_sgemm" "$threads" 2>&1 |
        tee "$out/sgemm.txt" ;;
    unit)
      # The unit tests find the sources at the path they were built in.
      src=$(strings "$rt/bin/bitplan_tests_executor" | grep -m1 -o '^/.*/tests/unit/' | sed 's|/tests/unit/$||' || true)
      if [ -n "$src" ] && [ ! -e "$src" ]; then mkdir -p "$(dirname "$src")" && ln -s "$repo" "$src"; fi
      "$rt/lib/ld-linux-x86-64.so.2" --library-path "$rt/lib" "$rt/bin/bitplan_tests_executor" 2>&1 |
        tail -40 | tee "$out/unit_executor.txt" ;;
    *) echo "unknown stage $stage: use int8 agreement lowbit lowbit_dram sgemm unit"; exit 2 ;;
  esac
done
