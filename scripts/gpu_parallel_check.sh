#!/usr/bin/env bash
# Expert-parallel checks on GPUs (docs/PARALLEL.md) in one go.
#   scripts/gpu_parallel_check.sh bundle [BUILD_DIR]   (build machine) builds cuda_parallel_test,
#       cuda_parallel_dp_test, ds4serve and ds4serve-model and copies them into BUILD_DIR/parallel-bundle (default
#       BUILD_DIR: build-ep-cuda). libnccl.so.2 does not travel: the binaries load it at run time.
#   scripts/gpu_parallel_check.sh run [BUNDLE_DIR]     (GPU machine, repository root) generates the
#       demo model, runs cuda_parallel_test and cuda_parallel_dp_test (one GPU: kernels, slices,
#       ranks sharing a GPU, CUDA leader + follower, replicated and data-parallel attention; two or
#       more: NCCL), then serves the demo model with `ds4serve --gpus 0,1` with replicated and with
#       data-parallel attention (one GPU: `--gpus 0`, a group of one) and plainly, and compares a
#       greedy completion. Logs and a
#       summary go to $OUT (default ./parallel-logs). NCCL comes from the nvidia-nccl-cu13 wheel
#       (its lib folder is put on LD_LIBRARY_PATH); NCCL_NVLS_ENABLE=0 is set for every rank.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}

. scripts/lib/gpu_common.sh

bundle() {
  local build=${1:-build-ep-cuda}
  set -e
  bundle_binaries "$build" "$build/parallel-bundle" cuda_parallel_test cuda_parallel_dp_test ds4serve ds4serve-model
  du -sh "$build/parallel-bundle"
}

# Serves the demo model with the given extra arguments, sends one greedy request, prints the text.
serve_once() {  # serve_once LOG PORT ARGS...
  local log=$1 port=$2
  shift 2
  "$B/ds4serve" --model "$WORK/models/tiny-q2.gguf" --backend cuda --port "$port" --device-reserve 1 --kv-memory 2 "$@" >"$log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  curl -s "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
    -d '{"prompt": "The quick brown fox", "max_tokens": 24, "temperature": 0}' | python3 -c \
    'import json,sys; print(json.load(sys.stdin)["choices"][0]["text"])' 2>/dev/null || echo "(no completion)"
  kill -TERM "$pid" 2>/dev/null
  wait "$pid"
  echo "exit status $?" >>"$log"
}

run() {
  B=${1:-build-ep-cuda/parallel-bundle}
  local out=${OUT:-$PWD/parallel-logs}
  mkdir -p "$out"
  local nccl
  nccl=$(nccl_lib)
  export LD_LIBRARY_PATH="$B/lib:${nccl:+$nccl:}${LD_LIBRARY_PATH:-}" NCCL_NVLS_ENABLE=0
  local gpus
  gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
  { nvidia-smi; echo "NCCL lib: ${nccl:-not found}"; } >"$out/device.txt" 2>&1
  echo "GPUs: $gpus, NCCL lib: ${nccl:-not found}" | tee "$out/summary.txt"
  WORK=$(mktemp -d)
  make_test_models "$B" "$WORK" tiny
  cp "$WORK/synth.log" "$out/" 2>/dev/null
  local t0 test
  for test in cuda_parallel_test cuda_parallel_dp_test; do
    t0=$SECONDS
    DS4_BINARY_DIR="$WORK" DS4_SOURCE_DIR="$PWD" timeout 500 "$B/$test" --gtest_color=no >"$out/$test.log" 2>&1
    gtest_line "$test" "$?" "$((SECONDS - t0))" "$out/$test.log" | tee -a "$out/summary.txt"
    grep -E '^\[ gpu \]' "$out/$test.log" | head -40 | tee -a "$out/summary.txt"
  done
  # With one GPU the rank path still runs: `--gpus 0` is a group of one (launcher, NCCL, step
  # messages to nobody) and must serve what the plain server serves.
  local group="0,1" label="2 GPUs"
  [ "$gpus" -lt 2 ] && group="0" label="--gpus 0 (a group of one)"
  local one two mode port=18102
  one=$(serve_once "$out/serve_1gpu.log" 18101)
  echo "1 GPU : $one" | tee -a "$out/summary.txt"
  for mode in replicated dp; do
    two=$(serve_once "$out/serve_group_$mode.log" "$port" --gpus "$group" --attention "$mode")
    port=$((port + 1))
    echo "$label, --attention $mode: $two" | tee -a "$out/summary.txt"
    [ "$one" = "$two" ] && echo "greedy completion identical" | tee -a "$out/summary.txt" ||
      echo "greedy completion DIFFERS" | tee -a "$out/summary.txt"
    tail -3 "$out/serve_group_$mode.log" | tee -a "$out/summary.txt"
  done
}

case "$mode" in
  bundle) shift; bundle "$@" ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 bundle [BUILD_DIR] | run [BUNDLE_DIR]" >&2; exit 2 ;;
esac
