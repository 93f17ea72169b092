#!/usr/bin/env bash
# Installs everything, builds (Release, all targets incl. the demo model) and runs the whole suite,
# then the sanitizer and fuzz jobs (scripts/sanitize.sh, docs/FUZZING.md; DS4_SKIP_SANITIZERS=1
# leaves them out of a local run).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"
ctest --test-dir build --output-on-failure -j "$(nproc)"
if [ "${DS4_SKIP_SANITIZERS:-0}" != 1 ]; then
  ./scripts/sanitize.sh all
fi
