#!/usr/bin/env bash
# Builds the CUDA profiler standalone on a GPU machine, runs its GPU test, then profiles and
# runs chains. Everything it writes goes to $OUT (default ./gpu-out). Stages, in order, any
# subset: build test profile chains models sweep (models: whole models, layers and other ops,
# from $MODEL_WORKLOADS at $MODEL_PRECISIONS into $OUT/${PROFILE}_models.json; sweep: issue 15's W4A16 decode-kernel sweep,
# $OUT/w4a16_sweep.txt; it needs only the build stage). Inputs (prepared on the workstation, see
# docs/cuda_backend.md): .carry/include (nlohmann/json.hpp, CLI/ of CLI11, doctest/doctest.h),
# .carry/workloads/*.json, .carry/plans.json, and an optional earlier profile
# .carry/$PROFILE.yaml to merge into. cuDNN: CUDNN_ROOT when set, else PyTorch's nvidia.cudnn
# package when python3 has it; BITPLAN_CUDNN=ON|OFF overrides AUTO.
#   backends/cuda/standalone/run_on_gpu.sh build test profile chains
#   backends/cuda/standalone/run_on_gpu.sh build sweep test    (issue 15: sweep before the test,
#   so a failing decode variant still leaves the sweep's numbers)
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}
BUILD=${BUILD:-$PWD/build-cuda-standalone}
PROFILE_SECONDS=${PROFILE_SECONDS:-420}
# PROFILE: the profile's name (a profile holds one device): .carry/$PROFILE.yaml is merged
# into, $OUT/$PROFILE.yaml and $OUT/${PROFILE}_models.json are written.
PROFILE=${PROFILE:-h100}
# PROFILE_ARGS: extra bitplan-cuda-profile options, e.g. "--precisions w4a16".
# WORKLOADS: the workloads files to profile (default: every .carry/workloads file, batch 1 first).
WORKLOADS=${WORKLOADS:-$(ls .carry/workloads/*_b1.json .carry/workloads/*_b16.json .carry/workloads/*_b256.json 2>/dev/null)}
MODEL_WORKLOADS=${MODEL_WORKLOADS:-$WORKLOADS}
# nvidia.cudnn (wheel nvidia-cudnn-cu13) has no __init__.py, so no __file__: __path__ names it.
CUDNN_ROOT=${CUDNN_ROOT:-$(python3 -c 'import nvidia.cudnn; print(list(nvidia.cudnn.__path__)[0])' 2>/dev/null)}
mkdir -p "$OUT"
for stage in "$@"; do
  case $stage in
    build)
      nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/env.txt"
      { nvcc --version | tail -2; cmake --version | head -1; } | tee -a "$OUT/env.txt"
      echo "CUDNN_ROOT=$CUDNN_ROOT" | tee -a "$OUT/env.txt"
      cmake -S backends/cuda/standalone -B "$BUILD" -G Ninja \
        -DBITPLAN_EXTRA_INCLUDE="$PWD/.carry/include" -DBITPLAN_CUDNN="${BITPLAN_CUDNN:-AUTO}" \
        -DCUDNN_ROOT="$CUDNN_ROOT" > "$OUT/build.log" 2>&1 &&
        cmake --build "$BUILD" -j16 >> "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
      grep -i warning "$OUT/build.log" | head -20
      grep "bitplan: cuDNN" "$OUT/build.log"
      echo "build ok" ;;
    test)
      # A failure (or a skip: no usable GPU) stops the run before anything is profiled.
      "$BUILD/bitplan_tests_gpu_profiler" 2>&1 | tee "$OUT/test.log" | tail -25
      [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "gpu test failed"; exit 1; } ;;
    profile)
      [ -f ".carry/$PROFILE.yaml" ] && cp ".carry/$PROFILE.yaml" "$OUT/$PROFILE.yaml"
      # Small batches first, so a cut-off run still holds the most used entries; the profile
      # is saved every 50 measurements and a rerun only adds what is missing.
      timeout "$PROFILE_SECONDS" "$BUILD/bitplan-cuda-profile" ${PROFILE_ARGS:-} --out "$OUT/$PROFILE.yaml" \
        --workloads $WORKLOADS > "$OUT/profile.log" 2>&1
      echo "profile rc=$? entries=$(grep -c '"precision":' "$OUT/$PROFILE.yaml")"
      grep -E "ceiling|error|bitplan-cuda-profile:" "$OUT/profile.log" | head -30 ;;
    chains)
      "$BUILD/bitplan-cuda-profile" --chain .carry/plans.json --chain-out "$OUT/h100_chains.json" \
        > "$OUT/chains.log" 2>&1
      echo "chains rc=$?"; tail -70 "$OUT/chains.log" ;;
    models)
      # Each file's layers and other ops in order, once per precision; results are saved after
      # every model, so a run cut off by the timeout keeps what it measured.
      timeout "${MODELS_SECONDS:-300}" "$BUILD/bitplan-cuda-profile" --model-chain $MODEL_WORKLOADS \
        --precisions "${MODEL_PRECISIONS:-fp32,fp16,int8,fp8_e4m3}" \
        --chain-out "$OUT/${PROFILE}_models.json" > "$OUT/models.log" 2>&1
      echo "models rc=$?"; grep -E '^chain|error|bitplan-cuda-profile:' "$OUT/models.log" | tail -60 ;;
    sweep)
      # About a minute on an H100. A variant that faults (the sweep exits 3 naming it) or hangs
      # (the timeout; stderr's last "running NAME" names it) is skipped in a fresh process;
      # each attempt's output is kept.
      skip=${BITPLAN_W4A16_SWEEP_SKIP:-}
      for attempt in 1 2 3; do
        BITPLAN_W4A16_SWEEP_SKIP=$skip timeout "${SWEEP_SECONDS:-170}" "$BUILD/bitplan-cuda-w4a16-sweep" \
          > "$OUT/w4a16_sweep.txt" 2> "$OUT/w4a16_sweep.log"
        rc=$?
        echo "sweep attempt $attempt rc=$rc"
        [ "$rc" -eq 3 ] || [ "$rc" -eq 124 ] || break
        cp "$OUT/w4a16_sweep.txt" "$OUT/w4a16_sweep_attempt$attempt.txt"
        cp "$OUT/w4a16_sweep.log" "$OUT/w4a16_sweep_attempt$attempt.log"
        culprit=$(grep '^running ' "$OUT/w4a16_sweep.log" | tail -1 | cut -d' ' -f2)
        skip="${skip:+$skip,}$culprit"
        echo "skipping $culprit"
      done
      tail -n 12 "$OUT/w4a16_sweep.txt"; tail -n 3 "$OUT/w4a16_sweep.log" ;;
    *) echo "unknown stage $stage: use build test profile chains models sweep"; exit 2 ;;
  esac
done
