#!/usr/bin/env bash
# Sets up a fresh machine and runs the main job on the embedded default config (demo).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install-deps.sh
build=${DSV4_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DDSV4_CONFIG=demo >/dev/null
cmake --build "$build" -j"$(nproc)" --target dsv4
"$build/dsv4" info
