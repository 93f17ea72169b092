#!/usr/bin/env bash
# Issue-10 measurements on one H200 in one device call (docs/GPU-CHECKS.md, "Full-size speed").
#   scripts/h200_bench.sh bundle [BUILD_DIR]   (here) builds cuda_model_bench, cuda_serve_test,
#       ds4serve and ds4serve-bench (CUDA build), ds4serve-load and ds4serve-model into
#       BUILD_DIR/h200-bundle (default BUILD_DIR: build-cuda-serve), with the shared libraries the GPU
#       machine lacks.
#   scripts/h200_bench.sh run [BUNDLE_DIR]     (GPU machine, repository root) in order:
#       1. cuda_serve_test (the server's CUDA engine equals the CPU engine) and cuda_rollback_test
#          (speculative rollback on the GPU is exact); TESTS=0 skips them;
#       2. cuda_model_bench --sweep on the full-size synthetic q2 model generated in GPU memory:
#          decode step time per (context, batch), weight bytes from the actual expert union, the
#          copy bandwidth of the same run, prefill chunks by depth (decode.csv, prefill.csv);
#       3. ds4serve --backend cuda --synth full, then ds4serve-load: time to first token of a
#          2K-token prompt on the idle server (ttft.csv), then closed-loop levels of concurrent
#          users (load.csv);
#       4. the same closed loop on the engine alone, after the server stopped: ds4serve-bench --users
#          on ds4serve's CUDA engine with the same levels, level time, output length and scheduler
#          limits, prompts of as many tokens as the server counted for the HTTP prompts (the chat
#          template adds 4 to LOAD_INPUT words; taken from ds4serve-load's warm-up usage), random ids
#          (engine_load.csv, same format as load.csv; both JSONs in the tarball), then the
#          HTTP/engine table;
#       and leaves in $OUT (default ./h200-logs): summary.txt, decode.csv, prefill.csv, ttft.csv,
#       load.csv, engine_load.csv and h200-bench.tar.gz (every log and file; 7 files, the device
#       tool brings back 8 at most). Each phase has a time cap (below), so the call ends in time
#       whatever the kernels' speed; unfinished points are marked skipped, unfinished levels missing.
#   scripts/h200_bench.sh plot DIR [PNG]       (here) draws DIR's decode.csv, load.csv and
#       engine_load.csv (tokens/s by batch size / concurrency) into PNG (default
#       DIR/h200-throughput.png) with gnuplot and prints the Markdown tables for docs/PERFORMANCE.md.
# Knobs (environment, defaults in brackets): BENCH_BATCHES [1,2,4,8,16,32,64,128,256],
# BENCH_CONTEXTS [4096,16384], BENCH_STEPS [5], BENCH_POINT_TIME [15] s, BENCH_TIME_LIMIT [200] s,
# PREFILL_DEPTHS [0,16384], PREFILL_REPS [2], PREFILL_CHUNK [2048], TTFT_INPUT [2044] words, LOAD_CONCURRENCY [1,2,4,8,16,32,64,128,256],
# LOAD_INPUT [64] LOAD_OUTPUT [64] tokens, LOAD_LEVEL_S [20], LOAD_REQ_TIMEOUT [120] s,
# LOAD_TIME [300] s (whole load phase), TTFT_REQUESTS [3], TTFT_TIME [90] s, TESTS [1], SWEEP [1]
# (0: no cuda_model_bench), ENGINE_LOAD [1] (0: no engine-only closed loop), ENGINE_LOAD_TIME
# [LOAD_TIME] s (its cap, model generation included).
# With the kernels of commit 5664843 the defaults took about 7.5 minutes (bench ~1.5, load 5); the
# engine-only loop adds about as much as the load phase, so within one 10-minute device call run
# the HTTP/engine comparison alone, e.g. TESTS=0 SWEEP=0 TTFT_REQUESTS=1 LOAD_CONCURRENCY=1,64,256
# LOAD_LEVEL_S=30 (about 6 minutes: two model generations of ~15 s, 2 x 3 levels of 30 s + drain).
# At commit 5d48c07 everything (tests, sweep, prefill, TTFT, both loops) took 250 s with
# BENCH_TIME_LIMIT=130 BENCH_STEPS=3 BENCH_POINT_TIME=3 LOAD_CONCURRENCY=1,16,64,256 LOAD_LEVEL_S=20.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}

