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
  [ $rc = 2 ] && [ -s "$tmp/err" ] && [ "$(wc -l <"$tmp/err")" -le 2 ] && ok || bad "$c --no-such-flag: rc=$rc, $(wc -l <"$tmp/err") lines"
done
"$bin" >/dev/null 2>&1; [ $? = 2 ] && ok || bad "no command: exit not 2"
"$bin" frobnicate >/dev/null 2>&1; [ $? = 2 ] && ok || bad "unknown command: exit not 2"
"$bin" --version >"$tmp/out" && grep -q "^lfm2c [0-9]" "$tmp/out" && grep -q "^kernels .*scalar" "$tmp/out" && grep -q "^cuda: \(yes\|no\)" "$tmp/out" && grep -q "^vulkan: \(yes\|no\)" "$tmp/out" && ok || bad "--version: $(cat "$tmp/out")"
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
"$bin" run -m $m -p "hello there" --raw -c 8 -n 50 --ignore-eos >/dev/null 2>"$tmp/err" && grep -q "context of 8 tokens is full" "$tmp/err" && ok || bad "a full context is not reported: $(cat "$tmp/err")"
# issue 36: docs/USAGE.md's promise on exit codes, short errors, "did you mean", habits from ollama /
# llama.cpp (run MODEL, help), --host checks, the file type by name
refuse bench -m $m -t 0
refuse serve -m $m -np 0
refuse serve -m $m --prefill-chunk 0
refuse serve -m $m --prefill-chunk 70000
refuse serve -m $m --port 99999
refuse serve -m $m -ctk q4_0
refuse serve -m $m --host ::1
refuse serve -m $m --host not-an-address
refuse serve -m $m --host 0.0.0.0
refuse run -m $m -p hi --device tpu
refuse run -p hi
refuse bench -p 8
refuse run -hf 'not a repo' -p hi
"$bin" serve -m $m --bogus >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc = 2 ] && [ "$(wc -l <"$tmp/err")" = 1 ] && grep -q "unknown option '--bogus'.*serve --help" "$tmp/err" && ok || bad "serve --bogus: rc=$rc, $(wc -l <"$tmp/err") lines: $(head -3 "$tmp/err")"
"$bin" serve -m $m --prot 8080 >/dev/null 2>"$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "did you mean '--port'" "$tmp/err" && ok || bad "serve --prot: rc=$rc $(cat "$tmp/err")"
"$bin" run -m $m -p hi --tmep 1 >/dev/null 2>"$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "did you mean '--temp'" "$tmp/err" && ok || bad "run --tmep: rc=$rc $(cat "$tmp/err")"
"$bin" chat -m $m --sytem x >/dev/null 2>"$tmp/err" </dev/null; rc=$?
[ $rc = 2 ] && grep -q "did you mean '--system'" "$tmp/err" && ok || bad "chat --sytem: rc=$rc $(cat "$tmp/err")"
for typo in "tokenize --idss:--ids" "pull --ofline:--offline" "synth --prest:--preset" "bench -m $m --repetitons:--repetitions"; do
  "$bin" ${typo%%:*} >/dev/null 2>"$tmp/err"; rc=$?
  [ $rc = 2 ] && grep -q "did you mean '${typo##*:}'" "$tmp/err" && ok || bad "${typo%%:*}: rc=$rc $(cat "$tmp/err")"
done
"$bin" serv -m $m >/dev/null 2>"$tmp/err"; rc=$?
[ $rc = 2 ] && [ "$(wc -l <"$tmp/err")" = 1 ] && grep -q "did you mean 'serve'" "$tmp/err" && ok || bad "mistyped command: rc=$rc $(cat "$tmp/err")"
"$bin" help >"$tmp/out" 2>"$tmp/err" && grep -q "^  serve " "$tmp/out" && [ ! -s "$tmp/err" ] && ok || bad "lfm2c help"
"$bin" help run >"$tmp/out" 2>&1 && grep -q "usage: lfm2c run" "$tmp/out" && ok || bad "lfm2c help run: $(head -2 "$tmp/out")"
# -n 0 reads the prompt and generates nothing (no bogus "prompt is longer than the context")
"$bin" run -m $m -p "hello there" -n 0 >"$tmp/out" 2>"$tmp/err" && [ ! -s "$tmp/err" ] && ok || bad "run -n 0: $(cat "$tmp/err")"
# run MODEL [PROMPT]: the model first (a path here), as ollama run; the same answer as -m / -p
a=$("$bin" run -m $m -p hi -n 6 --temp 0 2>/dev/null); b=$("$bin" run $m hi -n 6 --temp 0 2>/dev/null)
[ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "run MODEL PROMPT differs from -m / -p: '$a' vs '$b'"
printf 'hi\n/exit\n' | "$bin" run $m -n 4 --temp 0 >"$tmp/out" 2>"$tmp/err" && [ -s "$tmp/out" ] && ok || bad "run MODEL without a prompt is not the chat: $(cat "$tmp/err")"
"$bin" run data/no-such-model.gguf hi >/dev/null 2>"$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "no such model file" "$tmp/err" && ok || bad "run with a missing model file: rc=$rc $(cat "$tmp/err")"
"$bin" run ./nothing-here hi >/dev/null 2>"$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "neither a model file nor a Hub repository" "$tmp/err" && ok || bad "run with a bad model name: rc=$rc $(cat "$tmp/err")"
# a non-loopback host with a key starts, and is told it exposes the server
"$bin" serve -m $m --host 0.0.0.0 --port 0 --api-key k >"$tmp/out" 2>"$tmp/err" & spid=$!
for _ in $(seq 100); do grep -q "^listening" "$tmp/out" 2>/dev/null && break; kill -0 $spid 2>/dev/null || break; sleep 0.1; done
kill $spid 2>/dev/null; wait $spid 2>/dev/null
grep -q "^listening on 0.0.0.0:" "$tmp/out" && grep -q "warning: --host 0.0.0.0 exposes the server" "$tmp/err" && ok || bad "--host 0.0.0.0 --api-key: $(cat "$tmp/err")"
# info names the file type; bench shows the quantization
"$bin" info -m $m | grep -q "^file type: *Q4_0$" && ok || bad "info file type: $("$bin" info -m $m | grep "file type")"
"$bin" bench -m $m -p 8 -n 4 -r 1 -t 1 2>/dev/null | grep -q "^| lfm2 .* Q4_0 |" && ok || bad "bench does not show the quantization"
"$bin" bench -m $m -p 8 -n 0 -r 1 -t 1 -o json 2>/dev/null | grep -q '"file_type": "Q4_0"' && ok || bad "bench -o json has no file_type"
# an output that is not a regular file (a folder, a FIFO: /dev/null as root) is refused, left as it was
mkdir "$tmp/outdir"; mkfifo "$tmp/fifo"
for o in "$tmp/outdir" "$tmp/fifo"; do
  "$bin" synth --preset lfm2-350m --layers 2 --hidden 64 --ff 128 --vocab 400 --type q8_0 -o "$o" >/dev/null 2>"$tmp/err"; rc=$?
  [ $rc != 0 ] && grep -q "not a regular file" "$tmp/err" && { [ -d "$tmp/outdir" ] && [ -p "$tmp/fifo" ]; } && [ ! -e "$o.tmp" ] && ok ||
    bad "synth -o $(basename "$o"): rc=$rc $(head -c 200 "$tmp/err")"
done
echo "cli_args: $pass passed, $fail failed"
[ $fail -eq 0 ]
