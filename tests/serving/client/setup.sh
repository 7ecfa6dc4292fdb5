#!/usr/bin/env bash
# Installs the OpenAI Node SDK for the serving tests into the build tree: setup.sh <source dir> <dest dir>.
# Offline-tolerant: when node/npm are missing or the registry cannot be reached, it writes the reason to
# <dest>/SKIP (the Node test then reports itself skipped with it) and exits 0. Any other failure is an error.
set -uo pipefail
mkdir -p "$2"
src=$(cd "$1" && pwd)
dst=$(cd "$2" && pwd)
rm -f "$dst/SKIP"
cp "$src/package.json" "$src/package-lock.json" "$src/openai_client_test.mjs" "$dst/"
skip() { echo "$1" > "$dst/SKIP"; echo "serving.npm_ci: SKIP: $1"; exit 0; }
command -v node >/dev/null || skip "node is not installed"
command -v npm >/dev/null || skip "npm is not installed"
if [ -f "$dst/node_modules/openai/package.json" ] && cmp -s "$src/package-lock.json" "$dst/node_modules/.package-lock.json.src"; then
  echo "serving.npm_ci: openai already installed"
  exit 0
fi
cd "$dst"
if ! out=$(timeout 150 npm ci --ignore-scripts --no-audit --no-fund --prefer-offline 2>&1); then
  echo "$out" | tail -5
  skip "npm ci failed (registry unreachable?): $(echo "$out" | grep -m1 -iE 'err|fail' || echo "exit status $?")"
fi
cp "$src/package-lock.json" node_modules/.package-lock.json.src
echo "serving.npm_ci: installed openai $(node -p 'require("./node_modules/openai/package.json").version')"
