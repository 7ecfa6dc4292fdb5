#!/usr/bin/env bash
# Driver of the distributed ctest suite (see CMakeLists.txt here): dist.sh COMMAND [ARGS].
# Environment: BIN = folder of the dsv4-<config> binaries, SRC = source root, WORK = scratch folder.
# Every job runs under `timeout`, so a hang fails the test instead of blocking the suite.
set -euo pipefail
: "${BIN:?}" "${SRC:?}" "${WORK:?}"
G=$SRC/tests/golden/tiny/golden
NPY=(python3 "$SRC/tests/distributed/npyutil.py")
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
GOLDEN="len1 len7 len130 len250 len300"
# Requests of the multi-request tests in submission order. Round-robin puts on 4 ranks: 0: len1 x3,
# 1: len7 len250, 2: x40 len300, 3: len130 (ranks go idle at different steps); on 2 ranks rank 0 holds
# four requests (len1 x40 x3 len300: 344 tokens, chunked, packed); on 1 rank three requests wait for
# one of the 4 slots; on 16 ranks 9 ranks stay idle throughout. x3 decodes greedily.
MULTI="len1 len7 x40 len130 x3 len250 len300"

tiny() { if [ "$1" = 1 ]; then echo "$BIN/dsv4-tiny"; else echo "$BIN/dsv4-tiny$1"; fi; }
ids() { case $1 in len*) echo "$G/$1/input_ids.npy" ;; *) echo "$WORK/req/$1.ids.npy" ;; esac; }
forced() { case $1 in len*) echo "$G/$1/tokens.npy" ;; x3) echo - ;; *) echo "$WORK/req/$1.forced.npy" ;; esac; }
job() {
  local np=$1
  shift
  timeout 180 "${MPIRUN[@]}" -np "$np" "$@"
}
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Byte comparison of request logits (and greedy tokens) against the 1-rank reference.
same() {
  local name=$1 got=$2
  cmp "$WORK/ref/$name.npy" "$got"
  if [ -f "$WORK/ref/$name.tokens.npy" ]; then cmp "$WORK/ref/$name.tokens.npy" "${got%.npy}.tokens.npy"; fi
  echo "  $name: identical to 1 rank"
}

# expect_fail NAME PATTERN CMD...: CMD must end non-zero (not by the 60 s timeout) within 30 s, its
# output must match PATTERN (grep -E), and no process of the job may survive it.
expect_fail() {
  local name=$1 pat=$2 t0 rc=0 dt
  shift 2
  t0=$(now)
  timeout 60 "$@" >"$WORK/$name.log" 2>&1 || rc=$?
  dt=$(elapsed "$t0")
  echo "$name: exit $rc after $dt s"
  grep -E "error|abort|MPI" "$WORK/$name.log" | head -5 | sed 's/^/  | /'
  [ "$rc" -ne 0 ] || { echo "FAIL: $name exited 0"; exit 1; }
  [ "$rc" -ne 124 ] || { echo "FAIL: $name hung (killed by timeout)"; exit 1; }
  awk -v t="$dt" 'BEGIN { exit !(t < 30) }' || { echo "FAIL: $name took $dt s (limit 30)"; exit 1; }
  grep -qE "$pat" "$WORK/$name.log" || { echo "FAIL: $name: output does not match /$pat/"; cat "$WORK/$name.log"; exit 1; }
}

# Fails if any process still runs with `marker` (a path unique to one test) on its command line.
no_survivors() {
  for _ in $(seq 50); do
    pgrep -f -- "$1" >/dev/null || return 0
    sleep 0.1
  done
  echo "FAIL: processes of the job survive it:"
  pgrep -af -- "$1"
  exit 1
}

