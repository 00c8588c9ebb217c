#!/bin/bash
# test_quantize_cli.sh PATH/TO/lfm2c — `lfm2c quantize` and `lfm2c synth` from the command line:
# reference-identical output, summary and --stats, one-line errors and no output left on failure.
bin=$(readlink -f "${1:?usage: test_quantize_cli.sh PATH/TO/lfm2c}")
cd "$(dirname "$0")"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
check() { if eval "$2"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: $1" >&2; fi; }
# expect_error NAME OUTFILE CMD...: non-zero exit, a single "lfm2c: " line on stderr, no OUTFILE(.tmp)
expect_error() {
  local name=$1 out=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  check "$name: exit status non-zero" "[ $rc -ne 0 ]"
  check "$name: one-line message" "[ \$(wc -l <\"$tmp/err\") -eq 1 ] && grep -q '^lfm2c: ' \"$tmp/err\""
  check "$name: no output left" "[ ! -e \"$out\" ] && [ ! -e \"$out.tmp\" ]"
}

"$bin" quantize data/lfm2-tiny-dense-f32.gguf "$tmp/a.gguf" q8_0 -t 2 >"$tmp/out" 2>"$tmp/err"
check "quantize q8_0 succeeds" "[ $? -eq 0 ]"
check "q8_0 output identical to the reference" "cmp -s \"$tmp/a.gguf\" data/lfm2-tiny-dense-q8_0.gguf"
check "summary names tensors and types" "grep -q '56 tensors (F32: 21, Q8_0: 35)' \"$tmp/out\""
check "summary gives sizes" "grep -q 'MB ->' \"$tmp/out\""

"$bin" quantize data/lfm2-tiny-moe-f32.gguf "$tmp/b.gguf" Q4_0 --stats >"$tmp/out" 2>&1
check "quantize Q4_0 --stats succeeds" "[ $? -eq 0 ]"
check "Q4_0 output identical to the reference" "cmp -s \"$tmp/b.gguf\" data/lfm2-tiny-moe-q4_0.gguf"
check "--stats lists every tensor" "[ \$(grep -c '^blk\.\|^token_embd' \"$tmp/out\") -eq 64 ]"
check "--stats gives an error for quantized tensors" "grep 'blk.2.ffn_up_exps.weight' \"$tmp/out\" | grep -q 'Q4_0.*e-0'"

"$bin" quantize data/lfm2-tiny-moe-q8_0.gguf "$tmp/c.gguf" q5_k_m >"$tmp/out" 2>&1
check "requantize a quantized input" "[ $? -eq 0 ] && [ -s \"$tmp/c.gguf\" ]"

expect_error "unknown type" "$tmp/x.gguf" "$bin" quantize data/lfm2-tiny-dense-f32.gguf "$tmp/x.gguf" Q7_X
check "unknown type lists the types" "grep -q 'Q4_K_M' \"$tmp/err\""
expect_error "missing input" "$tmp/x.gguf" "$bin" quantize "$tmp/nonexistent.gguf" "$tmp/x.gguf" Q8_0
head -c 100000 data/lfm2-tiny-dense-f32.gguf >"$tmp/trunc.gguf"
expect_error "truncated input" "$tmp/x.gguf" "$bin" quantize "$tmp/trunc.gguf" "$tmp/x.gguf" Q8_0
printf 'not a gguf at all' >"$tmp/junk.gguf"
expect_error "not a GGUF" "$tmp/x.gguf" "$bin" quantize "$tmp/junk.gguf" "$tmp/x.gguf" Q8_0
expect_error "missing arguments" "$tmp/x.gguf" "$bin" quantize data/lfm2-tiny-dense-f32.gguf
expect_error "unwritable output" "$tmp/nodir/x.gguf" "$bin" quantize data/lfm2-tiny-dense-f32.gguf "$tmp/nodir/x.gguf" Q8_0

# synth: a scaled-down 24B-A2B, then quantize it
"$bin" synth --preset lfm2-24b-a2b --type f16 -o "$tmp/s.gguf" --hidden 128 --layers 8 --attn-layers 2,6 \
  --heads 2 --kv-heads 1 --ff 256 --experts 8 --experts-used 2 --expert-ff 64 --vocab 512 --seed 3 >"$tmp/out" 2>&1
check "synth succeeds" "[ $? -eq 0 ] && [ -s \"$tmp/s.gguf\" ]"
check "synth summary" "grep -q 'lfm2moe F16, 8 layers (2 attention)' \"$tmp/out\""
"$bin" quantize "$tmp/s.gguf" "$tmp/sq.gguf" Q4_K_S >"$tmp/out" 2>&1
check "synth output quantizes (rows of 128 fall back to Q5_0)" "[ $? -eq 0 ] && grep -q 'Q5_0' \"$tmp/out\""
expect_error "synth unknown preset" "$tmp/y.gguf" "$bin" synth --preset lfm2-99b --type q8_0 -o "$tmp/y.gguf"
expect_error "synth unknown type" "$tmp/y.gguf" "$bin" synth --preset lfm2-350m --type q9 -o "$tmp/y.gguf"
expect_error "synth bad heads" "$tmp/y.gguf" "$bin" synth --preset lfm2-350m --type q8_0 -o "$tmp/y.gguf" --heads 3
expect_error "synth bad attention layers" "$tmp/y.gguf" "$bin" synth --preset lfm2-350m -o "$tmp/y.gguf" --attn-layers 2,x

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
