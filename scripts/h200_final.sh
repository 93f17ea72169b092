#!/usr/bin/env bash
# One device call for a session's closing numbers (docs/GPU-CHECKS.md, "Full-size speed"):
#   1. proves the fast step modes of CudaBackend end to end on the demo and `small` models:
#      cuda_attention_test, cuda_step_test (plain == fused == graphs), then cuda_backend_test (every
#      case against the CPU backend) with DS4_CUDA_STEP=graphs, or =fused when graphs fails;
#   2. picks the fastest mode that passed (graphs > fused > plain) and times the full-size model in
#      plain mode at batches 1, 8, 64 (4K context) for the comparison;
#   3. runs scripts/h200_bench.sh with DS4_CUDA_STEP set to the chosen mode (serve/rollback tests,
#      the decode sweep, prefill, TTFT and the ds4serve-load levels).
# usage, on the GPU machine from the repository root:
#   scripts/h200_final.sh BUNDLE      BUNDLE holds h200_bench.sh's binaries plus cuda_step_test,
#                                     cuda_backend_test and cuda_attention_test (and lib/)
# Knobs: the environment of h200_bench.sh; STEP_TEST_TIME [110] s per backend-test run.
set -uo pipefail
cd "$(dirname "$0")/.."
B=${1:?usage: $0 BUNDLE}
OUT_DIR=${OUT:-$PWD/h200-logs}
mkdir -p "$OUT_DIR"
S="$OUT_DIR/step-modes.txt"
: >"$S"
export LD_LIBRARY_PATH="$B/lib:${LD_LIBRARY_PATH:-}"
. scripts/lib/gpu_common.sh
W=$(mktemp -d)
mkdir -p "$W/logs"
make_test_models "$B" "$W" tiny small >>"$S"
export DS4_BINARY_DIR="$W" DS4_SOURCE_DIR="$PWD"

# step_test BINARY MODE CAP: one test binary with DS4_CUDA_STEP=MODE (empty: none); its rc.
step_test() {
  local bin=$1 mode=$2 cap=$3 t0=$SECONDS rc
  DS4_CUDA_STEP=$mode timeout "$cap" "$B/$bin" --gtest_color=no >"$W/t.log" 2>&1
  rc=$?
  { echo "==== $bin (${mode:-default})"; cat "$W/t.log"; } >>"$W/logs/step-tests.log"
  echo "$bin (${mode:-default}) rc=$rc $((SECONDS - t0)) s $(grep -E '^\[  (PASSED|FAILED) ' "$W/t.log" | tr '\n' ' ')" >>"$S"
  grep -E '^\[ gpu \]|Failure|cudaError' "$W/t.log" | head -12 >>"$S"
  return $rc
}

cap=${STEP_TEST_TIME:-110}
mode=plain
step_test cuda_attention_test "" 60
if step_test cuda_step_test "" 90; then
  if step_test cuda_backend_test graphs "$cap"; then
    mode=graphs
  elif step_test cuda_backend_test fused "$cap"; then
    mode=fused
  fi
fi
echo "chosen step mode: $mode" >>"$S"

# The plain path at 4K context for the comparison (short: the full sweep below uses $mode).
if [ "$mode" != plain ]; then
  mkdir -p "$W/plain"
  DS4_CUDA_STEP=plain timeout 150 "$B/cuda_model_bench" --synth full --quant q2 --seed 1 --sweep \
    --batches 1,8,64 --contexts 4096 --steps 5 --point-time 10 --time-limit 60 --prefill-depths 0 \
    --prefill-chunk 2048 --prefill-reps 1 --out-dir "$W/plain" >"$W/logs/plain-bench.log" 2>&1
  echo "plain-mode bench rc=$?" >>"$S"
  cat "$W/plain/decode.csv" "$W/plain/prefill.csv" >>"$S" 2>/dev/null
fi
# (The device tool brings back at most 8 files: the logs travel in one archive.)
cp "$W/synth.log" "$W/logs/" 2>/dev/null
tar -czf "$OUT_DIR/step-logs.tar.gz" -C "$W" logs
rm -rf "$W"
cat "$S"

export DS4_CUDA_STEP=$mode
bash scripts/h200_bench.sh run "$B"
