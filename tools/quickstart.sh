#!/usr/bin/env bash
# Quick start: install the Debian packages mtlm needs, build in Release, then train and evaluate
# the joint intent + slot + language-model demo (mtlm-nlu) on the ATIS copy shipped in data/atis.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target mtlm-nlu
model=build/release/atis.mtlm
./build/release/examples/mtlm-nlu train --data data/atis --out "$model" --seed 1 "$@"
./build/release/examples/mtlm-nlu eval --model "$model" --data data/atis --split test
./build/release/examples/mtlm-nlu eval --model "$model" --data data/atis --split test --json
