#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time from its seed corpus (fuzz/corpus/NAME, read only)
# and fails on any crash, sanitizer report, leak, timeout or out-of-memory. New inputs and crash
# artifacts go to WORK_DIR, never into the repository.
# Usage: run_fuzzer.sh FUZZ_BINARY NAME SECONDS WORK_DIR [extra libFuzzer flags...]
set -euo pipefail
if (($# < 4)); then
  echo "usage: $0 FUZZ_BINARY NAME SECONDS WORK_DIR [libFuzzer flags...]" >&2
  exit 2
fi
binary=$1 name=$2 seconds=$3 work=$4
shift 4
here=$(cd "$(dirname "$0")" && pwd)
seeds=$here/corpus/$name
if [ ! -d "$seeds" ]; then
  echo "run_fuzzer: no seed corpus $seeds" >&2
  exit 2
fi
mkdir -p "$work/corpus" "$work/artifacts"
flags=(-max_total_time="$seconds" -timeout=60 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1
       -artifact_prefix="$work/artifacts/")
[ -f "$here/dict/$name.dict" ] && flags+=(-dict="$here/dict/$name.dict")
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# The first directory collects new inputs; the seeds are only read.
exec "$binary" "${flags[@]}" "$@" "$work/corpus" "$seeds"
