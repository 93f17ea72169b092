#!/usr/bin/env bash
# Builds ds4serve (Release) with the built-in demo model (a tiny synthetic model: random weights,
# real tokenizer) and serves it with the OpenAI-compatible API on http://127.0.0.1:8000. Extra
# arguments go to ds4serve (e.g. --port 8080 --api-key KEY; see --help). Ctrl-C stops it (drains).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)" --target ds4serve ds4serve-model demo_model
./build/tools/ds4serve-model info build/models/tiny-q2.gguf | tail -4
cat <<'USAGE'

Once it prints "serving", try from another terminal:

  curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \
    -d '{"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 32, "stream": true}'
  (add "reasoning_effort": "none" for an answer without the reasoning part)
  curl http://127.0.0.1:8000/metrics

USAGE
exec ./build/http/ds4serve "$@"
