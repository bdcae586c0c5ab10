#!/usr/bin/env bash
# Installs the Debian 12 packages OptMLIR builds and tests with. Idempotent:
# packages already present are not touched, and apt-get runs only when
# something is missing.
set -euo pipefail

packages=(
  cmake ninja-build g++ python3 pkg-config
  libmlir-22-dev mlir-22-tools llvm-22-dev llvm-22-tools
  clang-22 libclang-rt-22-dev
  flatbuffers-compiler libflatbuffers-dev libxxhash-dev libcli11-dev
  nlohmann-json3-dev libpcre2-dev libopenblas-dev libgtest-dev libgmock-dev
  libcpp-httplib-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
