#!/bin/sh
# -DDSV4_CONFIG accepts a shipped name, a path relative to the source tree (as users type it from the
# checkout: config/tiny16.json), and a path relative to the directory cmake runs in; anything else is a
# clear configure error. Configure only (no build): a few seconds.
set -eu
src=$(cd "$1" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
check() {  # check <cwd> <DSV4_CONFIG> <expected config file>
  rm -rf "$tmp/b"
  out=$(cd "$2" && cmake -S "$src" -B "$tmp/b" -DDSV4_CONFIG="$1" -DDSV4_TEST_CONFIGS=OFF 2>&1) || {
    echo "FAIL: DSV4_CONFIG=$1 (cwd $2) did not configure:"; echo "$out"; exit 1; }
  echo "$out" | grep -qF "dsv4: config file $3," || { echo "FAIL: DSV4_CONFIG=$1 (cwd $2): expected $3:"; echo "$out"; exit 1; }
  echo "ok: DSV4_CONFIG=$1 (cwd $2) -> $3"
}
check config/tiny16.json "$src" "$src/config/tiny16.json"
check config/tiny16.json "$tmp" "$src/config/tiny16.json"
cp "$src/config/tiny.json" "$tmp/mine.json"
check mine.json "$tmp" "$tmp/mine.json"
rm -rf "$tmp/b"
if out=$(cd "$tmp" && cmake -S "$src" -B "$tmp/b" -DDSV4_CONFIG=nope.json -DDSV4_TEST_CONFIGS=OFF 2>&1); then
  echo "FAIL: DSV4_CONFIG=nope.json configured"; exit 1
fi
echo "$out" | grep -q "DSV4_CONFIG=nope.json: not a shipped config name" || { echo "FAIL: unclear error:"; echo "$out"; exit 1; }
echo "ok: DSV4_CONFIG=nope.json is a clear error"