cmd=$1
shift
case $cmd in
  convert) # convert N: the golden checkpoint for the N-rank plan
    rm -rf "$WORK/w$1"
    mkdir -p "$WORK"
    "$(tiny "$1")" convert --hf "$SRC/tests/golden/tiny/tiny_ckpt" -o "$WORK/w$1"
    ;;
  requests) # extra request files: x40 (teacher-forced, 8 decode steps), x3 (greedy), bad (token outside the vocabulary)
    rm -rf "$WORK/req"
    mkdir -p "$WORK/req"
    "${NPY[@]}" slice "$G/len250/input_ids.npy" "$WORK/req/x40.ids.npy" 100 140
    "${NPY[@]}" ids "$WORK/req/x40.forced.npy" 3 1 4 1 5 9 2 6 5
    "${NPY[@]}" ids "$WORK/req/x3.ids.npy" 11 1023 0
    "${NPY[@]}" ids "$WORK/req/bad.forced.npy" 5 6 7 8 1024 9 10
    ;;
  ref) # every request alone on 1 rank
    rm -rf "$WORK/ref"
    mkdir -p "$WORK/ref"
    for r in $GOLDEN x40 x3; do
      job 1 "$(tiny 1)" eval -w "$WORK/w1" --input-ids "$(ids $r)" --forced-tokens "$(forced $r)" \
        --logits-out "$WORK/ref/$r.npy" 2>&1 | tail -1
    done
    ;;
  golden) # golden N: every golden case alone on N ranks (DP: rank 0 holds it, the others idle)
    out=$WORK/golden$1
    rm -rf "$out"
    mkdir -p "$out"
    for c in $GOLDEN; do
      job "$1" "$(tiny "$1")" eval -w "$WORK/w$1" --input-ids "$(ids $c)" --forced-tokens "$(forced $c)" \
        --logits-out "$out/$c.npy" 2>&1 | tail -1
      same "$c" "$out/$c.npy"
    done
    ;;
  multi) # multi N [rr|tokens]: all MULTI requests in one job on N ranks, per-step logits checked too
    assign=${2:-rr}
    out=$WORK/multi$1-$assign
    rm -rf "$out"
    mkdir -p "$out"
    args=()
    outs=()
    for r in $MULTI; do
      args+=(--input-ids "$(ids $r)" --forced-tokens "$(forced $r)" --logits-out "$out/$r.npy")
      outs+=("$out/$r.npy")
    done
    job "$1" "$(tiny "$1")" eval -w "$WORK/w$1" "${args[@]}" --assign "$assign" --step-logits-out "$out/steps" \
      --report-json "$out/report.json" 2>&1 | tail -2
    for r in $MULTI; do same "$r" "$out/$r.npy"; done
    "${NPY[@]}" check-steps "$out/steps" "${outs[@]}"
    ;;
  refuse-world) # world size other than the plan's ranks: every rank stops, the job fails fast
    rm -f "$WORK/x.npy"
    expect_fail world_2_of_4 "rank [0-9]+: error: the plan is built for 4 ranks \(config tiny4\), the job has 2" \
      "${MPIRUN[@]}" -np 2 "$(tiny 4)" eval -w "$WORK/w4" --input-ids "$(ids len7)" --logits-out "$WORK/x.npy"
    expect_fail world_2_of_1 "rank [0-9]+: error: the plan is built for 1 ranks \(config tiny\), the job has 2" \
      "${MPIRUN[@]}" -np 2 "$(tiny 1)" eval -w "$WORK/w1" --input-ids "$(ids len7)" --logits-out "$WORK/x.npy"
    expect_fail world_16_of_4 "the plan is built for 4 ranks \(config tiny4\), the job has 16" \
      "${MPIRUN[@]}" -np 16 "$(tiny 4)" eval -w "$WORK/w4" --input-ids "$(ids len7)" --logits-out "$WORK/x.npy"
    [ ! -e "$WORK/x.npy" ] || { echo "FAIL: a refused job wrote output"; exit 1; }
    ;;
  refuse-rank-file) # weights of another rank / another plan / missing or corrupt: the rank is named
    rm -f "$WORK/y.npy"
    for v in swapped missing corrupt; do
      rm -rf "$WORK/w4-$v"
      mkdir -p "$WORK/w4-$v"
      for f in "$WORK/w4"/*; do ln -s "$f" "$WORK/w4-$v/"; done
      rm "$WORK/w4-$v/rank-00003-of-00004.dsv4w"
    done
    ln -s "$WORK/w4/rank-00002-of-00004.dsv4w" "$WORK/w4-swapped/rank-00003-of-00004.dsv4w"
    head -c 4096 "$WORK/w4/rank-00003-of-00004.dsv4w" >"$WORK/w4-corrupt/rank-00003-of-00004.dsv4w"
    run4() { echo "${MPIRUN[@]}" -np 4 "$(tiny 4)" eval -w "$1" --input-ids "$(ids len7)" --logits-out "$WORK/y.npy"; }
    expect_fail rankfile_swapped "rank 3: error: .*rank-00003-of-00004.dsv4w: rank: expected 3, got 2" $(run4 "$WORK/w4-swapped")
    expect_fail rankfile_missing "rank 3: error: .*rank-00003-of-00004.dsv4w: cannot open weights file" $(run4 "$WORK/w4-missing")
    expect_fail rankfile_corrupt "rank 3: error: .*rank-00003-of-00004.dsv4w: layout" $(run4 "$WORK/w4-corrupt")
    expect_fail other_plan "rank [0-9]+: error: .*plan hash: this binary is built for plan [0-9a-f]+ \(config tiny4\), the file was converted for plan [0-9a-f]+ \(config tiny2" $(run4 "$WORK/w2")
    no_survivors "$WORK/w4-"
    [ ! -e "$WORK/y.npy" ] || { echo "FAIL: a refused job wrote output"; exit 1; }
    ;;
  fail-input) # a bad forced token for request 2 is refused before any step (every rank reads every input),
              # and the job ends with nothing written
    out=$WORK/failinput
    rm -rf "$out" "$WORK/w4-failinput"
    mkdir -p "$out"
    ln -s "$WORK/w4" "$WORK/w4-failinput"
    args=()
    for i in 0 1 2 3; do
      f=$(forced len7)
      [ $i = 2 ] && f=$WORK/req/bad.forced.npy
      args+=(--input-ids "$(ids len7)" --forced-tokens "$f" --logits-out "$out/r$i.npy")
    done
    expect_fail fail_input "rank [0-9]+: error: .*bad.forced.npy: forced tokens\[4\] = 1024 is outside the vocabulary \[0, 1024\)" \
      "${MPIRUN[@]}" -np 4 "$(tiny 4)" eval -w "$WORK/w4-failinput" "${args[@]}"
    no_survivors "$WORK/w4-failinput"
    [ -z "$(ls "$out")" ] || { echo "FAIL: the failed job finished requests: $(ls "$out")"; exit 1; }
    ;;
  fail-kill) # kill -9 of one rank in the middle of decoding: the job ends non-zero within 30 s
    out=$WORK/failkill
    rm -rf "$out" "$WORK/w4-failkill" "$WORK/failkill-steps"
    mkdir -p "$out"
    ln -s "$WORK/w4" "$WORK/w4-failkill"
    args=()
    for i in 0 1 2 3 4 5 6 7; do args+=(--input-ids "$(ids len250)" --forced-tokens - --logits-out "$out/r$i.npy"); done
    timeout 120 "${MPIRUN[@]}" -np 4 "$(tiny 4)" eval -w "$WORK/w4-failkill" "${args[@]}" --decode-steps 250 \
      --step-logits-out "$WORK/failkill-steps" >"$WORK/fail_kill.log" 2>&1 &
    tpid=$!
    ranks=""
    for _ in $(seq 300); do  # the ranks are the children of mpirun, the child of timeout
      mpid=$(pgrep -P "$tpid" -x mpirun || true)
      [ -n "$mpid" ] && ranks=$(pgrep -P "$mpid" -f "w4-failkill" || true)
      [ "$(echo "$ranks" | wc -w)" = 4 ] && break
      sleep 0.1
    done
    [ "$(echo "$ranks" | wc -w)" = 4 ] || { echo "FAIL: did not find the 4 ranks (found: $ranks)"; kill "$tpid"; exit 1; }
    for _ in $(seq 600); do  # wait until the ranks decode (step files appear as steps end)
      [ -e "$WORK/failkill-steps/step-00003-rank-00000.npy" ] && break
      sleep 0.05
    done
    kill -0 "$tpid" 2>/dev/null || { echo "FAIL: the job ended before the kill"; cat "$WORK/fail_kill.log"; exit 1; }
    victim=$(echo $ranks | awk '{ print $3 }')
    t0=$(now)
    kill -9 "$victim"
    rc=0
    wait "$tpid" || rc=$?
    dt=$(elapsed "$t0")
    echo "kill -9 of pid $victim (one of ranks $(echo $ranks)): mpirun exit $rc after $dt s"
    tail -5 "$WORK/fail_kill.log" | sed 's/^/  | /'
    [ "$rc" -ne 0 ] || { echo "FAIL: the job exited 0"; exit 1; }
    [ "$rc" -ne 124 ] || { echo "FAIL: the job hung until the timeout"; exit 1; }
    awk -v t="$dt" 'BEGIN { exit !(t < 30) }' || { echo "FAIL: took $dt s (limit 30)"; exit 1; }
    [ -z "$(ls "$out")" ] || { echo "FAIL: the job finished requests before the kill: $(ls "$out")"; exit 1; }
    no_survivors "$WORK/w4-failkill"
    ;;
  demo-setup) # synthetic official-format checkpoint of the demo config, converted for 16 ranks
    rm -rf "$WORK/demo_hf" "$WORK/wdemo"
    mkdir -p "$WORK"
    "$BIN/dsv4-demo" synth --seed 7 -o "$WORK/demo_hf"
    "$BIN/dsv4-demo" convert --hf "$WORK/demo_hf" -o "$WORK/wdemo"
    ;;
  demo) # prompts -> greedy tokens on 16 ranks; 3 requests together equal each alone (same binary)
    out=$WORK/demo
    rm -rf "$out"
    mkdir -p "$out/alone"
    "${NPY[@]}" ids "$out/p0.npy" 0 9707 11 1917 0 128803
    "${NPY[@]}" ids "$out/p1.npy" $(seq 1000 1733 122000)  # 70 tokens: two prefill chunks of the 64-token slab
    "${NPY[@]}" ids "$out/p2.npy" 129279
    args=()
    for p in p0 p1 p2; do args+=(--input-ids "$out/$p.npy" --logits-out "$out/$p.npy.logits.npy"); done
    job 16 "$BIN/dsv4-demo" eval -w "$WORK/wdemo" "${args[@]}" --decode-steps 8 --report-json "$out/report.json" 2>&1 | tail -2
    for p in p0 p1 p2; do
      echo "  $p -> $("${NPY[@]}" tokens "$out/$p.npy.logits.tokens.npy" 129280 9)"
    done
    for p in p1 p2; do
      job 16 "$BIN/dsv4-demo" eval -w "$WORK/wdemo" --input-ids "$out/$p.npy" --logits-out "$out/alone/$p.npy" \
        --decode-steps 8 2>&1 | tail -1
      cmp "$out/alone/$p.npy" "$out/$p.npy.logits.npy"
      cmp "$out/alone/$p.tokens.npy" "$out/$p.npy.logits.tokens.npy"
      echo "  $p: together == alone"
    done
    ;;
  *)
    echo "unknown command $cmd"
    exit 2
    ;;
esac