. scripts/lib/gpu_common.sh

bundle() {
  local build=${1:-build-cuda-serve}
  set -e
  bundle_binaries "$build" "$build/h200-bundle" cuda_model_bench cuda_serve_test cuda_rollback_test ds4serve \
    ds4serve-bench ds4serve-load ds4serve-model
  du -sh "$build/h200-bundle"
}

log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT_DIR/summary.txt"; }

# Waits until GET /health answers 200 (bash's /dev/tcp: no curl needed); false after $2 s.
wait_healthy() {
  local port=$1 limit=$2 t0=$SECONDS
  while [ $((SECONDS - t0)) -lt "$limit" ]; do
    if exec 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
      printf 'GET /health HTTP/1.0\r\nHost: x\r\n\r\n' >&3
      local status
      status=$(head -1 <&3 | awk '{print $2}')
      exec 3<&- 3>&-
      [ "$status" = 200 ] && return 0
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    sleep 2
  done
  return 1
}

run_tests() {
  [ "${TESTS:-1}" = 1 ] || return 0
  local t t0
  for t in cuda_serve_test cuda_rollback_test; do
    t0=$SECONDS
    timeout 120 "$B/$t" --gtest_color=no >"$WORK/logs/$t.log" 2>&1
    log "$t rc=$? $((SECONDS - t0)) s: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$WORK/logs/$t.log" | tr '\n' ' ')"
    grep -E '^\[ gpu \]|Failure' "$WORK/logs/$t.log" | head -20 | tee -a "$OUT_DIR/summary.txt"
  done
}

run_sweep() {
  [ "${SWEEP:-1}" = 1 ] || return 0
  local t0=$SECONDS limit=${BENCH_TIME_LIMIT:-200}
  mkdir -p "$WORK/bench"
  timeout $((limit + 120)) "$B/cuda_model_bench" --synth full --quant q2 --seed 1 --sweep \
    --batches "${BENCH_BATCHES:-1,2,4,8,16,32,64,128,256}" --contexts "${BENCH_CONTEXTS:-4096,16384}" \
    --steps "${BENCH_STEPS:-5}" --point-time "${BENCH_POINT_TIME:-15}" --time-limit "$limit" \
    --prefill-depths "${PREFILL_DEPTHS:-0,16384}" --prefill-chunk "${PREFILL_CHUNK:-2048}" --prefill-reps "${PREFILL_REPS:-2}" \
    --out-dir "$WORK/bench" >"$WORK/logs/model_bench.log" 2>&1
  log "cuda_model_bench --sweep rc=$? $((SECONDS - t0)) s"
  cat "$WORK/logs/model_bench.log"
  cp "$WORK/bench/decode.csv" "$WORK/bench/prefill.csv" "$OUT_DIR/" 2>/dev/null
}

# The scheduler limits of the server, which the engine-only loop uses too.
MAX_SEQS=256 MAX_BATCHED=4096 DEVICE_RESERVE=8

start_server() {
  PORT=18431
  "$B/ds4serve" --backend cuda --synth full --quant q2 --seed 1 --model "$WORK/models/tiny-q2.gguf" --port "$PORT" \
    --max-num-seqs $MAX_SEQS --max-num-batched-tokens $MAX_BATCHED --ctx 20480 --device-reserve $DEVICE_RESERVE \
    >"$WORK/logs/ds4serve.log" 2>&1 &
  SERVER_PID=$!
  local t0=$SECONDS
  if wait_healthy "$PORT" 240; then
    log "ds4serve --backend cuda --synth full healthy after $((SECONDS - t0)) s"
    grep -E 'CUDA device|KV pool' "$WORK/logs/ds4serve.log" | tee -a "$OUT_DIR/summary.txt"
    return 0
  fi
  log "ds4serve did not become healthy; its log:"
  tail -20 "$WORK/logs/ds4serve.log" | tee -a "$OUT_DIR/summary.txt"
  return 1
}

