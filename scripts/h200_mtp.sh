#!/usr/bin/env bash
# Issue 11's GPU part in one device call (docs/MTP.md, docs/PERFORMANCE.md "MTP speculative
# decoding, H200").
#   scripts/h200_mtp.sh bundle [BUILD_DIR]   (here) builds the GPU tests of the MTP and of what it
#       touched (cuda_mtp_test, cuda_rollback_test, cuda_step_test, cuda_attention_test,
#       cuda_backend_test), cuda_mtp_bench and ds4serve-model into BUILD_DIR/mtp-bundle (default
#       BUILD_DIR: build-mtpc), with the shared libraries the GPU machine lacks.
#   scripts/h200_mtp.sh run [BUNDLE_DIR]     (GPU machine, repository root) generates the demo model
#       and its MTP file, runs the tests (each with a timeout), then cuda_mtp_bench on the full-size
#       synthetic q2 model and MTP module generated in GPU memory (oracle table: batches x K x
#       acceptance rates, plain baseline, adaptive policy), and leaves summary.txt, mtp.csv and
#       logs.tar.gz in $OUT (default ./mtp-logs).
# Knobs: MTP_BATCHES [1,4,16,64], MTP_KS [1,2,3], MTP_RATES [0,0.5,0.8,1], MTP_PROMPT [16],
# MTP_TESTS [the four tests above], MTP_OUTPUT [16], MTP_TIME [240] s (table), TEST_TIMEOUT [150] s per test, BACKEND_TEST [1] (after the
# table; BACKEND_FILTER [*] a gtest filter).
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
read -ra TESTS <<<"${MTP_TESTS:-cuda_mtp_test cuda_rollback_test cuda_step_test cuda_attention_test}"

. scripts/lib/gpu_common.sh

bundle() {
  local build=${1:-build-mtpc}
  set -e
  bundle_binaries "$build" "$build/mtp-bundle" "${TESTS[@]}" cuda_backend_test cuda_mtp_bench ds4serve-model
  du -sh "$build/mtp-bundle"
}

run() {
  local b=${1:-build-mtpc/mtp-bundle}
  local out=${OUT:-$PWD/mtp-logs}
  mkdir -p "$out"
  export LD_LIBRARY_PATH="$b/lib:${LD_LIBRARY_PATH:-}"
  local work
  work=$(mktemp -d)
  mkdir -p "$work/models" "$work/tokenizer" "$work/logs"
  local summary="$out/summary.txt"
  { date -u; cat "$b/COMMIT" 2>/dev/null; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; } | tee "$summary"
  make_test_models "$b" "$work" tiny tiny-mtp
  cp "$work/synth.log" "$work/logs/" 2>/dev/null
  export DS4_BINARY_DIR="$work" DS4_SOURCE_DIR="$PWD"
  local t t0
  for t in "${TESTS[@]}"; do
    t0=$SECONDS
    timeout "${TEST_TIMEOUT:-150}" "$b/$t" --gtest_color=no >"$work/logs/$t.log" 2>&1
    gtest_line "$t" "$?" "$((SECONDS - t0))" "$work/logs/$t.log" | tee -a "$summary"
    grep -E '^\[ gpu \]|Failure|error' "$work/logs/$t.log" | head -12 | tee -a "$summary"
  done
  t0=$SECONDS
  timeout $((${MTP_TIME:-240} + 60)) "$b/cuda_mtp_bench" --synth full --quant q2 --seed 1 --mtp-seed 2 \
    --batches "${MTP_BATCHES:-1,4,16,64}" --ks "${MTP_KS:-1,2,3}" --rates "${MTP_RATES:-0,0.5,0.8,1}" \
    --prompt "${MTP_PROMPT:-16}" --output "${MTP_OUTPUT:-16}" --time-limit "${MTP_TIME:-240}" --adaptive "${MTP_ADAPTIVE:-1}" >"$work/logs/bench.log" 2>&1
  echo "cuda_mtp_bench rc=$? $((SECONDS - t0)) s" | tee -a "$summary"
  grep -v '^csv' "$work/logs/bench.log" | tail -5 | tee -a "$summary"
  grep '^csv' "$work/logs/bench.log" | cut -d, -f2- >"$out/mtp.csv"
  if [ "${BACKEND_TEST:-1}" = 1 ]; then
    t0=$SECONDS
    timeout "${TEST_TIMEOUT:-150}" "$b/cuda_backend_test" --gtest_color=no --gtest_filter="${BACKEND_FILTER:-*}" >"$work/logs/cuda_backend_test.log" 2>&1
    gtest_line cuda_backend_test "$?" "$((SECONDS - t0))" "$work/logs/cuda_backend_test.log" | tee -a "$summary"
  fi
  tar -czf "$out/logs.tar.gz" -C "$work" logs
  cat "$out/mtp.csv"
}

case "$mode" in
  bundle) shift; bundle "$@" ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 bundle [BUILD_DIR] | run [BUNDLE_DIR]" >&2; exit 2 ;;
esac
