#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run and the README call this script):
#   release  the release build (preset release, build/) and every ctest test;
#   fuzz     the fuzz preset (build-fuzz/, clang-14, AddressSanitizer + UndefinedBehavior-
#            Sanitizer + coverage instrumentation): the unit, e2e and conformance labels under
#            the sanitizers with leak detection, every seed corpus replayed, then each libFuzzer
#            harness of tests/fuzz for BITPLAN_FUZZ_SECONDS seconds (default 10; one harness
#            per core at a time); a crash, leak, timeout or out-of-memory fails the run and
#            leaves the input in build-fuzz/crashes/. One sanitized build serves both, which
#            keeps CI in budget.
#   asan     (not run by default) the same labels under the asan-ubsan preset (build-asan/,
#            GCC 12), for a sanitizer run without clang.
# Usage: tools/test.sh [release] [fuzz] [asan]   (no argument: release, then fuzz)
# Needs no compiler cache; set CMAKE_CXX_COMPILER_LAUNCHER=ccache in the environment to use one.
set -euo pipefail
cd "$(dirname "$0")/.."

stages=("$@")
if [ ${#stages[@]} -eq 0 ]; then stages=(release fuzz); fi
jobs="$(nproc)"
# Libraries and test binaries are built as unity builds (8 sources per compiler run; test files
# keep their names apart, see tests/CMakeLists.txt): a clean build on CI's 2 cores takes about
# half as long. Developer builds of the presets stay one object per source, so an edit
# recompiles one file.
unity=(-DCMAKE_UNITY_BUILD=ON -DCMAKE_UNITY_BUILD_BATCH_SIZE=8)
fuzz_seconds="${BITPLAN_FUZZ_SECONDS:-10}"

tools/install_deps.sh

run_release() {
  cmake --preset release "${unity[@]}"
  # The interop test's venv (pip install of onnxruntime: network-bound, about 2 min) is made
  # while the build compiles (CPU-bound); the test finds it in place. A failure here is not
  # fatal: the test retries and skips with the reason.
  python3 tests/interop/ort_interop.py --prepare-venv build/interop-venv >build/interop-venv.log 2>&1 &
  local venv_pid=$!
  cmake --build --preset release -j"$jobs"
  wait "$venv_pid" || echo "test.sh: interop venv not prepared (build/interop-venv.log); the test will say why"
  ctest --preset release -j"$jobs"  # the tests are independent (own temp folders)
}

run_asan() {
  cmake --preset asan-ubsan
  cmake --build build-asan -j"$jobs" --target bitplan_check_targets
  ctest --preset asan-ubsan -j"$jobs"
}

run_fuzz() {
  cmake --preset fuzz "${unity[@]}"
  cmake --build --preset fuzz -j"$jobs"  # the test binaries and the harnesses
  # unit, e2e, conformance under the sanitizers; every seed input replayed
  ctest --preset fuzz -j"$jobs"
  mkdir -p build-fuzz/crashes
  # One harness per core at a time (each is single-threaded); the results are read back in
  # harness order once all have finished.
  local harness name names=() failed=()
  for harness in build-fuzz/tests/fuzz/fuzz_*; do
    [ -f "$harness" ] && [ -x "$harness" ] || continue
    name="${harness##*/fuzz_}"
    names+=("$name")
    rm -f "build-fuzz/fuzz_$name.status"
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    echo "fuzz: $name for ${fuzz_seconds} s"
    fuzz_one "$harness" "$name" &
  done
  wait
  for name in "${names[@]}"; do
    if [ "$(cat "build-fuzz/fuzz_$name.status" 2>/dev/null)" = 0 ]; then
      grep -E "^stat::number_of_executed_units" "build-fuzz/fuzz_$name.log" | sed "s/^/$name: /" || true
    else
      tail -n 40 "build-fuzz/fuzz_$name.log"
      echo "fuzz: $name failed; the input is in build-fuzz/crashes/ (replay: build-fuzz/tests/fuzz/fuzz_$name FILE)"
      failed+=("$name")
    fi
  done
  if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashes in ${failed[*]} (tests/fuzz/FINDINGS.md lists the known ones)"
    return 1
  fi
}

# Runs one harness for fuzz_seconds; its exit status goes to build-fuzz/fuzz_<name>.status.
fuzz_one() {
  local harness="$1" name="$2" status=0
  # New inputs go to the first (build) folder; the committed seeds stay untouched.
  mkdir -p "build-fuzz/corpus/$name"
  UBSAN_OPTIONS=print_stacktrace=1 "$harness" -max_total_time="$fuzz_seconds" -timeout=25 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="build-fuzz/crashes/$name-" \
      "build-fuzz/corpus/$name" "tests/fuzz/corpus/$name" 2>"build-fuzz/fuzz_$name.log" || status=$?
  echo "$status" >"build-fuzz/fuzz_$name.status"
}

for stage in "${stages[@]}"; do
  case "$stage" in
    release) run_release ;;
    asan) run_asan ;;
    fuzz) run_fuzz ;;
    *) echo "tools/test.sh: unknown stage '$stage': stages are release, asan, fuzz" >&2; exit 2 ;;
  esac
done
echo "tools/test.sh: ${stages[*]} passed"
