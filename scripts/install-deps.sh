#!/usr/bin/env bash
# Installs everything ds4serve needs to build and test: Debian packages (C++ deps, build tools)
# and the pinned Python test tools into .venv/. Idempotent; safe to re-run. Needs root for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

debian_packages=(
  build-essential cmake ninja-build pkg-config
  libboost1.81-dev libsimdjson-dev prometheus-cpp-dev libgtest-dev libgmock-dev
  python3-venv zlib1g-dev libcurl4-openssl-dev
  prometheus
  gnuplot-nox
  clang libclang-rt-14-dev llvm  # sanitizer and libFuzzer builds (scripts/sanitize.sh), llvm-symbolizer
)
missing=()
for p in "${debian_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
echo "install-deps: ok"
