#!/usr/bin/env bash
# test_cli_args.sh LFM2C — the command line's conventions: --help on stdout with exit 0 for every
# command, argument errors on stderr with exit 2, nonsensical values refused, --seed -1, the context
# enforced by run, quantize refusing to overwrite its input, --version.
set -u
bin=$1; pass=0; fail=0
ok()  { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
m=data/lfm2-tiny-dense-q4_0.gguf
cmds=$("$bin" --help | sed -n 's/^  \([a-z]*\) .*/\1/p')
[ "$(echo "$cmds" | wc -w)" -ge 16 ] && ok || bad "lfm2c --help lists the commands: $cmds"
for c in $cmds; do
  "$bin" $c --help >"$tmp/out" 2>"$tmp/err"; rc=$?
  [ $rc = 0 ] && [ -s "$tmp/out" ] && [ ! -s "$tmp/err" ] && grep -qi "usage" "$tmp/out" && ok || bad "$c --help: rc=$rc, stdout $(wc -c <"$tmp/out") bytes, stderr $(head -c 200 "$tmp/err")"
  "$bin" $c --no-such-flag >"$tmp/out" 2>"$tmp/err"; rc=$?
  [ $rc = 2 ] && [ -s "$tmp/err" ] && ok || bad "$c --no-such-flag: rc=$rc"
done
"$bin" >/dev/null 2>&1; [ $? = 2 ] && ok || bad "no command: exit not 2"
"$bin" frobnicate >/dev/null 2>&1; [ $? = 2 ] && ok || bad "unknown command: exit not 2"
"$bin" --version >"$tmp/out" && grep -q "^lfm2c [0-9]" "$tmp/out" && grep -q "^kernels .*scalar" "$tmp/out" && grep -q "^cuda: \(yes\|no\)" "$tmp/out" && ok || bad "--version: $(cat "$tmp/out")"
# --version says which kernel table runs and why (src/cpu/kernels_choose.c)
grep -q "^kernel choice: \(forced\|table\|timed\|cached\|only\|default\): .*; CPU: " "$tmp/out" && ok || bad "--version: no kernel choice: $(cat "$tmp/out")"
LFM2C_ISA=scalar "$bin" --version | grep -q "selected: scalar" && LFM2C_ISA=scalar "$bin" --version | grep -q "^kernel choice: forced: LFM2C_ISA=scalar" && ok || bad "--version with LFM2C_ISA=scalar"
# refused values: exit 2 and one line on stderr
refuse() {
  "$bin" "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
  [ $rc = 2 ] && [ "$(wc -l <"$tmp/err")" -le 2 ] && [ -s "$tmp/err" ] && ok || bad "$* : rc=$rc $(head -c 300 "$tmp/err")"
}
refuse run -m $m -p hi -n -5
refuse run -m $m -p hi -t 0
refuse run -m $m -p hi -c 0
refuse run -m $m -p hi -c -3
refuse run -m $m -p hi --temp nan
refuse run -m $m -p hi --temp -1
refuse run -m $m -p hi --top-p 0
refuse run -m $m -p hi --top-p 1.5
refuse run -m $m -p hi --top-k -1
refuse run -m $m -p hi --min-p 2
refuse run -m $m -p hi --repeat-penalty 0
refuse run -m $m -p hi --seed -7
refuse run -m $m -p hi -n abc
refuse run -m $m -p
refuse chat -m $m -c 0
refuse serve -m $m -c 0
refuse bench -m $m -b 0
refuse bench -m $m -r 0
refuse quantize $m $m q8_0
ln -s "$(pwd)/$m" "$tmp/alias.gguf"
refuse quantize $m "$tmp/alias.gguf" q8_0
cmp -s $m "$tmp/alias.gguf" && ok || bad "quantize touched its input"
# accepted: top-p 1, temp 0, --seed -1 (random: two runs differ at a high temperature)
"$bin" run -m $m -p hi -n 2 --top-p 1 --temp 0 >/dev/null 2>&1 && ok || bad "--top-p 1 --temp 0 refused"
a=$("$bin" run -m $m -p hi -n 24 --temp 5 --seed -1 2>/dev/null); b=$("$bin" run -m $m -p hi -n 24 --temp 5 --seed -1 2>/dev/null)
[ -n "$a" ] && [ "$a" != "$b" ] && ok || bad "--seed -1 is not random"
a=$("$bin" run -m $m -p hi -n 24 --temp 5 --seed 9 2>/dev/null); b=$("$bin" run -m $m -p hi -n 24 --temp 5 --seed 9 2>/dev/null)
[ "$a" = "$b" ] && ok || bad "--seed 9 is not reproducible"
# run enforces the context: above the trained context is an error; a full context says so
train=$("$bin" info -m $m 2>/dev/null | sed -n 's/.*, context \([0-9]*\)$/\1/p' | head -1)
if [ -n "$train" ]; then
  "$bin" run -m $m -p hi -c $((train + 1)) >/dev/null 2>"$tmp/err"; rc=$?
  [ $rc -ne 0 ] && grep -q "trained context" "$tmp/err" && ok || bad "-c above the trained context ($train): rc=$rc $(cat "$tmp/err")"
else
  bad "info does not show n_ctx_train"
fi
"$bin" run -m $m -p "hello there" -c 8 -n 50 --ignore-eos >/dev/null 2>"$tmp/err" && grep -q "context of 8 tokens is full" "$tmp/err" && ok || bad "a full context is not reported: $(cat "$tmp/err")"
echo "cli_args: $pass passed, $fail failed"
[ $fail -eq 0 ]
