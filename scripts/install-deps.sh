#!/usr/bin/env bash
# Installs every system dependency of dsv4 from Debian packages. Idempotent: packages already
# present are skipped, so running it twice costs one dpkg query.
set -euo pipefail

packages=(
  build-essential cmake g++ pkg-config
  libopenmpi-dev openmpi-bin
  libxxhash-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libcpp-httplib-dev curl
  clang libclang-rt-dev  # fuzz/ (libFuzzer)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
