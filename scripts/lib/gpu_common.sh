# Shared pieces of the GPU run scripts (gpu_check.sh, gpu_step_check.sh, gpu_parallel_check.sh,
# h200_bench.sh, h200_mtp.sh): building a bundle of binaries here, and on the GPU machine finding
# NCCL, unpacking a bundle and generating the synthetic test models. Sourced, not run; the caller
# has cd'ed to the repository root.

# bundle_binaries BUILD_DIR OUT_DIR TARGET...: configures BUILD_DIR (Release; CUDA for sm_90a when
# nvcc is here), builds the targets and copies them into a fresh OUT_DIR with the shared libraries
# the GPU machine lacks (OUT_DIR/lib; not NCCL, which the binaries load at run time) and a COMMIT
# file naming what they were built from.
bundle_binaries() {
  local build=$1 out=$2
  shift 2
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null || return 1
  cmake --build "$build" -j2 --target "$@" || return 1
  rm -rf "$out" && mkdir -p "$out/lib"
  local t path
  for t in "$@"; do
    path=$(find "$build/tests/cuda" "$build/tests" "$build/http" "$build/tools" "$build/loadtest" "$build/scheduler" "$build/bench" \
      -maxdepth 1 -type f -name "$t" -perm -u+x 2>/dev/null | head -1)
    [ -n "$path" ] || { echo "bundle: no built program named $t in $build" >&2; return 1; }
    cp "$path" "$out/"
  done
  for t in "$out"/*; do if [ -f "$t" ] && [ -x "$t" ]; then ldd "$t" 2>/dev/null || true; fi; done |
    awk '$3 ~ /^\// && $3 !~ /\/(libc|libm|libdl|librt|libpthread|ld-linux|libgcc_s|libstdc\+\+|libnccl)[.-]/ {print $3}' |
    sort -u | xargs -r -I{} cp -L {} "$out/lib/"
  # The GPU machine's copy of .git may be older than the binaries: say what they were built from.
  echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!build*' || echo ' + uncommitted changes')" >"$out/COMMIT"
}

# The lib folder of the nvidia-nccl-cu13 wheel (the GPU machine's NCCL), or nothing.
nccl_lib() {
  python3 -c 'import importlib.util, os
spec = importlib.util.find_spec("nvidia")
for base in (spec.submodule_search_locations if spec else []):
    lib = os.path.join(base, "nccl", "lib")
    if os.path.exists(os.path.join(lib, "libnccl.so.2")): print(lib); break' 2>/dev/null
}

# unpack_bundle PATH: prints the bundle folder; a .tar.xz (holding one folder) is unpacked first.
unpack_bundle() {
  local b=$1
  if [[ "$b" == *.tar.xz ]]; then
    local dir
    dir=$(mktemp -d)
    tar -xJf "$b" -C "$dir" || return 1
    b="$dir/$(ls "$dir" | head -1)"
  fi
  echo "$b"
}

# make_test_models BUNDLE WORK [MODEL...]: the synthetic models the GPU tests read, exactly as the
# build makes them (data/CMakeLists.txt), into WORK/models: tiny (the demo model, tiny-q2.gguf),
# small (small-q2.gguf, real head and row widths), tiny-mtp (the demo model's MTP module). Default:
# all three. Failures are printed, not fatal: the tests that need a missing model skip or fail.
make_test_models() {
  local b=$1 work=$2
  shift 2
  local models=("$@")
  [ ${#models[@]} -gt 0 ] || models=(tiny small tiny-mtp)
  mkdir -p "$work/models" "$work/tokenizer"
  [ -f "$work/tokenizer/tokens.txt" ] || tar -xJf data/tokenizer/deepseek_v4_tokenizer.tar.xz -C "$work/tokenizer"
  local m
  for m in "${models[@]}"; do
    case $m in
      tiny | small) "$b/ds4serve-model" synth --preset "$m" --quant q2 --seed 1 --tokenizer "$work/tokenizer" \
        -o "$work/models/$m-q2.gguf" >>"$work/synth.log" 2>&1 ;;
      tiny-mtp) "$b/ds4serve-model" synth --preset tiny --quant q2 --seed 2 --mtp -o "$work/models/tiny-q2-mtp.gguf" \
        >>"$work/synth.log" 2>&1 ;;
      *) echo "make_test_models: unknown model $m" >&2; false ;;
    esac || echo "model $m: generation failed (see $work/synth.log)"
  done
}

# gtest_line NAME RC SECONDS LOG: one summary line of a GoogleTest program's run.
gtest_line() {
  printf '%-26s rc=%-3s %4ss  %s\n' "$1" "$2" "$3" "$(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$4" | head -3 | tr '\n' ' ')"
}
