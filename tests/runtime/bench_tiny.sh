#!/usr/bin/env bash
# `dsv4-tiny bench` end to end, quickly (a few seconds): a synthetic tiny checkpoint (synth + convert
# once), one short run with --profile, and checks of the JSON report's keys (present, finite, positive
# where a rate; not speed), the profile's shares, and a clear error on a bad --batch.
# Usage: bench_tiny.sh <dsv4-tiny binary> <work dir>
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
rm -f "$work/bench.json"
"$bin" bench -w "$work/w" --prefill 16,64 --contexts 48 --decode-tokens 2 --repeats 2 --warmup 0 --threads 1 \
  --profile --json "$work/bench.json" >"$work/bench.out" 2>"$work/bench.err"
cat "$work/bench.out"
python3 - "$work/bench.json" <<'PY'
import json, math, sys
r = json.load(open(sys.argv[1]))
def num(k, d=r, positive=True):
    v = d.get(k)
    assert isinstance(v, (int, float)) and math.isfinite(v), f"{k} = {v!r}: not a finite number"
    assert v > 0 if positive else v >= 0, f"{k} = {v}: out of range"
for k in ["copy_gbps", "fma_gflops", "prefill_tok_s", "decode_tok_s", "bytes_per_decode_token",
          "bandwidth_efficiency", "prefill_gflops", "fma_efficiency"]:
    num(k)
num("collective_share", positive=False)
assert r["config"] == "tiny" and r["ranks"] == 1, (r["config"], r["ranks"])
assert [p["tokens"] for p in r["prefill"]] == [16, 64], r["prefill"]
# batch full (4 requests) then batch 1, both at context 48 plus what the full batch advanced
assert [(d["batch_per_rank"], d["context"]) for d in r["decode"]] == [(4, 48), (1, 52)], r["decode"]
for case in r["prefill"] + r["decode"]:
    num("tok_s", case)
prof = r["profile"]
for phase in ("decode", "prefill"):
    shares = [row["share"] for row in prof[phase]["by_kind"]]
    assert abs(sum(shares) - 1) < 1e-6 and shares == sorted(shares, reverse=True), (phase, shares)
    assert any(row["name"] == "LmHeadShard" for row in prof[phase]["by_kind"])
num("estimated_overhead", prof)
print("ok: bench.json has every key, finite and in range; profile shares sum to 1")
PY
if "$bin" bench -w "$work/w" --batch 9 >"$work/bad.out" 2>&1; then
  echo "FAIL: --batch 9 (above max_requests_per_rank 4) was accepted"; exit 1
fi
grep -q "batch.*max_requests_per_rank=4.*got '9'" "$work/bad.out" || { echo "FAIL: unclear error:"; cat "$work/bad.out"; exit 1; }
echo "ok: --batch 9 refused: $(cat "$work/bad.out")"
