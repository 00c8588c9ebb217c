#!/bin/bash
# test_lora_cli.sh PATH/TO/lfm2c — LoRA adapters from the command line: adapters written by
# `lfm2c synth --lora-for` for the fixtures (GGUF) and by tests/lora/peft_from_gguf.py in PEFT's
# layout (stdlib Python), applied at run time with --lora / --lora-scaled, converted
# (`convert PEFT_DIR --base`), merged (`convert BASE --lora`); run time == merged model; scale 0
# == no adapter; bad adapters rejected with one-line messages (PEFT's partial adapters and
# hostile configs: test_lora_peft.sh).
bin=$(readlink -f "${1:?usage: test_lora_cli.sh PATH/TO/lfm2c}")
cd "$(dirname "$0")"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
check() { if eval "$2"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: $1" >&2; fi; }
T=1,32,45,67,300,301,302,7,6,100,101,102
# maxdiff A B: max |a - b| over two float32 files of the same size (stdlib only)
maxdiff() {
  python3 -c '
import array, sys
a, b = array.array("f"), array.array("f")
a.frombytes(open(sys.argv[1], "rb").read()); b.frombytes(open(sys.argv[2], "rb").read())
assert len(a) == len(b) and len(a) > 0
print(max(abs(x - y) for x, y in zip(a, b)))' "$1" "$2"
}
# meandiff A B: mean |a - b|
meandiff() {
  python3 -c '
import array, sys
a, b = array.array("f"), array.array("f")
a.frombytes(open(sys.argv[1], "rb").read()); b.frombytes(open(sys.argv[2], "rb").read())
print(sum(abs(x - y) for x, y in zip(a, b)) / len(a))' "$1" "$2"
}
le() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)" "$1" "$2"; }
logits() { local out=$1; shift; "$bin" logits -t 2 --tokens $T -o "$out" "$@" >/dev/null 2>"$tmp/lerr"; }
expect_error() {   # NAME PATTERN CMD...: non-zero exit, one "lfm2c: " line matching PATTERN
  local name=$1 pat=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  check "$name: fails" "[ $rc -ne 0 ]"
  check "$name: one-line message" "[ \$(wc -l <\"$tmp/err\") -eq 1 ] && grep -q '^lfm2c: ' \"$tmp/err\""
  check "$name: says '$pat' (got: $(head -c 300 "$tmp/err"))" "grep -q -- \"$pat\" \"$tmp/err\""
}

# ---- run time == merged, for the F32 fixtures (the fast path's float rounding only) ----------
for m in lfm2-tiny-dense-f32 lfm2-tiny-moe-f32; do
  base=data/$m.gguf ad=$tmp/$m.lora.gguf
  "$bin" synth --lora-for "$base" -o "$ad" --rank 4 --seed 7 >"$tmp/out" 2>&1
  check "$m: synth --lora-for" "[ $? -eq 0 ] && grep -q 'LoRA adapter' \"$tmp/out\""
  logits "$tmp/base.f32" -m "$base"
  logits "$tmp/lora.f32" -m "$base" --lora "$ad"
  logits "$tmp/lora1.f32" -m "$base" --lora "$ad" --one-by-one
  logits "$tmp/zero.f32" -m "$base" --lora "$ad:0"
  logits "$tmp/half.f32" -m "$base" --lora-scaled "$ad" 0.5
  logits "$tmp/halves.f32" -m "$base" --lora "$ad:0.25" --lora "$ad:0.25"
  d=$(maxdiff "$tmp/base.f32" "$tmp/lora.f32")
  check "$m: the adapter changes the logits ($d)" "le 0.5 $d"
  check "$m: scale 0 == base exactly" "cmp -s \"$tmp/base.f32\" \"$tmp/zero.f32\""
  check "$m: one token at a time == batch" "le $(maxdiff "$tmp/lora.f32" "$tmp/lora1.f32") 1e-4"
  check "$m: two adapters at 0.25 == one at 0.5" "le $(maxdiff "$tmp/half.f32" "$tmp/halves.f32") 1e-4"
  check "$m: scale 0.5 is between" "! cmp -s \"$tmp/half.f32\" \"$tmp/lora.f32\" && ! cmp -s \"$tmp/half.f32\" \"$tmp/base.f32\""
  "$bin" convert "$base" --lora "$ad" -o "$tmp/merged.gguf" >"$tmp/out" 2>&1
  check "$m: convert --lora merges" "[ $? -eq 0 ] && grep -q 'merged 1 adapter' \"$tmp/out\""
  logits "$tmp/merged.f32" -m "$tmp/merged.gguf"
  d=$(maxdiff "$tmp/merged.f32" "$tmp/lora.f32")
  check "$m: run time == merged within 1e-3 ($d)" "le $d 1e-3"
  logits "$tmp/ref.f32" -m "$base" --lora "$ad" --reference
  check "$m: --reference with the adapter == fast ($(maxdiff "$tmp/ref.f32" "$tmp/lora.f32"))" "le $(maxdiff "$tmp/ref.f32" "$tmp/lora.f32") 1e-3"

  # PEFT's layout: the same A and B under PEFT's names
  python3 lora/peft_from_gguf.py "$ad" "$tmp/peft"
  logits "$tmp/peft.f32" -m "$base" --lora "$tmp/peft"
  check "$m: PEFT folder == GGUF adapter" "cmp -s \"$tmp/peft.f32\" \"$tmp/lora.f32\""
  python3 lora/peft_from_gguf.py "$ad" "$tmp/peft-rs" --rslora
  logits "$tmp/peft-rs.f32" -m "$base" --lora "$tmp/peft-rs"
  check "$m: use_rslora (alpha / sqrt(r)) == the same scale" "le $(maxdiff "$tmp/peft-rs.f32" "$tmp/lora.f32") 1e-4"
  "$bin" convert "$tmp/peft-rs" --base "$base" -o "$tmp/conv.gguf" >"$tmp/out" 2>&1
  check "$m: convert PEFT -> GGUF" "[ $? -eq 0 ] && grep -q 'adapted matrices' \"$tmp/out\""
  logits "$tmp/conv.f32" -m "$base" --lora "$tmp/conv.gguf"
  check "$m: the converted adapter == the PEFT folder" "le $(maxdiff "$tmp/conv.f32" "$tmp/lora.f32") 1e-4"
  rm -rf "$tmp/peft" "$tmp/peft-rs"
