#!/usr/bin/env bash
# Builds ds4serve (Release) with the built-in demo model and runs it: today a CLI generation on the
# tiny synthetic model (random weights, real tokenizer), later the HTTP server. Extra arguments go
# to ds4serve-cli (e.g. --prompt "..." -n 64 --temperature 0.7).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)" --target ds4serve-cli ds4serve-model demo_model
./build/tools/ds4serve-model info build/models/tiny-q2.gguf | tail -4
exec ./build/tools/ds4serve-cli --model build/models/tiny-q2.gguf "$@"
