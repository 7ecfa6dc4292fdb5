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
# The other kernel paths against the same scalar twins and golden ops, so that they stay correct although
# this machine takes the native ones: AVX-512 without VBMI (x86-64-v4: Skylake-X class), AVX2 (x86-64-v3),
# each where the CPU runs it, and portable (no -march).
kernel_paths() {  # build suffix, ISA flags
  cmake -S . -B "$build-$1" -DCMAKE_BUILD_TYPE=Release -DDSV4_KERNELS_ONLY=ON -DDSV4_ARCH_FLAGS="$2"
  cmake --build "$build-$1" -j"$(nproc)" --target kernels_tests golden_ops_tests
  ctest --test-dir "$build-$1" --output-on-failure -j"$(nproc)"
}
has() { for f in "$@"; do grep -qw "$f" /proc/cpuinfo || return 1; done; }
if has avx512f avx512bw avx512cd avx512dq avx512vl; then kernel_paths avx512 "-march=x86-64-v4"; fi
if has avx2 fma; then kernel_paths avx2 "-march=x86-64-v3"; fi
kernel_paths portable ""
