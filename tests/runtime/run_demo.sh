#!/usr/bin/env bash
# `dsv4-demo run` end to end on 16 ranks: synthetic demo checkpoint (synth + convert once), two chat
# prompts, greedy. Checks the report, that every request produced tokens, and that continuous batching
# does not change results: each request run alone generates the same text as in the batch.
# Usage: run_demo.sh <dsv4-demo binary> <work dir>
set -euo pipefail
bin=$1
work=$2
mkdir -p "$work"
if [ ! -f "$work/w/.done" ]; then
  rm -rf "$work/hf" "$work/w"
  "$bin" synth --seed 1 -o "$work/hf" >/dev/null
  "$bin" convert --hf "$work/hf" -o "$work/w" >/dev/null
  touch "$work/w/.done"
fi
mpi=(mpirun --allow-run-as-root --oversubscribe -np 16)
common=(run -w "$work/w" --max-new-tokens 4 --temperature 0)

"${mpi[@]}" "$bin" "${common[@]}" --prompt "介绍下北京故宫" --prompt "Hello, world!" \
  --json-report "$work/both.json" >"$work/both.out" 2>"$work/both.err"
cat "$work/both.err" "$work/both.out"
# stdout carries only the generated text; headers and the report go to stderr.
! grep -q "===\|^run:" "$work/both.out" || { echo "FAIL: headers on stdout"; exit 1; }
for i in 0 1; do
  grep -q "=== request $i: [1-4] new tokens, stop: \(eos\|max_new_tokens\) ===" "$work/both.err" ||
    { echo "FAIL: request $i did not finish with 1-4 tokens"; exit 1; }
done
grep -q '"requests": 2' "$work/both.json" || { echo "FAIL: report lacks requests: 2"; exit 1; }
grep -q '"prompt_tokens": 16' "$work/both.json" || { echo "FAIL: expected 8 + 8 chat-encoded prompt tokens"; exit 1; }
for k in ttft_mean_s prefill_tokens_per_s decode_tokens_per_s collective_share peak_rss_bytes_max arena_bytes; do
  grep -q "\"$k\"" "$work/both.json" || { echo "FAIL: report lacks $k"; exit 1; }
done

# The second request alone (rank 0 instead of rank 1, no batch partner) gives the same greedy text.
"${mpi[@]}" "$bin" "${common[@]}" --prompt "Hello, world!" --json-report "$work/alone.json" >"$work/alone.out" 2>"$work/alone.err"
text() { sed -n "/\"index\": $2,/,/\"text\"/p" "$1" | grep '"text"'; }
a=$(text "$work/both.json" 1)
b=$(text "$work/alone.json" 0)
[ -n "$a" ] && [ "$a" = "$b" ] || { echo "FAIL: batched text [$a] differs from alone [$b]"; exit 1; }
echo "ok: batched == alone: $a"

# A report path that is not a regular file (or cannot be written) fails before any work, and the device is
# left as it was (the report is renamed into place only over a regular file).
if "${mpi[@]}" "$bin" "${common[@]}" --prompt "x" --json-report /dev/full >"$work/full.out" 2>"$work/full.err"; then
  echo "FAIL: --json-report /dev/full was accepted"; exit 1
fi
grep -q "not a regular file" "$work/full.err" || { echo "FAIL: no clear error for /dev/full"; cat "$work/full.err"; exit 1; }
[ -c /dev/full ] || { echo "FAIL: /dev/full is no longer a character device"; exit 1; }
if "${mpi[@]}" "$bin" "${common[@]}" --prompt "x" --json-report "$work/no/such/dir/r.json" >/dev/null 2>"$work/nodir.err"; then
  echo "FAIL: a report in a missing folder was accepted"; exit 1
fi
grep -q "cannot write the" "$work/nodir.err" || { echo "FAIL: no clear error for a missing folder"; cat "$work/nodir.err"; exit 1; }
echo "ok: unwritable report paths fail first, /dev/full untouched"
