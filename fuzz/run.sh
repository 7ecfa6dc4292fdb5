#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for SECONDS (default 30), one process
# per target, TARGETS (default: all) one after the other. Usage: fuzz/run.sh [SECONDS] [TARGET...]
# Environment: DSV4_FUZZ_BUILD_DIR (default build-fuzz), DSV4_FUZZ_JOBS=2 runs two targets at a time.
# Each target starts from its seeds (fuzz/corpus/<target>/: real examples plus the reproducers of fixed
# findings, so they stay fixed) and grows a working corpus in the build dir (the repository is not
# touched). A crash, sanitizer report, leak, timeout (>10 s per input) or >2 GB of memory fails the run;
# the input is saved as <build>/findings/<target>/crash-*. Reproducers of findings still open are kept in
# fuzz/open/<target>/ and replayed first: their status is printed, they do not fail the run.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-30}
shift || true
build=${DSV4_FUZZ_BUILD_DIR:-$root/build-fuzz}
jobs=${DSV4_FUZZ_JOBS:-1}
all=(safetensors_header safetensors_index weights_header shape_config npy tokenizer chat http_body)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

cmake -S "$root/fuzz" -B "$build" -DCMAKE_CXX_COMPILER=clang++ >/dev/null || exit 1
cmake --build "$build" -j"$(nproc)" --target $(printf 'fuzz_%s ' "${targets[@]}") || exit 1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

replay_open() {  # open findings: still failing or fixed?
  local t=$1 f
  for f in "$root/fuzz/open/$t"/*; do
    [ -f "$f" ] || continue
    if { "$build/fuzz_$t" -runs=1 "$f" >/dev/null; } 2>/dev/null; then
      echo "open finding $t/$(basename "$f"): no longer fails (fixed? move it to fuzz/corpus/$t/)"
    else
      echo "open finding $t/$(basename "$f"): still fails"
    fi
  done
}

one() {  # fuzz one target; prints a summary line
  local t=$1 work=$build/corpus/$t log=$build/logs/$t.log rc=0
  mkdir -p "$work" "$build/findings/$t" "$build/logs"
  TIMEFORMAT="%U %S"
  { time "$build/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$build/findings/$t/" "$work" "$root/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?; } 2>"$build/logs/$t.time"
  local cpu execs
  cpu=$(awk '{ printf "%.0f", $1 + $2 }' "$build/logs/$t.time")
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{ print $2 }')
  if [ "$rc" -eq 0 ]; then
    echo "fuzz $t: ok, ${secs} s, ${cpu} CPU-s, ${execs:-?} executions, corpus $(ls "$work" | wc -l) files"
  else
    echo "fuzz $t: FINDING (exit $rc) after ${execs:-?} executions; reproducer: $build/findings/$t/$(ls -t "$build/findings/$t" | head -1)"
    grep -E "ERROR: |FINDING|runtime error|SUMMARY" "$log" | head -5 | sed 's/^/  | /'
    echo "  | full log: $log"
  fi
  return "$rc"
}

fail=0
for t in "${targets[@]}"; do replay_open "$t"; done
if [ "$jobs" -le 1 ]; then
  for t in "${targets[@]}"; do one "$t" || fail=1; done
else
  pids=()
  for t in "${targets[@]}"; do
    one "$t" &
    pids+=($!)
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || fail=1; done
  done
  while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || fail=1; done
fi
exit "$fail"
