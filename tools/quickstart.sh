#!/usr/bin/env bash
# Quick start: install the Debian packages mtlm needs, build in Release, then train and evaluate
# the joint intent + slot + language-model demo (mtlm-nlu) on the ATIS copy shipped in data/atis.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target mtlm-nlu
model=build/release/atis.mtlm
# The configuration the README's ATIS table records: four models, two trained at a time (one per
# core), within five minutes of training. Arguments given here override these.
./build/release/examples/mtlm-nlu train --data data/atis --out "$model" --seed 1 --epochs 45 --ensemble 4 \
  --threads 2 --time-budget 290 "$@"
./build/release/examples/mtlm-nlu eval --model "$model" --data data/atis --split test
./build/release/examples/mtlm-nlu eval --model "$model" --data data/atis --split test --json
