#!/usr/bin/env bash
# `dsv4 serve` on the real engine (synthetic demo weights, 16 ranks by default), driven over loopback by
# curl and the official OpenAI Node SDK: health, models, chat and completions streamed and not, a seeded
# request byte-identical alone and among 15 concurrent others, malformed requests, a client that
# disconnects mid-stream (its slot is freed), a bounded load (200 requests, 16 at a time, none lost), and
# SIGTERM (every rank exits 0).
# Usage: serve_demo.sh <dsv4 binary> <ranks> <work dir> <node client dir (npm ci'd by serving.npm_ci)>
set -euo pipefail
bin=$1 np=$2 work=$3 client=$4
src=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work"
if [ ! -f "$work/w/.done" ]; then
  rm -rf "$work/hf" "$work/w"
  "$bin" synth --seed 1 -o "$work/hf" >/dev/null
  "$bin" convert --hf "$work/hf" -o "$work/w" >/dev/null
  touch "$work/w/.done"
fi
log=$work/serve.err
: >"$log"
setsid mpirun --allow-run-as-root --oversubscribe -np "$np" "$bin" serve -w "$work/w" --port 0 --threads 1 \
  --max-queue 256 --drain-timeout 10 2>"$log" &
job=$!
cleanup() { kill -- -"$job" 2>/dev/null || true; wait "$job" 2>/dev/null || true; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; tail -30 "$log"; exit 1; }
for _ in $(seq 1 1200); do
  grep -q "serve: ready" "$log" && break
  kill -0 "$job" 2>/dev/null || fail "the server exited before it was ready"
  sleep 0.1
done
url=$(grep -o "http://[0-9.]*:[0-9]*" "$log" | head -1)
[ -n "$url" ] || fail "no listening line"
echo "server at $url ($np ranks)"
c() { curl -sS --max-time 120 "$@"; }
post() { c -H 'Content-Type: application/json' -d "$2" "$url$1"; }
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);console.log(JSON.stringify(eval(process.argv[1])))})' "$1"; }

[ "$(c -o /dev/null -w '%{http_code}' "$url/health")" = 200 ] || fail "/health is not 200"
c "$url/v1/models" | grep -q '"object":"list"' || fail "/v1/models"

# A seeded sampled request alone, then the same among 15 concurrent others: the same answer.
req='{"messages":[{"role":"user","content":"介绍下北京故宫"}],"max_tokens":6,"temperature":0.9,"seed":7,"logprobs":true,"top_logprobs":2}'
alone=$(post /v1/chat/completions "$req" | json '[j.choices[0].message, j.choices[0].logprobs, j.usage]')
echo "alone: $alone"
[[ "$alone" == *'"role":"assistant"'* ]] || fail "chat answer: $alone"
for i in $(seq 1 15); do
  post /v1/chat/completions "{\"messages\":[{\"role\":\"user\",\"content\":\"other $i\"}],\"max_tokens\":$((3 + i % 5)),\"temperature\":0.8,\"seed\":$i}" \
    >"$work/other.$i" &
done
crowd=$(post /v1/chat/completions "$req" | json '[j.choices[0].message, j.choices[0].logprobs, j.usage]')
wait $(jobs -p | grep -v "^$job$") 2>/dev/null || true
[ "$alone" = "$crowd" ] || fail "seeded request differs among others: $crowd"
for i in $(seq 1 15); do grep -q '"chat.completion"' "$work/other.$i" || fail "concurrent request $i: $(cat "$work/other.$i")"; done
echo "ok: byte-identical alone and among 15 concurrent requests"

