#!/usr/bin/env bash
# Where the time of one full-size step goes, kernel by kernel (docs/PERFORMANCE.md "Step profile").
# Runs on the GPU machine from the repository root:
#   scripts/h200_profile.sh BUNDLE_DIR [POINT ...]
# BUNDLE_DIR holds cuda_model_bench (built here with the project's sm_90a default). Each POINT is
#   decode:CONTEXT:BATCH   one decode step at that context, KV filled without a prefill (the sweep's)
#   prefill:DEPTH          one 2048-token prefill chunk at that depth
#   real:CONTEXT           one decode step of one sequence after a real prefill to CONTEXT
# (default: decode:4096:1 real:4096 decode:4096:64 prefill:0). For each point Nsight Compute times
# every kernel of the profiled step alone (DS4_PROFILE_STEP=1, DS4_CUDA_STEP=fused: the kernels
# the step's graph holds, launched directly) and scripts/ncu_kernel_table.py sums them by kernel;
# tables and logs go to $OUT (default ./profile-logs): POINT.csv (raw) and summary.md.
set -uo pipefail
cd "$(dirname "$0")/.."
bundle=${1:?usage: scripts/h200_profile.sh BUNDLE_DIR [POINT ...]}
shift
points=("$@")
[[ ${#points[@]} -gt 0 ]] || points=(decode:4096:1 real:4096 decode:4096:64 prefill:0)
out=${OUT:-$PWD/profile-logs}
mkdir -p "$out"
bench="$bundle/cuda_model_bench"
model=(--synth full --quant q2 --seed 1)

# The bench arguments that run POINT once with its profiled step.
point_args() {
  IFS=: read -r kind a b <<<"$1"
  case $kind in
    decode) echo "--sweep --contexts $a --batches $b --steps 2 --prefill-depths '' --kv-reserve 8" ;;
    prefill) echo "--sweep --contexts '' --batches 1 --prefill-depths $a --prefill-reps 1" ;;
    real) echo "--batches 1 --prompt 16 --steps 4 --context $a" ;;
    *) echo "unknown point $1" >&2; return 1 ;;
  esac
}

summary="$out/summary.md"
{ echo "# step profiles, $(date -u +%FT%TZ), $(cat "$bundle/COMMIT" 2>/dev/null)"; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader; } >"$summary"
for point in "${points[@]}"; do
  args=$(point_args "$point") || continue
  name=${point//:/_}
  work=$(mktemp -d)
  t0=$SECONDS
  eval "DS4_PROFILE_STEP=1 DS4_CUDA_STEP=fused timeout 400 ncu --profile-from-start off --clock-control none \
    --cache-control none --metrics gpu__time_duration.sum --print-kernel-base function --print-units base \
    --csv --page raw --log-file '$out/$name.csv' '$bench' ${model[*]} $args --out-dir '$work'" >"$work/stdout" 2>&1
  rc=$?
  { echo; echo "## $point (rc $rc, $((SECONDS - t0)) s)"; grep -E '^(decode|prefill|context|batch)' "$work/stdout";
    tail -n 3 "$work/stdout" | grep -iE 'error|fail' ; python3 scripts/ncu_kernel_table.py "$out/$name.csv" --top 45; } >>"$summary" 2>&1
  rm -rf "$work"
done
cat "$summary"
