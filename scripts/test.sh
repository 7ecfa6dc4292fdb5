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
# Sanitizer stage: AddressSanitizer + UndefinedBehaviorSanitizer (GCC, -DDSV4_SANITIZE=ON, every report
# fatal): the plan, kernel and golden-op unit tests, and on 4 ranks (tiny4: every collective, the
# watchdog) conversion, bad input, kill -9 of a rank and the stalled / paused / SIGTERM fault tests.
# Measured here: ~800 CPU-s to build, ~1.5 min of tests. Left to the plain build: the 1-, 2- and
# 16-rank and demo jobs and checkpoint_tests (each needs one more runtime copy built under ASan).
# detect_leaks=0: Open MPI's plugins leak at MPI_Finalize and are dlclose'd by then, so their reports
# have no library name to suppress. alloc_dealloc_mismatch=0: std::stable_sort's temporary buffer
# (libstdc++, GCC 12 at -O3; the kernel tests' reference top-k) is reported as new-vs-free.
san=$build-sanitize
cmake -S . -B "$san" -DCMAKE_BUILD_TYPE=Release -DDSV4_SANITIZE=ON -DDSV4_CONFIG=tiny4
cmake --build "$san" -j"$(nproc)" --target plan_tests kernels_tests golden_ops_tests dsv4
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=0:alloc_dealloc_mismatch=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for t in plan/plan_tests kernels/kernels_tests golden/golden_ops_tests; do
  (cd "$san/tests/$(dirname "$t")" && "./$(basename "$t")" --gtest_brief=1)
done
ctest --test-dir "$san" --output-on-failure \
  -R '^(dist_(convert_4|requests|fail_bad_input|fail_kill_rank)|fault_(stalled_rank|paused_rank|sigterm_eval|sigterm_ranks|sigterm_one_rank))$'
unset ASAN_OPTIONS UBSAN_OPTIONS
# Fuzz smoke: every libFuzzer target (clang, ASan + UBSan) for DSV4_FUZZ_SECONDS (default 20: 8 targets
# x 20 s keeps the whole CI under its 30 minutes) from its seeds.
bash fuzz/run.sh "${DSV4_FUZZ_SECONDS:-20}"