# ds4serve-load with an outer SIGINT cap: on the signal it stops, writes what it measured, exits 130.
load_run() {
  local cap=$1 dir=$2
  shift 2
  mkdir -p "$dir"
  # Explicit outputs instead of --out: that one also draws a PNG, and the GPU machine has no gnuplot.
  timeout -s INT -k 20 "$cap" "$B/ds4serve-load" --url "http://127.0.0.1:$PORT" --ignore-eos --metrics \
    --progress never --json "$dir/results.json" --csv "$dir/results.csv" --requests-out "$dir/requests.jsonl" \
    "$@" >"$dir.log" 2>&1
  echo $?
}

run_load() {
  local t0=$SECONDS rc
  # Time to first token of a 2K-token prompt on the idle server (2044 words + the template's 4 tokens).
  rc=$(load_run "${TTFT_TIME:-90}" "$WORK/ttft" --concurrency 1 --requests "${TTFT_REQUESTS:-3}" --warmup 1 \
         --input-tokens "${TTFT_INPUT:-2044}" --output-tokens 1 --timeout 120)
  log "ttft (2K prompt, idle server) rc=$rc $((SECONDS - t0)) s"
  cp "$WORK/ttft/results.csv" "$OUT_DIR/ttft.csv" 2>/dev/null
  t0=$SECONDS
  rc=$(load_run "${LOAD_TIME:-300}" "$WORK/load" --concurrency "${LOAD_CONCURRENCY:-1,2,4,8,16,32,64,128,256}" \
         --requests 100000 --duration "${LOAD_LEVEL_S:-20}" --timeout "${LOAD_REQ_TIMEOUT:-120}" --warmup 1 \
         --input-tokens "${LOAD_INPUT:-64}" --output-tokens "${LOAD_OUTPUT:-64}")
  log "load levels rc=$rc $((SECONDS - t0)) s"
  cp "$WORK/load/results.csv" "$OUT_DIR/load.csv" 2>/dev/null
  tail -40 "$WORK/load.log"
}

# Prompt tokens of the HTTP load's requests as the server counted them (ds4serve-load's warm-up
# usage: LOAD_INPUT words + BOS, <｜User｜>, <｜Assistant｜>, <think>), else LOAD_INPUT + 4.
http_prompt_tokens() {
  local n
  n=$(grep -o '"usage_prompt_tokens":[0-9]*' "$WORK/load/results.json" 2>/dev/null | head -1 | cut -d: -f2)
  [ -n "$n" ] && [ "$n" -gt 0 ] && { echo "$n"; return; }
  echo $(("${LOAD_INPUT:-64}" + 4))
}

# The HTTP load's closed loop on ds4serve's CUDA engine without HTTP (ds4serve-bench --users): same
# levels, level time, output length, scheduler limits and sampling (temperature 1: the server's
# default, ds4serve-load sends none); prompts of random ids, as many as the server tokenized. Needs
# the GPU to itself: runs after the server stopped.
run_engine_load() {
  [ "${ENGINE_LOAD:-1}" = 1 ] || return 0
  local t0=$SECONDS prompt
  prompt=$(http_prompt_tokens)
  mkdir -p "$WORK/engine"
  timeout -k 20 "${ENGINE_LOAD_TIME:-${LOAD_TIME:-300}}" "$B/ds4serve-bench" --backend cuda --synth full --quant q2 \
    --seed 1 --users "${LOAD_CONCURRENCY:-1,2,4,8,16,32,64,128,256}" --level-time "${LOAD_LEVEL_S:-20}" \
    --warmup-requests 1 --prompt-len "$prompt" --output-len "${LOAD_OUTPUT:-64}" --temperature 1 --max-num-seqs $MAX_SEQS \
    --max-batched-tokens $MAX_BATCHED --device-reserve $DEVICE_RESERVE \
    --out "$WORK/engine/results.json" --out "$WORK/engine/results.csv" >"$WORK/engine.log" 2>&1
  log "engine-only closed loop (ds4serve-bench, $prompt-token prompts) rc=$? $((SECONDS - t0)) s"
  cp "$WORK/engine/results.csv" "$OUT_DIR/engine_load.csv" 2>/dev/null
  grep -E '^ds4serve-bench:|^level c=' "$WORK/engine.log" | tail -20
  compare_table "$OUT_DIR" | tee -a "$OUT_DIR/summary.txt"
}

