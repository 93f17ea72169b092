#!/usr/bin/env bash
# GPU check of the CUDA step's fast paths (fused ops, CUDA graphs) in one device call.
#   scripts/gpu_step_check.sh bundle [BUILD_DIR]   (build machine) builds the kernel / step tests,
#       cuda_step_bench and ds4serve-model into BUILD_DIR/step-bundle (default build-cuda-ops).
#   scripts/gpu_step_check.sh run [BUNDLE_DIR]     (GPU machine, repository root) generates the
#       demo and small models, runs the tests (logs into $OUT/tests.log, summary printed), then
#       cuda_step_bench (STEP_BENCH_ARGS, default: full-size model, batches 1,8,64) into $OUT/bench.log.
#       SANITIZE=1 also runs cuda_backend_test's first case under compute-sanitizer memcheck in each
#       step mode ($OUT/memcheck_MODE.log).
set -uo pipefail
cd "$(dirname "$0")/.."
tests=(cuda_fused_test cuda_step_test cuda_ops_test cuda_attention_test cuda_backend_test cuda_kv_test)

. scripts/lib/gpu_common.sh

bundle() {
  local build=${1:-build-cuda-ops}
  set -e
  bundle_binaries "$build" "$build/step-bundle" "${tests[@]}" cuda_step_bench ds4serve-model
  du -sh "$build/step-bundle"
}

run() {
  local b=${1:-build-cuda-ops/step-bundle} out=${OUT:-$PWD/gpu-logs} work
  mkdir -p "$out"
  export LD_LIBRARY_PATH="$b/lib:${LD_LIBRARY_PATH:-}"
  work=$(mktemp -d)
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  make_test_models "$b" "$work" tiny small
  export DS4_BINARY_DIR="$work" DS4_SOURCE_DIR="$PWD"
  : >"$out/tests.log"
  # The backend test once more with the op-by-op path (DS4_CUDA_STEP=plain) first, then the default.
  for t in cuda_backend_test:plain "${tests[@]}"; do
    local mode=${t#*:} t0=$SECONDS
    [ "$mode" = "$t" ] && mode=
    t=${t%%:*}
    DS4_CUDA_STEP=$mode timeout "${TEST_TIMEOUT:-240}" "$b/$t" --gtest_color=no >"$work/$t.log" 2>&1
    local rc=$?
    cat "$work/$t.log" >>"$out/tests.log"
    printf '%-26s rc=%-3s %4ss %s\n' "$t${mode:+ ($mode)}" "$rc" "$((SECONDS - t0))" "$(grep -E '^\[  (PASSED|FAILED) ' "$work/$t.log" | tr '\n' ' ')"
    grep -E '^\[ gpu \]|Failure|FAILED  \]|error|Expected|Which is|actual' "$work/$t.log" | head -30
  done
  if [ "${SANITIZE:-0}" = 1 ] && command -v compute-sanitizer >/dev/null; then
    # Where the whole-model abort comes from: memcheck over the first teacher-forcing test per mode.
    for mode in plain fused graphs; do
      DS4_CUDA_STEP=$mode timeout "${TEST_TIMEOUT:-240}" compute-sanitizer --tool memcheck --print-limit 5 \
        "$b/cuda_backend_test" --gtest_filter='*WithoutKv*' --gtest_color=no >"$out/memcheck_$mode.log" 2>&1
      echo "memcheck cuda_backend_test ($mode) rc=$?"
      grep -E 'Invalid|at 0x|by thread|in [a-z_]+kernel|ERROR SUMMARY' "$out/memcheck_$mode.log" | head -12
    done
  fi
  timeout "${BENCH_TIMEOUT:-200}" "$b/cuda_step_bench" ${STEP_BENCH_ARGS:---batches 1,8,64 --steps 8} >"$out/bench.log" 2>&1
  echo "cuda_step_bench rc=$?"
  cat "$out/bench.log"
  rm -rf "$work"
}

case "${1:-}" in
  bundle) shift; bundle "$@" ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 bundle [BUILD_DIR] | run [BUNDLE_DIR]" >&2; exit 2 ;;
esac
