#!/usr/bin/env bash
# Installs the Debian packages mtlm needs to build its tests, examples and benchmarks
# (when any is missing). Run as root on Debian 12 or Ubuntu 22.04+.
set -euo pipefail
packages=(build-essential cmake ninja-build libeigen3-dev libxtensor-dev xtl-dev doctest-dev libbenchmark-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