# Streamed: SSE chunks, [DONE] last, the same text as the non-streamed answer.
sreq=${req/\"seed\":7/\"seed\":7,\"stream\":true}
post /v1/chat/completions "$sreq" >"$work/stream.sse"
tail -n 2 "$work/stream.sse" | grep -q '^data: \[DONE\]' || fail "stream does not end with [DONE]"
streamed=$(grep '^data: {' "$work/stream.sse" | sed 's/^data: //' | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{let t="";for(const l of s.trim().split("\n")){const j=JSON.parse(l);for(const c of j.choices)t+=c.delta.content??""}console.log(JSON.stringify(t))})')
[ "$streamed" = "$(echo "$alone" | json 'j[0].content')" ] || fail "streamed $streamed != $(echo "$alone" | json 'j[0].content')"
post /v1/completions '{"prompt":"Hello","max_tokens":3,"temperature":0}' | grep -q '"text_completion"' || fail "completions"
echo "ok: streaming and completions"

# Bad requests: OpenAI error bodies, and the server keeps serving.
code() { c -o "$work/err.json" -w '%{http_code}' -H 'Content-Type: application/json' "$@"; }
[ "$(code -d '{"messages":' "$url/v1/chat/completions")" = 400 ] || fail "malformed JSON"
grep -q '"error"' "$work/err.json" || fail "no OpenAI error body"
[ "$(code -d '{"messages":[{"role":"user","content":"x"}],"max_tokens":100000000}' "$url/v1/chat/completions")" = 400 ] || fail "over max_context"
[ "$(code -d '{"messages":[{"role":"user","content":"x"}],"n":2}' "$url/v1/chat/completions")" = 400 ] || fail "n=2"
[ "$(code "$url/v1/nothing")" = 404 ] || fail "unknown route"
echo "ok: 400 / 404 with OpenAI error bodies"

# A client that disconnects mid-stream: its request is cancelled and its slot freed.
curl -sS -N --max-time 1 -H 'Content-Type: application/json' \
  -d '{"messages":[{"role":"user","content":"long"}],"max_tokens":100000,"stream":true,"temperature":0.5}' \
  "$url/v1/chat/completions" >/dev/null 2>&1 || true
for _ in $(seq 1 300); do
  c "$url/metrics" | grep -q '^dsv4_requests_running 0$' && break
  sleep 0.1
done
c "$url/metrics" | grep -q '^dsv4_requests_running 0$' || fail "the disconnected client's request still runs"
echo "ok: a disconnected client's request is cancelled"

# The official OpenAI Node SDK.
if [ -f "$client/SKIP" ] || [ ! -d "$client/node_modules/openai" ]; then
  echo "note: OpenAI Node SDK not installed ($(cat "$client/SKIP" 2>/dev/null || echo 'no node_modules')): SDK part not run"
else
  cp "$src/client/real_server_test.mjs" "$client/"
  node "$client/real_server_test.mjs" "$url/v1" || fail "OpenAI Node SDK"
fi

# Bounded load: 200 requests, 16 at a time, none lost.
seq 1 200 | xargs -P 16 -I{} curl -sS --max-time 300 -o /dev/null -w '%{http_code}\n' -H 'Content-Type: application/json' \
  -d '{"prompt":"load {}","max_tokens":2,"temperature":0.5,"seed":{}}' "$url/v1/completions" >"$work/load.codes"
n200=$(grep -c '^200$' "$work/load.codes" || true)
[ "$n200" = 200 ] || fail "load: $n200 of 200 answered 200 ($(sort "$work/load.codes" | uniq -c | tr '\n' ' '))"
echo "ok: 200 of 200 requests under load"

# SIGTERM to rank 0: drain, then every rank exits 0.
rank0=""
for p in $(pgrep -f "$bin serve"); do
  if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=0'; then rank0=$p; fi
done
[ -n "$rank0" ] || fail "rank 0 not found"
t0=$(date +%s)
kill -TERM "$rank0"
rc=0
wait "$job" || rc=$?
trap - EXIT
[ "$rc" = 0 ] || fail "job exit status $rc after SIGTERM"
echo "ok: SIGTERM -> every rank exited 0 in $(( $(date +%s) - t0 )) s"