# Markdown table of DIR's load.csv (HTTP) next to engine_load.csv (engine alone), by concurrency.
compare_table() {
  local dir=$1
  [ -f "$dir/load.csv" ] && [ -f "$dir/engine_load.csv" ] || return 0
  echo
  echo "| users | requests ok, HTTP / engine | out tok/s, HTTP / engine | HTTP of engine | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
  awk -F, 'FNR == 1 { next }
           NR == FNR { ok[$2] = $5; out[$2] = $12; t50[$2] = $17; t99[$2] = $19; i50[$2] = $21; i99[$2] = $23; next }
           ($2 in out) { printf "| %s | %s / %s | %.1f / %.1f | %.1f%% | %.0f / %.0f | %.0f / %.0f | %.1f / %.1f | %.1f / %.1f |\n",
                         $2, ok[$2], $5, out[$2], $12, ($12 > 0 ? 100 * out[$2] / $12 : 0), t50[$2], $17, t99[$2], $19,
                         i50[$2], $21, i99[$2], $23 }' \
    "$dir/load.csv" "$dir/engine_load.csv"
}

run() {
  B=${1:-build-cuda-serve/h200-bundle}
  OUT_DIR=${OUT:-$PWD/h200-logs}
  mkdir -p "$OUT_DIR"
  : >"$OUT_DIR/summary.txt"
  export LD_LIBRARY_PATH="$B/lib:${LD_LIBRARY_PATH:-}"
  WORK=$(mktemp -d)
  mkdir -p "$WORK/logs"
  log "binaries built from commit $(cat "$B/COMMIT" 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$OUT_DIR/summary.txt"
  # The tokenizer's carrier for the synthetic model: the demo model, as the build makes it.
  make_test_models "$B" "$WORK" tiny | tee -a "$OUT_DIR/summary.txt"
  cp "$WORK/synth.log" "$WORK/logs/" 2>/dev/null
  export DS4_BINARY_DIR="$WORK" DS4_SOURCE_DIR="$PWD"
  run_tests
  run_sweep
  if start_server; then
    run_load
    # The server's own counters after the load (how often steps were graph replays or captures).
    curl -s "http://127.0.0.1:$PORT/metrics" >"$WORK/logs/metrics-after-load.txt" 2>/dev/null
    grep -E '^ds4serve_(engine_step_launches_total|engine_steps_total|num_preemptions_total)' \
      "$WORK/logs/metrics-after-load.txt" | tee -a "$OUT_DIR/summary.txt"
    kill -TERM "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    log "ds4serve stopped"
  else
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  run_engine_load
  tar -czf "$OUT_DIR/h200-bench.tar.gz" -C "$WORK" logs bench ttft load engine ttft.log load.log engine.log 2>/dev/null
  rm -rf "$WORK"
  log "done"
}

