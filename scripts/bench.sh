#!/usr/bin/env bash
# End-to-end benchmark of the engine (`dsv4 bench --profile`) on tiny (1 rank), demo (16 ranks under
# mpirun --oversubscribe) and flash-slice (the real Flash dims, 4 layers, 32 experts, 1 rank).
# For each config: builds its binary if missing, writes a synthetic checkpoint and converts it ONCE into a
# cache folder outside the repository (re-made only when the plan hash changes; the checkpoint itself is
# deleted after conversion unless KEEP_HF=1), then runs the bench and keeps its JSON and table.
#
# Usage: scripts/bench.sh [config ...]           (default: tiny demo flash-slice)
# Environment:
#   DSV4_CACHE   weights cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/dsv4); flash-slice needs ~9 GB free
#                while converting, 4.5 GB after
#   OUT          where <config>.json and <config>.txt go (default out/bench in the repository)
#   BENCH_ARGS   extra `dsv4 bench` arguments (e.g. "--repeats 5 --contexts 256")
#   JOBS         parallel build jobs (default 2)
# Binaries: build/dsv4-<config> if there (a -DDSV4_TEST_CONFIGS=ON build has tiny and demo), else
# build-<config>/dsv4 (build-fs/dsv4 for flash-slice), configured and built here if missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${DSV4_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dsv4}
out=${OUT:-$root/out/bench}
jobs=${JOBS:-2}
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(tiny demo flash-slice)
mkdir -p "$out" "$cache"

binary() {
  local cfg=$1 dir
  if [ -x "$root/build/dsv4-$cfg" ]; then echo "$root/build/dsv4-$cfg"; return; fi
  dir=$root/build-$cfg
  [ "$cfg" = flash-slice ] && dir=$root/build-fs
  if [ ! -x "$dir/dsv4" ]; then
    echo "bench.sh: building $dir/dsv4 (config $cfg)" >&2
    cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DDSV4_CONFIG="$cfg" -DDSV4_TEST_CONFIGS=OFF >&2
    cmake --build "$dir" -j"$jobs" --target dsv4 >&2
  fi
  echo "$dir/dsv4"
}

json_field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval('d' + sys.argv[1]))" "$1"; }

for cfg in "${configs[@]}"; do
  [ -f "$root/config/$cfg.json" ] || { echo "bench.sh: error: no config/$cfg.json" >&2; exit 1; }
  bin=$(binary "$cfg")
  info=$("$bin" info --json)
  name=$(json_field '["config"]' <<<"$info")
  [ "$name" = "$cfg" ] || { echo "bench.sh: error: $bin is built for config $name, not $cfg" >&2; exit 1; }
  hash=$(json_field '["plan_hash"]' <<<"$info")
  ranks=$(json_field '["deploy"]["ranks"]' <<<"$info")

  dir=$cache/$cfg
  if [ "$(cat "$dir/weights/.plan-hash" 2>/dev/null)" != "$hash" ]; then
    echo "== $cfg: synthetic checkpoint and conversion into $dir (plan $hash)"
    rm -rf "$dir/hf" "$dir/weights" "$dir/weights.partial"
    mkdir -p "$dir"
    "$bin" synth --seed 1 -o "$dir/hf"
    "$bin" convert --hf "$dir/hf" -o "$dir/weights"
    echo "$hash" >"$dir/weights/.plan-hash"
    [ "${KEEP_HF:-0}" = 1 ] || rm -rf "$dir/hf"
  fi

  run=("$bin")
  [ "$ranks" -gt 1 ] && run=(mpirun --allow-run-as-root --oversubscribe -np "$ranks" "$bin")
  echo "== $cfg: bench on $ranks rank(s); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of words
  "${run[@]}" bench -w "$dir/weights" --profile --json "$out/$cfg.json" ${BENCH_ARGS:-} | tee "$out/$cfg.txt"
done
echo "bench.sh: results in $out"
