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
# Sanitizer stage: AddressSanitizer + UndefinedBehaviorSanitizer (GCC, -DDSV4_SANITIZE=ON, any report
# fatal) over the unit tests, the golden tests and the 1- and 4-rank distributed and fault tests of the
# tiny configs (4 ranks exercise every collective). Left to the plain build above: checkpoint_tests (it
# needs dsv4-demo: one more runtime copy), the 2-, 16-rank and demo jobs (16 ASan processes on 2 cores),
# plan drift, `dsv4 info` and the kernel ISA paths. Open MPI's own leaks: tests/lsan-mpi.supp.
san=$build-sanitize
cmake -S . -B "$san" -DCMAKE_BUILD_TYPE=Release -DDSV4_SANITIZE=ON -DDSV4_CONFIG=tiny
cmake --build "$san" -j"$(nproc)" --target plan_tests kernels_tests golden_ops_tests golden_engine_tests \
  runtime_tests dsv4-tiny dsv4-tiny4
san_skip='^checkpoint\.|dist_(convert_(2|16)|golden_(2|16)ranks|multi_request_(2|16)ranks|demo|refuse_rank_file)'
san_skip+='|runtime\.run_demo|plan_drift|dsv4_info'
# alloc_dealloc_mismatch=0: std::stable_sort's temporary buffer (libstdc++, GCC 12 at -O3; the kernel
# tests' reference top-k) is reported as new-vs-free.
ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:alloc_dealloc_mismatch=0 LSAN_OPTIONS=suppressions=$root/tests/lsan-mpi.supp \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir "$san" --output-on-failure -j"$(nproc)" -E "$san_skip"
# Fuzz smoke: every libFuzzer target (clang, ASan + UBSan) for DSV4_FUZZ_SECONDS (default 20: 7 targets
# x 20 s keeps the whole CI under its 30 minutes) from its seeds.
bash fuzz/run.sh "${DSV4_FUZZ_SECONDS:-20}"
