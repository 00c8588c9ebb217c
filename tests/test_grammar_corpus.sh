#!/bin/bash
# test_grammar_corpus.sh — the schema compiler against a validator: for every schema of
# tests/grammar/schemas/ (hand-written in the shapes zod 4, Pydantic v2, TypeBox and OpenAI's
# docs emit) and those zod 4 emits right now (tests/grammar/gen_zod.mjs), test_grammar
# --generate walks the automaton to random complete outputs; ajv (+ ajv-formats) must accept
# every one (tests/grammar/validate.mjs). Known-invalid instances (tests/grammar/negative.jsonl,
# each confirmed invalid by ajv) must be refused by the automaton. Then a fixed sample of
# JSONSchemaBench's real-world schemas (tests/grammar/jsonschemabench/) through the corpus harness
# (tests/grammar/jsonschemabench.mjs): no invalid answer, no dead end, no crash, and the coverage
# not under GRAMMAR_CORPUS_MIN_COVERAGE (default 90%).
# usage: bash test_grammar_corpus.sh PATH/TO/lfm2c   (test_grammar is taken from the same dir)
set -u
here=$(cd "$(dirname "$0")" && pwd)
gen="$(cd "$(dirname "$1")" && pwd)/test_grammar"
N=${GRAMMAR_CORPUS_N:-25}
for tool in node npm; do
  command -v $tool >/dev/null || { echo "FAIL $tool not found"; echo "0 passed, 1 failed"; exit 1; }
done
[ -x "$gen" ] || { echo "FAIL $gen not built"; echo "0 passed, 1 failed"; exit 1; }
if [ ! -d "$here/grammar/node_modules/ajv-formats" ] || [ ! -d "$here/grammar/node_modules/zod" ] ||
   [ ! -d "$here/grammar/node_modules/ajv-draft-04" ]; then
  (cd "$here/grammar" && timeout 300 npm install --no-audit --no-fund --loglevel=error >/dev/null 2>&1) ||
    { echo "FAIL npm install of ajv / zod"; echo "0 passed, 1 failed"; exit 1; }
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/out" "$tmp/zod"
pass=0; fail=0
count() { # adds the "N passed, M failed" line of a step's output
  local line; line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$1" | tail -1)
  if [ -z "$line" ]; then fail=$((fail + 1)); echo "FAIL $2 gave no summary"; cat "$1"; return; fi
  pass=$((pass + $(echo "$line" | cut -d' ' -f1))); fail=$((fail + $(echo "$line" | cut -d' ' -f3)))
  grep -v -E '^[0-9]+ passed, [0-9]+ failed$' "$1"
}
(cd "$here/grammar" && node gen_zod.mjs "$tmp/zod") || { echo "FAIL zod schema generation"; fail=$((fail + 1)); }
"$gen" --generate "$N" "$tmp/out" "$here"/grammar/schemas/*.json "$tmp"/zod/*.json > "$tmp/gen.txt" 2>&1
count "$tmp/gen.txt" generator
"$gen" --reject "$here/grammar/negative.jsonl" "$here/grammar/schemas" > "$tmp/neg.txt" 2>&1
count "$tmp/neg.txt" negatives
(cd "$here/grammar" && node validate.mjs "$tmp/out" "$here/grammar/schemas" "$tmp/zod") > "$tmp/val.txt" 2>&1
count "$tmp/val.txt" validator
(cd "$here/grammar" && node jsonschemabench.mjs --bin "$gen" --corpus jsonschemabench --n 5 --expect-clean \
   --min-coverage "${GRAMMAR_CORPUS_MIN_COVERAGE:-90}") > "$tmp/jsb.txt" 2>&1
jsb=$?
grep -E '^(INVALID|DEADEND|CRASH|TIMEOUT|FAIL)|^schemas:' -A1 "$tmp/jsb.txt"
if [ "$jsb" -eq 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL JSONSchemaBench sample"; fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
