#!/usr/bin/env bash
# test_cli.sh LFM2C — the run / info / logits commands on every fixture, and their errors.
set -u
bin=$1; pass=0; fail=0
ok()   { pass=$((pass+1)); }
bad()  { fail=$((fail+1)); echo "FAIL: $*"; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for m in data/lfm2-*.gguf; do
  "$bin" info -m "$m" >"$tmp/info" 2>&1 && grep -q "layer plan" "$tmp/info" && ok || bad "info $m"
  "$bin" run -m "$m" -p "The quick brown fox" -n 8 --temp 0 >"$tmp/run" 2>&1 && ok || bad "run $m: $(tail -1 "$tmp/run")"
  "$bin" run -m "$m" -p "Hello" -n 8 --temp 0.8 --top-k 40 --top-p 0.9 --min-p 0.05 --repeat-penalty 1.1 --seed 7 >"$tmp/run" 2>&1 && ok || bad "run sampling $m"
  "$bin" logits -m "$m" --tokens 1,498,582 -o "$tmp/l.f32" >/dev/null 2>&1 && [ -s "$tmp/l.f32" ] && ok || bad "logits $m"
done
# same seed, same output; greedy is deterministic across thread counts
a=$("$bin" run -m data/lfm2-tiny-moe-q4_0.gguf -p "Hi" -n 12 --temp 0.9 --seed 3 2>/dev/null)
b=$("$bin" run -m data/lfm2-tiny-moe-q4_0.gguf -p "Hi" -n 12 --temp 0.9 --seed 3 -t 1 2>/dev/null)
[ "$a" == "$b" ] && ok || bad "seeded sampling not reproducible"
# errors: one line, non-zero exit, no crash
expect_err() { # what, pattern, command...
  local what=$1 pat=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
  if [ $rc -ge 1 ] && [ $rc -le 127 ] && grep -q "$pat" "$tmp/err"; then ok; else bad "$what: rc=$rc $(cat "$tmp/err")"; fi
}
expect_err "missing file" "cannot open" "$bin" run -m "$tmp/none.gguf" -p x
echo "plain text" > "$tmp/text.gguf"
expect_err "not gguf" "not a GGUF" "$bin" info -m "$tmp/text.gguf"
head -c 100000 data/lfm2-tiny-dense-f32.gguf > "$tmp/trunc.gguf"
expect_err "truncated" "truncated" "$bin" run -m "$tmp/trunc.gguf" -p x
expect_err "prompt too long" "longer than the context" "$bin" run -m data/lfm2-tiny-dense-f32.gguf -p "a b c d e f g h i j k l m n o p" -c 8
expect_err "bad ids" "out of range" "$bin" logits -m data/lfm2-tiny-dense-f32.gguf --tokens 1,999999 -o "$tmp/x"
expect_err "bad flag" "unknown option" "$bin" run -m data/lfm2-tiny-dense-f32.gguf --bogus
expect_err "bad number" "expects an integer" "$bin" run -m data/lfm2-tiny-dense-f32.gguf -p x -n abc
expect_err "unknown command" "unknown command" "$bin" frobnicate
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
