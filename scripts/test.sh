#!/usr/bin/env bash
# Sets up a fresh machine and runs the whole test suite: dependencies, configure, build, ctest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install-deps.sh
build=${DSV4_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DDSV4_CONFIG="${DSV4_CONFIG:-demo}"
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure -j"$(nproc)"
# The portable kernel paths (no -march: no AVX-512) against the same scalar twins and golden ops, so the
# fallback stays correct although this machine takes the SIMD paths.
portable="$build-portable"
cmake -S . -B "$portable" -DCMAKE_BUILD_TYPE=Release -DDSV4_KERNELS_ONLY=ON -DDSV4_ARCH_FLAGS=""
cmake --build "$portable" -j"$(nproc)" --target kernels_tests golden_ops_tests
ctest --test-dir "$portable" --output-on-failure -j"$(nproc)"
