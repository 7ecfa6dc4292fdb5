#!/usr/bin/env bash
# Manual round trip on config/flash4 (the real V4-Flash dims, 4 layers, 1 rank): synthetic official-format
# checkpoint -> dsv4 convert -> dsv4 check --checksums -> dsv4 eval (finite logits). Prints the synth speed,
# the conversion throughput (MB/s) and the converter's peak RSS. Not in ctest: it needs ~34 GB of free disk
# (a ~16.6 GB checkpoint plus its ~16.6 GB conversion) and minutes; the big files are deleted at the end.
#
# Usage: bench/flash4_roundtrip.sh [build-dir] [work-dir]
#   build-dir  configured with -DDSV4_CONFIG=flash4 -DDSV4_TEST_CONFIGS=OFF (default build-flash4; built
#              here if it has no dsv4 yet, with JOBS=2 parallel jobs)
#   work-dir   where the checkpoint and weights go (default /tmp/dsv4_flash4); KEEP=1 keeps them
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-flash4}
work=${2:-/tmp/dsv4_flash4}
jobs=${JOBS:-2}

if [ ! -x "$build/dsv4" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DDSV4_CONFIG=flash4 -DDSV4_TEST_CONFIGS=OFF
  cmake --build "$build" -j"$jobs" --target dsv4
fi
dsv4=$build/dsv4
"$dsv4" info | grep -q 'flash4' || { echo "error: $dsv4 is not built for config flash4" >&2; exit 1; }

[ -e "$work" ] && { echo "error: $work exists; remove it first" >&2; exit 1; }
mkdir -p "$work"
cleanup() { [ "${KEEP:-0}" = 1 ] || rm -rf "$work/ck" "$work/w" "$work/w.partial"; }
trap cleanup EXIT
need=$((34 * 1024 * 1024))  # KiB
avail=$(df -Pk "$work" | awk 'NR==2 {print $4}')
[ "$avail" -ge "$need" ] || { echo "error: $work has $((avail / 1048576)) GiB free, needs ~34 GiB" >&2; exit 1; }

rss() { awk -F': ' '/Maximum resident set size/ {printf "%.1f MiB", $2 / 1024}' "$1"; }
wall() { awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$1"; }

echo "== synth (seed 1) -> $work/ck"
/usr/bin/time -v -o "$work/synth.time" "$dsv4" synth --seed 1 -o "$work/ck" 2>/dev/null | tee "$work/synth.out"
echo "== convert -> $work/w"
/usr/bin/time -v -o "$work/convert.time" "$dsv4" convert --hf "$work/ck" -o "$work/w" 2>"$work/convert.err" |
  tee "$work/convert.out"
echo "== check --checksums"
/usr/bin/time -v -o "$work/check.time" "$dsv4" check -w "$work/w" --checksums | tee "$work/check.out"

echo "== eval: 5 prompt tokens, 2 decode steps"
/usr/bin/python3 -c "import numpy as np; np.save('$work/ids.npy', np.array([0, 100, 2000, 30000, 129000], dtype=np.int32))"
/usr/bin/time -v -o "$work/eval.time" "$dsv4" eval -w "$work/w" --input-ids "$work/ids.npy" --decode-steps 2 \
  --logits-out "$work/logits.npy" --tokens-out "$work/tokens.npy" | tail -5
logits=$(/usr/bin/python3 -c "
import numpy as np
l = np.load('$work/logits.npy'); t = np.load('$work/tokens.npy')
assert l.shape == (3, 129280), l.shape
assert np.isfinite(l).all(), 'non-finite logits'
print('logits %s finite, |max| %.3f, std %.3f, greedy tokens %s' % (l.shape, np.abs(l).max(), l.std(), t.tolist()))")

ck_bytes=$(du -sb "$work/ck" | cut -f1)
w_bytes=$(du -sb "$work/w" | cut -f1)
echo
echo "== flash4 round trip ($(nproc) cores)"
echo "checkpoint:  $((ck_bytes / 1000000)) MB, weights dir: $((w_bytes / 1000000)) MB"
echo "synth:       $(grep -o '[0-9.]* s ([0-9.]* MB/s)' "$work/synth.out"), peak RSS $(rss "$work/synth.time")"
echo "convert:     $(grep -o 'conversion: .*' "$work/convert.out" | sed 's/conversion: //'), wall $(wall "$work/convert.time"), peak RSS (time -v) $(rss "$work/convert.time")"
echo "check:       wall $(wall "$work/check.time") (--checksums, every tensor hashed), peak RSS $(rss "$work/check.time")"
echo "eval:        wall $(wall "$work/eval.time"), peak RSS $(rss "$work/eval.time"); $logits"
