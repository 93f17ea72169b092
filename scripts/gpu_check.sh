#!/usr/bin/env bash
# GPU checks of the CUDA backend in one go (docs/GPU-CHECKS.md).
#   scripts/gpu_check.sh bundle [BUILD_DIR]   (on the build machine) builds every GPU test
#       (tests/cuda/*_test.cpp), the micro-benchmark and ds4serve-model, and copies them into
#       BUILD_DIR/gpu-bundle (default BUILD_DIR: build-cuda); that folder is what travels to the GPU
#       machine (NCCL does not: the wheel's libnccl.so.2 is found there at run time).
#   scripts/gpu_check.sh run [BUNDLE_DIR | BUNDLE.tar.xz]   (on the GPU machine, repository root)
#       generates the demo model, runs every GPU test and the micro-benchmarks, and writes the logs
#       and a summary to $OUT (default ./gpu-logs). Set SANITIZE=1 to also run compute-sanitizer
#       memcheck over the kernel tests, FULL=1 to also run cuda_model_bench on the full-size
#       synthetic q2 model generated in GPU memory (86.7 GB; needs an H200-class GPU) and on the
#       small model loaded from /dev/shm (the file path with a progress bar).
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
# Every GPU test of the tree (GPU_TESTS="a_test b_test" picks some).
read -ra TESTS <<<"${GPU_TESTS:-$(ls tests/cuda/*_test.cpp | xargs -n1 basename | sed 's/\.cpp$//' | tr '\n' ' ')}"

. scripts/lib/gpu_common.sh

bundle() {
  local build=${1:-build-cuda}
  local out=$build/gpu-bundle
  set -e
  bundle_binaries "$build" "$out" "${TESTS[@]}" cuda_bench cuda_model_bench ds4serve-model
  # Every test together is larger than a device call carries (64 MiB): stripped and xz-packed,
  # it is ~7 MB (`run BUILD_DIR/gpu-bundle.tar.xz` unpacks it there).
  strip "$out"/cuda_* "$out/ds4serve-model"
  tar -cJf "$build/gpu-bundle.tar.xz" -C "$build" gpu-bundle
  du -sh "$out" "$build/gpu-bundle.tar.xz"
}

run() {
  local b
  b=$(unpack_bundle "${1:-build-cuda/gpu-bundle}") || { echo "cannot unpack ${1:-}"; return 1; }
  local out=${OUT:-$PWD/gpu-logs}
  mkdir -p "$out"
  local nccl
  nccl=$(nccl_lib)
  export LD_LIBRARY_PATH="$b/lib:${nccl:+$nccl:}${LD_LIBRARY_PATH:-}" NCCL_NVLS_ENABLE=0
  local work
  work=$(mktemp -d)
  { cat "$b/COMMIT" 2>/dev/null; nvidia-smi; nvcc --version 2>/dev/null | tail -2; echo "NCCL lib: ${nccl:-not found}"; } >"$out/device.txt" 2>&1
  head -15 "$out/device.txt"
  local t0=$SECONDS
  make_test_models "$b" "$work"
  cp "$work/synth.log" "$out/" 2>/dev/null
  echo "test models generated in $((SECONDS - t0)) s"
  export DS4_BINARY_DIR="$work" DS4_SOURCE_DIR="$PWD"
  local summary="$out/summary.txt"
  : >"$summary"
  mkdir -p "$work/logs"
  for t in "${TESTS[@]}"; do
    [ -x "$b/$t" ] || { echo "$t: not in the bundle" | tee -a "$summary"; continue; }
    t0=$SECONDS
    timeout "${TEST_TIMEOUT:-400}" "$b/$t" --gtest_color=no >"$work/logs/$t.log" 2>&1
    gtest_line "$t" "$?" "$((SECONDS - t0))" "$work/logs/$t.log" | tee -a "$summary"
    grep -E '^\[ gpu \]|Failure|FAILED  \]|error' "$work/logs/$t.log" | head -40 | tee -a "$summary"
  done
  tar -czf "$out/test-logs.tar.gz" -C "$work" logs
  [ "${BENCH:-1}" = 1 ] || { rm -rf "$work"; return; }
  t0=$SECONDS
  timeout 300 "$b/cuda_bench" >"$out/cuda_bench.log" 2>&1
  echo "cuda_bench rc=$? $((SECONDS - t0))s" | tee -a "$summary"
  if [ "${SANITIZE:-0}" = 1 ] && command -v compute-sanitizer >/dev/null; then
    for t in cuda_ops_test cuda_attention_test cuda_matmul_test; do
      local filter='*'
      [ "$t" = cuda_matmul_test ] && filter='*Dequant*:*Grouped*'  # the full shape sweep is slow under memcheck
      timeout 300 compute-sanitizer --tool memcheck --error-exitcode 9 "$b/$t" --gtest_color=no --gtest_filter="$filter" \
        >"$out/sanitize_$t.log" 2>&1
      echo "memcheck $t rc=$? $(grep -c 'Invalid' "$out/sanitize_$t.log") invalid accesses" | tee -a "$summary"
    done
  fi
  echo "---- cuda_bench ----"
  cat "$out/cuda_bench.log"
  if [ "${FULL:-0}" = 1 ]; then
    # A real GGUF read from /dev/shm with the upload progress bar, then the full-size model made on the GPU.
    cp "$work/models/small-q2.gguf" /dev/shm/ds4-small-q2.gguf && t0=$SECONDS
    timeout 120 "$b/cuda_model_bench" --model /dev/shm/ds4-small-q2.gguf --batches 1,8 --steps 4 \
      >"$out/model_bench_small_shm.log" 2>&1
    echo "cuda_model_bench small from /dev/shm rc=$? $((SECONDS - t0))s" | tee -a "$summary"
    rm -f /dev/shm/ds4-small-q2.gguf
    t0=$SECONDS
    timeout "${FULL_TIMEOUT:-420}" "$b/cuda_model_bench" --synth full --quant q2 --seed 1 \
      --batches "${FULL_BATCHES:-1,2,4,8,16,32,64}" --prompt 32 --steps 8 --context "${FULL_CONTEXT:-4096}" \
      --time-limit "${FULL_TIME_LIMIT:-240}" >"$out/model_bench_full.log" 2>&1
    echo "cuda_model_bench full q2 rc=$? $((SECONDS - t0))s" | tee -a "$summary"
    echo "---- cuda_model_bench ----"
    cat "$out/model_bench_small_shm.log" "$out/model_bench_full.log"
  fi
  rm -rf "$work"
}

case "$mode" in
  bundle) shift; bundle "$@" ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 bundle [BUILD_DIR] | run [BUNDLE_DIR]" >&2; exit 2 ;;
esac
