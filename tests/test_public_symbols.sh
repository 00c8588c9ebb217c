#!/usr/bin/env bash
# test_public_symbols.sh — liblfm2c.a (beside the CLI in the build directory) defines no global
# symbol but the functions declared in include/lfm2c.h (tests/public/ links it beside clashing
# names), and liblfm2c.so exports exactly those, where the build made one.
# usage: bash test_public_symbols.sh PATH/TO/lfm2c
set -u
lib="$(dirname "$1")/liblfm2c.a"
here="$(cd "$(dirname "$0")" && pwd)"
[ -f "$lib" ] || { echo "FAIL no $lib"; echo "0 passed, 1 failed"; exit 1; }
declared=$(grep -oE '\blfm2c_[a-z0-9_]+[[:space:]]*\(' "$here/../include/lfm2c.h" | tr -d '( \t' | sort -u)
defined=$(nm -g --defined-only "$lib" | awk 'NF==3 && $2 ~ /^[TDBRVWtdbr]$/ {print $3}' | sort -u)
extra=$(comm -13 <(echo "$declared") <(echo "$defined"))
missing=$(comm -23 <(echo "$declared") <(echo "$defined"))
pass=0 fail=0
if [ -z "$extra" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL globals beyond the public API: $(echo $extra | head -c 400)"; fi
if [ -z "$missing" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL declared but not defined: $missing"; fi
echo "$(echo "$defined" | wc -l) global symbols, all declared in lfm2c.h"
so="$(dirname "$1")/liblfm2c.so"
if [ -e "$so" ]; then
  exported=$(nm -D --defined-only "$so" | awk 'NF==3 && $2 ~ /^[TDBRVWi]$/ {print $3}' | sort -u)
  if [ "$exported" = "$declared" ]; then pass=$((pass + 1))
  else fail=$((fail + 1)); echo "FAIL liblfm2c.so exports: beyond the API: $(comm -13 <(echo "$declared") <(echo "$exported") | head -c 400 | tr '\n' ' ')missing: $(comm -23 <(echo "$declared") <(echo "$exported") | tr '\n' ' ')"; fi
  echo "liblfm2c.so: $(echo "$exported" | wc -l) dynamic symbols"
fi
echo "$pass passed, $fail failed"
[ $fail = 0 ]