done

# ---- quantized bases: merge = dequantize, add, requantize to the same type --------------------
# tolerance: the merged file's logits differ from the run-time adapter's on average by at most
# twice what quantizing the base itself moves them (its logits vs its F32 masters'), plus 0.1 (a
# mean: on these random MoE fixtures an expert near-tie flips now and then, spec of the goldens)
for q in dense-q8_0 dense-q4_0 moe-q8_0 moe-q4_0; do
  base=data/lfm2-tiny-$q.gguf f32=data/lfm2-tiny-${q%-*}-f32.gguf ad=$tmp/$q.lora.gguf
  "$bin" synth --lora-for "$base" -o "$ad" --rank 4 --seed 9 >/dev/null 2>&1
  "$bin" convert "$base" --lora "$ad" -o "$tmp/merged.gguf" >/dev/null 2>&1
  check "$q: merge succeeds" "[ $? -eq 0 ]"
  check "$q: merged file keeps the base's size" "[ \$(stat -c %s \"$tmp/merged.gguf\") -eq \$(stat -c %s \"$base\") ]"
  logits "$tmp/lora.f32" -m "$base" --lora "$ad"
  logits "$tmp/merged.f32" -m "$tmp/merged.gguf"
  logits "$tmp/base.f32" -m "$base"
  logits "$tmp/f32.f32" -m "$f32"
  dq=$(meandiff "$tmp/base.f32" "$tmp/f32.f32") dm=$(meandiff "$tmp/merged.f32" "$tmp/lora.f32")
  check "$q: merged vs run time (mean) $dm <= 2 x quantization $dq + 0.1" "le $dm \$(python3 -c 'print(2 * $dq + 0.1)')"
  echo "$q: mean |merged - run time| $dm (max $(maxdiff "$tmp/merged.f32" "$tmp/lora.f32")), base quantization: mean $dq (max $(maxdiff "$tmp/base.f32" "$tmp/f32.f32"))"
done

# ---- run, bench with an adapter --------------------------------------------------------------
ad=$tmp/lfm2-tiny-dense-f32.lora.gguf
"$bin" run -m data/lfm2-tiny-dense-f32.gguf -p "Hello" -n 4 --temp 0 --lora "$ad" >"$tmp/out" 2>&1
check "run --lora" "[ $? -eq 0 ]"
printf 'Hello there\nSecond turn\n/reset\nHello there\n' | "$bin" chat -m data/lfm2-tiny-dense-f32.gguf -n 6 --temp 0 --lora "$ad" >"$tmp/chat_a" 2>/dev/null
check "chat --lora" "[ $? -eq 0 ] && [ -s \"$tmp/chat_a\" ]"
printf 'Hello there\n' | "$bin" chat -m data/lfm2-tiny-dense-f32.gguf -n 6 --temp 0 >"$tmp/chat_b" 2>/dev/null
check "chat --lora answers differently from the base" "! cmp -s \"$tmp/chat_a\" \"$tmp/chat_b\""
"$bin" run -m data/lfm2-tiny-dense-f32.gguf -p "Hello" -n 4 --temp 0 --lora "$tmp/none.gguf" >/dev/null 2>"$tmp/err"
check "run --lora with a missing adapter fails in one line" "[ $? -ne 0 ] && [ \$(wc -l <\"$tmp/err\") -eq 1 ]"
"$bin" bench -m data/lfm2-tiny-dense-f32.gguf -p 16 -n 4 -r 1 -t 1 --lora "$ad" >"$tmp/out" 2>&1
check "bench --lora" "[ $? -eq 0 ] && grep -q 'with 1 LoRA adapter' \"$tmp/out\" && grep -q 'tg4' \"$tmp/out\""

