#!/usr/bin/env bash
# Sets up a fresh machine and runs the main job on the embedded default config (demo: the real 129,280-token
# vocabulary with tiny dims, 16 ranks): build, a synthetic demo checkpoint converted once, then `dsv4 run`
# on 16 MPI ranks. The weights are random, so the generated text is gibberish; the point is the whole path
# (tokenizer, chat template, scheduler, 16-rank plan, sampling, streaming) and the timing report.
# Environment: DSV4_BUILD_DIR (default build), DSV4_DEMO_DIR (default $build/demo), DSV4_PROMPT.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install-deps.sh
build=${DSV4_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DDSV4_CONFIG=demo >/dev/null
cmake --build "$build" -j"$(nproc)" --target dsv4
"$build/dsv4" info

demo=${DSV4_DEMO_DIR:-$build/demo}
if [ ! -f "$demo/weights/.converted" ]; then
  rm -rf "$demo/hf" "$demo/weights"
  mkdir -p "$demo"
  "$build/dsv4" synth --seed 1 -o "$demo/hf"
  "$build/dsv4" convert --hf "$demo/hf" -o "$demo/weights"
  touch "$demo/weights/.converted"
fi

prompt=${DSV4_PROMPT:-介绍下北京故宫 (tell me about the Forbidden City in Beijing)}
mpirun --allow-run-as-root --oversubscribe -np 16 "$build/dsv4" run -w "$demo/weights" \
  --prompt "$prompt" --max-new-tokens 32 --json-report "$demo/report.json"
echo "run.sh: report written to $demo/report.json"
