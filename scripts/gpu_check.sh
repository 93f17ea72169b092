#!/usr/bin/env bash
# GPU checks of the CUDA backend in one go (docs/GPU-CHECKS.md).
#   scripts/gpu_check.sh bundle [BUILD_DIR]   (on the build machine) builds every GPU test, the
#       micro-benchmark and ds4serve-model, and copies them into BUILD_DIR/gpu-bundle (default
#       BUILD_DIR: build-cuda); that folder is what travels to the GPU machine.
#   scripts/gpu_check.sh run [BUNDLE_DIR]     (on the GPU machine, from the repository root)
#       generates the demo model, runs every GPU test and the micro-benchmarks, and writes the logs
#       and a summary to $OUT (default ./gpu-logs). Set SANITIZE=1 to also run compute-sanitizer
#       memcheck over the kernel tests.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}

bundle() {
  local build=${1:-build-cuda}
  set -e
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  local tests=(cuda_matmul_test cuda_ops_test cuda_attention_test cuda_backend_test)
  cmake --build "$build" -j2 --target "${tests[@]}" cuda_bench ds4serve-model
  local out="$build/gpu-bundle"
  rm -rf "$out" && mkdir -p "$out/lib"
  for t in "${tests[@]}" cuda_bench; do cp "$build/tests/cuda/$t" "$out/"; done
  cp "$build/tools/ds4serve-model" "$out/"
  # ds4serve-model links simdjson dynamically; the GPU machine has no simdjson package.
  ldd "$build/tools/ds4serve-model" | awk '/libsimdjson/ {print $3}' | xargs -r -I{} cp -L {} "$out/lib/"
  du -sh "$out"
}

run() {
  local b=${1:-build-cuda/gpu-bundle}
  local out=${OUT:-$PWD/gpu-logs}
  mkdir -p "$out"
  export LD_LIBRARY_PATH="$b/lib:${LD_LIBRARY_PATH:-}"
  local work
  work=$(mktemp -d)
  { nvidia-smi; nvcc --version 2>/dev/null | tail -2; } >"$out/device.txt" 2>&1
  head -15 "$out/device.txt"
  # The demo model, exactly as the build makes it (data/CMakeLists.txt).
  mkdir -p "$work/models" "$work/tokenizer"
  tar -xJf data/tokenizer/deepseek_v4_tokenizer.tar.xz -C "$work/tokenizer"
  local t0=$SECONDS
  "$b/ds4serve-model" synth --preset tiny --quant q2 --seed 1 --tokenizer "$work/tokenizer" \
    -o "$work/models/tiny-q2.gguf" >"$out/synth.log" 2>&1 || { echo "demo model generation failed"; cat "$out/synth.log"; }
  echo "demo model generated in $((SECONDS - t0)) s"
  # A larger synthetic model (real head and row widths) for the end-to-end test.
  t0=$SECONDS
  "$b/ds4serve-model" synth --preset small --quant q2 --seed 1 --tokenizer "$work/tokenizer" \
    -o "$work/models/small-q2.gguf" >>"$out/synth.log" 2>&1 || echo "small model generation failed"
  echo "small model generated in $((SECONDS - t0)) s"
  export DS4_BINARY_DIR="$work" DS4_SOURCE_DIR="$PWD"
  local summary="$out/summary.txt"
  : >"$summary"
  for t in cuda_matmul_test cuda_ops_test cuda_attention_test cuda_backend_test; do
    t0=$SECONDS
    timeout 400 "$b/$t" --gtest_color=no >"$out/$t.log" 2>&1
    local rc=$?
    printf '%-22s rc=%-3s %4ss  %s\n' "$t" "$rc" "$((SECONDS - t0))" \
      "$(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$out/$t.log" | head -3 | tr '\n' ' ')" | tee -a "$summary"
    grep -E '^\[ gpu \]|Failure|FAILED  \]|error' "$out/$t.log" | head -40 | tee -a "$summary"
  done
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
  rm -rf "$work"
}

case "$mode" in
  bundle) shift; bundle "$@" ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 bundle [BUILD_DIR] | run [BUNDLE_DIR]" >&2; exit 2 ;;
esac
