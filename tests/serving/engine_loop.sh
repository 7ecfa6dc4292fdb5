#!/usr/bin/env bash
# The engine loop through the GenerationBackend interface (hidden `dsv4 loop-check`), and `dsv4 run`
# against it. Usage: engine_loop.sh MODE BIN_DIR SRC WORK
#   tiny1   16 seeded requests on dsv4-tiny (1 rank): each alone == all 16 together (tokens, logprobs)
#   tiny16  the same on dsv4-tiny16 (16 ranks, mpirun --oversubscribe)
#   run     dsv4-demo1 (real vocabulary, 1 rank): `run --prompt P --seed S --temperature T` prints the
#           same text as one backend request with that seed (same sampler stream); SIGTERM mid-run
#           exits 143 with a complete report marked interrupted
set -euo pipefail
mode=$1 bin=$2 src=$3 work=$4
mkdir -p "$work"
mpi=(timeout 240 mpirun --allow-run-as-root --oversubscribe)
convert() {  # convert BINARY OUT: the golden tiny checkpoint for BINARY's plan
  [ -f "$2/.done" ] && return
  rm -rf "$2"
  "$1" convert --hf "$src/tests/golden/tiny/tiny_ckpt" -o "$2" >/dev/null
  touch "$2/.done"
}
case $mode in
  tiny1)
    convert "$bin/dsv4-tiny" "$work/w1"
    timeout 240 "$bin/dsv4-tiny" loop-check -w "$work/w1" --requests 16 --max-new-tokens 6 --threads 1 | tee "$work/tiny1.out"
    grep -q "^ok: 16 of 16" "$work/tiny1.out"
    ;;
  tiny16)
    convert "$bin/dsv4-tiny16" "$work/w16"
    "${mpi[@]}" -np 16 "$bin/dsv4-tiny16" loop-check -w "$work/w16" --requests 16 --max-new-tokens 6 | tee "$work/tiny16.out"
    grep -q "^ok: 16 of 16" "$work/tiny16.out"
    # The same requests on 1 rank (serving.engine_loop_tiny1, run first) gave the same tokens.
    diff <(grep -o "^request.*tokens [0-9a-f]*" "$work/tiny1.out") <(grep -o "^request.*tokens [0-9a-f]*" "$work/tiny16.out") ||
      { echo "FAIL: tokens on 16 ranks differ from 1 rank"; exit 1; }
    echo "ok: 16 ranks == 1 rank"
    ;;
  run)
    if [ ! -f "$work/d1/.done" ]; then
      rm -rf "$work/d1hf" "$work/d1"
      "$bin/dsv4-demo1" synth --seed 3 -o "$work/d1hf" >/dev/null
      "$bin/dsv4-demo1" convert --hf "$work/d1hf" -o "$work/d1" >/dev/null
      touch "$work/d1/.done"
    fi
    for t in 0 0.9; do
      "$bin/dsv4-demo1" run -w "$work/d1" --threads 1 --prompt "Hello, world!" --seed 5 --temperature $t --max-new-tokens 8 \
        >"$work/run-$t.out" 2>"$work/run-$t.err"
      "$bin/dsv4-demo1" loop-check -w "$work/d1" --threads 1 --chat "Hello, world!" --seed 5 --temperature $t --max-new-tokens 8 \
        >"$work/loop-$t.out" 2>"$work/loop-$t.err"
      cmp "$work/run-$t.out" "$work/loop-$t.out" || { echo "FAIL: T=$t: run printed [$(cat "$work/run-$t.out")], the loop [$(cat "$work/loop-$t.out")]"; exit 1; }
      [ -s "$work/run-$t.out" ] || { echo "FAIL: no text"; exit 1; }
      echo "ok: T=$t: run == loop: $(head -c 200 "$work/run-$t.out")"
    done
    # SIGTERM mid-generation: exit 143 at a step boundary, a complete report marked interrupted.
    rm -f "$work/int.json"
    "$bin/dsv4-demo1" run -w "$work/d1" --threads 1 --prompt "Hello" --temperature 0.9 --max-new-tokens 1000 \
      --json-report "$work/int.json" >"$work/int.out" 2>"$work/int.err" &
    pid=$!
    for _ in $(seq 600); do [ -s "$work/int.out" ] && break; sleep 0.05; done
    kill -TERM $pid
    rc=0; wait $pid || rc=$?
    [ $rc = 143 ] || { echo "FAIL: SIGTERM: exit $rc (expected 143)"; cat "$work/int.err"; exit 1; }
    python3 - "$work/int.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["interrupted"] is True, r
assert r["per_request"][0]["stop"] == "cancelled", r["per_request"]
print(f"ok: SIGTERM: exit 143, report marked interrupted after {r['generated_tokens']} tokens")
PY
    ;;
  *)
    echo "unknown mode $mode"
    exit 2
    ;;
esac