# ---- bad adapters ------------------------------------------------------------------------------
dense=data/lfm2-tiny-dense-f32.gguf moe=data/lfm2-tiny-moe-f32.gguf
mad=$tmp/lfm2-tiny-moe-f32.lora.gguf
expect_error "adapter of another architecture" "adapts architecture 'lfm2moe'" "$bin" logits --tokens $T -o "$tmp/x" -m "$dense" --lora "$mad"
"$bin" synth --lora-for data/lfm2-kq-dense-q4_k_m.gguf -o "$tmp/kq.lora.gguf" --rank 2 --targets attn_q >/dev/null 2>&1
expect_error "adapter of another base (shapes)" "has shape" "$bin" logits --tokens $T -o "$tmp/x" -m "$dense" --lora "$tmp/kq.lora.gguf"
expect_error "a model is no adapter" "is not a LoRA adapter" "$bin" logits --tokens $T -o "$tmp/x" -m "$dense" --lora "$dense"
expect_error "missing file" "cannot open adapter" "$bin" logits --tokens $T -o "$tmp/x" -m "$dense" --lora "$tmp/none.gguf"
P="python3 lora/peft_from_gguf.py $mad"
pre=base_model.model.model.layers
# a module without lora_B, or without either tensor, is unchanged (PEFT starts B at zero)
$P "$tmp/b1" --drop $pre.0.conv.in_proj.lora_B.weight
$P "$tmp/b5" --drop $pre.0.conv.in_proj.lora_A.weight --drop $pre.0.conv.in_proj.lora_B.weight
logits "$tmp/b1.f32" -m "$moe" --lora "$tmp/b1"
logits "$tmp/b5.f32" -m "$moe" --lora "$tmp/b5"
check "PEFT: lora_A alone == neither (the module unchanged)" "[ -s \"$tmp/b1.f32\" ] && cmp -s \"$tmp/b1.f32\" \"$tmp/b5.f32\""
$P "$tmp/b2" --drop $pre.2.feed_forward.experts.1.w1.lora_A.weight
expect_error "PEFT: one expert's lora_A missing" "experts.1.w1.lora_B.weight' has no lora_A" "$bin" logits --tokens $T -o "$tmp/x" -m "$moe" --lora "$tmp/b2"
$P "$tmp/b3" --extra base_model.model.lm_head.lora_A.weight
expect_error "PEFT: unknown module" "lm_head.lora_A.weight' is not a LoRA A/B matrix" "$bin" logits --tokens $T -o "$tmp/x" -m "$moe" --lora "$tmp/b3"
$P "$tmp/b4" --rank-pattern q_proj=2
expect_error "PEFT: wrong rank" "has rank 4, the config says 2" "$bin" logits --tokens $T -o "$tmp/x" -m "$moe" --lora "$tmp/b4"
$P "$tmp/b6" --targets q_proj,gate_proj
logits "$tmp/b6.f32" -m "$moe" --lora "$tmp/b6"
check "PEFT: a target LFM2 lacks (gate_proj) is harmless" "[ -s \"$tmp/b6.f32\" ]"
$P "$tmp/b7" && sed -i 's/"use_dora": false/"use_dora": true/' "$tmp/b7/adapter_config.json"
expect_error "PEFT: DoRA" "DoRA adapters" "$bin" logits --tokens $T -o "$tmp/x" -m "$moe" --lora "$tmp/b7"
expect_error "PEFT conversion without a base" "needs --base" "$bin" convert "$tmp/b1" -o "$tmp/x.gguf"
expect_error "synth: unknown target" "unknown LoRA target 'attn_z'" "$bin" synth --lora-for "$dense" -o "$tmp/x.gguf" --targets attn_q,attn_z
check "no output left by failures" "[ ! -e \"$tmp/x.gguf\" ] && [ ! -e \"$tmp/x.gguf.tmp\" ]"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
