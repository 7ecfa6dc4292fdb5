#!/usr/bin/env bash
# `dsv4 serve` throughput and latency at 1, 4 and 16 clients (bench/serve_load.mjs), then the same batch of
# 16 requests through serve and through `dsv4 run`, back to back. Loopback only.
# Usage: bench/serve_vs_run.sh <dsv4 binary> <ranks> <weights> <label>
set -uo pipefail
bin=$1 np=$2 w=$3 label=$4
root=$(cd "$(dirname "$0")/.." && pwd)
out=${TMPDIR:-/tmp}/dsv4-serve-vs-run-$label; mkdir -p $out
mpi=(mpirun --allow-run-as-root --oversubscribe -np $np)
: > $out/serve.err
setsid "${mpi[@]}" $bin serve -w $w --port 0 --threads 1 2>$out/serve.err &
job=$!
for _ in $(seq 1 600); do grep -q "serve: ready" $out/serve.err && break; sleep 0.1; done
url=$(grep -o "http://[0-9.]*:[0-9]*" $out/serve.err | head -1)
node $root/bench/serve_load.mjs $url/v1 --requests 4 --concurrency 4 --max-tokens 4 --json >/dev/null  # warm-up
for c in 1 4 16; do
  n=$(( c == 1 ? 8 : 32 ))
  echo "$label c=$c: $(node $root/bench/serve_load.mjs $url/v1 --requests $n --concurrency $c --max-tokens 16 --json)"
done
# The same batch through serve and through run: 16 prompts, 16 new tokens each, T=0.8.
echo "$label serve16: $(node $root/bench/serve_load.mjs $url/v1 --requests 16 --concurrency 16 --max-tokens 16 --json)"
for p in $(pgrep -f "$bin serve"); do tr '\0' '\n' </proc/$p/environ 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=0 && kill -TERM $p; done
wait $job
for i in $(seq 0 15); do echo "Request $i: tell me about the number $i."; done > $out/prompts.txt
"${mpi[@]}" $bin run -w $w --prompts-file $out/prompts.txt --max-new-tokens 16 --temperature 0.8 --threads 1 --json-report $out/run.json >/dev/null 2>$out/run.err
node -e 'const r=require(process.argv[1]); console.log(process.argv[2]+" run16: "+JSON.stringify({generated_tokens:r.generated_tokens, loop_s:r.loop_s, tokens_per_s:r.generated_tokens/r.loop_s, ttft_mean_s:r.ttft_mean_s}))' $out/run.json $label