# Markdown tables of a run's CSVs and the throughput plot.
plot() {
  local dir=${1:?usage: $0 plot DIR [PNG]} png=${2:-}
  [ -n "$png" ] || png="$dir/h200-throughput.png"
  echo "| context | batch | step ms | tok/s aggregate | per user | weights GB/step | experts/step | GB/s | of copy peak |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  awk -F, 'NR > 1 { if ($3 == "ok") printf "| %s | %s | %.1f | %.1f | %.2f | %.2f | %.0f | %.0f | %.1f%% |\n", $1, $2, $5, $8, $9, $10 / 1e9, $11, $12, 100 * $13;
                    else printf "| %s | %s | %s | | | | | | |\n", $1, $2, $3 }' "$dir/decode.csv"
  echo
  echo "| prefill depth | chunk | ms (best) | tok/s |"
  echo "|---:|---:|---:|---:|"
  awk -F, 'NR > 1 { if ($3 == "ok") printf "| %s | %s | %.1f | %.0f |\n", $1, $2, $6, $8; else printf "| %s | %s | %s | |\n", $1, $2, $3 }' \
    "$dir/prefill.csv"
  if [ -f "$dir/load.csv" ]; then
    echo
    echo "| concurrency | ok | fail | out tok/s | decode tok/s | tok/s/user | TTFT p50 ms | TPOT p50 ms |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk -F, 'NR > 1 { printf "| %s | %s | %s | %.1f | %.1f | %.2f | %.0f | %.1f |\n", $2, $5, $6, $12, $14, $13, $17, $25 }' "$dir/load.csv"
  fi
  compare_table "$dir"
  [ -f "$dir/ttft.csv" ] && awk -F, 'NR == 2 && $5 > 0 { printf "\nTTFT on the idle server, prompt of %.0f tokens (by usage): mean %.0f ms, p50 %.0f ms (%s requests)\n", $11 * $8 / $5, $16, $17, $5 }' "$dir/ttft.csv"
  command -v gnuplot >/dev/null || { echo "gnuplot is not installed: no plot"; return 0; }
  local data
  data=$(mktemp -d)
  local plots=""
  for ctx in $(awk -F, 'NR > 1 {print $1}' "$dir/decode.csv" | sort -un); do
    awk -F, -v c="$ctx" 'NR > 1 && $1 == c && $3 == "ok" {print $2, $8, $9}' "$dir/decode.csv" >"$data/engine_$ctx.dat"
    [ -s "$data/engine_$ctx.dat" ] && plots+="'$data/engine_$ctx.dat' using 1:2 with linespoints title 'engine sweep (cuda_model_bench), context $ctx', "
  done
  [ -f "$dir/load.csv" ] && awk -F, 'NR > 1 && $5 > 0 {print $2, $12, $13}' "$dir/load.csv" >"$data/server.dat"
  [ -s "$data/server.dat" ] && plots+="'$data/server.dat' using 1:2 with linespoints title 'closed loop through HTTP: ds4serve + ds4serve-load (output tok/s)', "
  [ -f "$dir/engine_load.csv" ] && awk -F, 'NR > 1 && $5 > 0 {print $2, $12, $13}' "$dir/engine_load.csv" >"$data/engine_loop.dat"
  [ -s "$data/engine_loop.dat" ] && plots+="'$data/engine_loop.dat' using 1:2 with linespoints dt 2 title 'same closed loop, engine alone: ds4serve-bench --users (output tok/s)', "
  gnuplot <<EOF
set terminal pngcairo size 1100,600 noenhanced
set output '$png'
set title 'DeepSeek V4 Flash q2 (synthetic, full size) on one H200: aggregate tokens/s (sweep: decode steps only; loops: prompts too)'
set xlabel 'batch size / concurrent users'
set ylabel 'tokens/s'
set logscale xy 2
set grid
set key top left
plot ${plots%, }
EOF
  rm -rf "$data"
  echo
  echo "plot: $png"
}

case "$mode" in
  bundle) shift; bundle "$@" ;;
  run) shift; run "$@" ;;
  plot) shift; plot "$@" ;;
  *) echo "usage: $0 bundle [BUILD_DIR] | run [BUNDLE_DIR] | plot DIR [PNG]" >&2; exit 2 ;;
esac
