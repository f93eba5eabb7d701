#!/usr/bin/env bash
# Quick start: install the Debian packages mtlm needs, build in Release and run the main demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target mtlm-hello
./build/release/examples/mtlm-hello
