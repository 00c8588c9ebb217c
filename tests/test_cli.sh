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
# --chat renders the prompt with the template: same as rendering it ourselves and running --no-bos
echo '[{"role": "user", "content": "Hi there"}]' > "$tmp/conv.json"
"$bin" template -m data/lfm2-tiny-dense-f32.gguf --messages "$tmp/conv.json" --add-generation-prompt > "$tmp/rendered" 2>/dev/null
a=$("$bin" run -m data/lfm2-tiny-dense-f32.gguf -p "Hi there" --chat -n 6 --temp 0 2>/dev/null)
b=$("$bin" run -m data/lfm2-tiny-dense-f32.gguf -f "$tmp/rendered" --no-bos --raw -n 6 --temp 0 2>/dev/null)
[ -n "$a" ] && [ "$a" == "$b" ] && ok || bad "run --chat differs from the rendered prompt"
# run's prompt is a user message in the model's chat template by default (every fixture has one):
# as --chat, and -v counts the rendered prompt's tokens; --raw continues the text as it is
a=$("$bin" run -m data/lfm2-tiny-dense-f32.gguf -p "Hi there" -n 6 --temp 0 -v 2>"$tmp/err")
b=$("$bin" run -m data/lfm2-tiny-dense-f32.gguf -f "$tmp/rendered" --no-bos --raw -n 6 --temp 0 2>/dev/null)
[ -n "$a" ] && [ "$a" == "$b" ] && ok || bad "run without --chat does not apply the model's template: '$a' vs '$b'"
n_chat=$("$bin" tokenize -m data/lfm2-tiny-dense-f32.gguf -f "$tmp/rendered" --no-bos --parse-special --ids 2>/dev/null | tr -cs '0-9' '\n' | grep -c .)
grep -q "prompt: $n_chat tokens" "$tmp/err" && grep -q "chat template" "$tmp/err" && ok || bad "run -v: not the template's $n_chat tokens: $(cat "$tmp/err")"
printf 'Hi there' > "$tmp/plain.txt"
a=$("$bin" run -m data/lfm2-tiny-dense-f32.gguf -p "Hi there" --raw -n 6 --temp 0 -v 2>"$tmp/err")
n_raw=$("$bin" tokenize -m data/lfm2-tiny-dense-f32.gguf -f "$tmp/plain.txt" --parse-special --ids 2>/dev/null | tr -cs '0-9' '\n' | grep -c .)
grep -q "prompt: $n_raw tokens" "$tmp/err" && [ "$n_raw" -lt "$n_chat" ] && ok || bad "run --raw: not the text's $n_raw tokens: $(cat "$tmp/err")"
# a file without a chat template (the key renamed, same length): a plain completion, as --raw
python3 -c 'import sys; d = open(sys.argv[1], "rb").read(); open(sys.argv[2], "wb").write(d.replace(b"tokenizer.chat_template", b"tokenizer.chat_templatX"))' \
  data/lfm2-tiny-dense-f32.gguf "$tmp/notmpl.gguf"
b=$("$bin" run -m "$tmp/notmpl.gguf" -p "Hi there" -n 6 --temp 0 2>/dev/null)
[ -n "$a" ] && [ "$a" == "$b" ] && ok || bad "run on a file without a template is not the plain completion: '$b' vs '$a'"
"$bin" run -m data/lfm2-tiny-dense-f32.gguf -p "Hi" --raw --chat >/dev/null 2>"$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "raw" "$tmp/err" && ok || bad "--raw --chat: rc=$rc $(cat "$tmp/err")"
# the default seed is random (two runs differ at a high temperature); -v prints it, --seed repeats it
a=$("$bin" run -m data/lfm2-tiny-moe-q4_0.gguf -p "Hi" -n 24 --temp 5 -v 2>"$tmp/err")
b=$("$bin" run -m data/lfm2-tiny-moe-q4_0.gguf -p "Hi" -n 24 --temp 5 2>/dev/null)
[ -n "$a" ] && [ "$a" != "$b" ] && ok || bad "the default seed is fixed: two runs gave '$a'"
seed=$(sed -n 's/^sampling: seed \([0-9]*\).*/\1/p' "$tmp/err")
c=$("$bin" run -m data/lfm2-tiny-moe-q4_0.gguf -p "Hi" -n 24 --temp 5 --seed "${seed:-x}" 2>/dev/null)
[ -n "$seed" ] && [ "$a" == "$c" ] && ok || bad "-v's seed '$seed' does not repeat the run: '$a' vs '$c' $(cat "$tmp/err")"
printf 'hi\n' | "$bin" chat -m data/lfm2-tiny-moe-q4_0.gguf -n 4 -v >/dev/null 2>"$tmp/err"
grep -q "^sampling: seed [0-9]" "$tmp/err" && ok || bad "chat -v does not print the seed: $(cat "$tmp/err")"
# bench prints llama-bench's table and a build line, nothing on stderr (but a busy machine's
# warning); -v adds where the time went and the machine's state; a file that does not open gets
# its one line and no table head, in every format
"$bin" bench -m data/lfm2-tiny-moe-q8_0.gguf -p 8 -n 4 -r 1 -t 1 >"$tmp/b.md" 2>"$tmp/b.err"
head -1 "$tmp/b.md" | grep -q "^| model | size |" && grep -q "| tg4 |" "$tmp/b.md" && tail -1 "$tmp/b.md" | grep -q "^build: [0-9a-f]" &&
  ok || bad "bench md: no table and build line: $(cat "$tmp/b.md")"
grep -v "thread pool ran" "$tmp/b.err" | grep -q . && bad "bench prints diagnostics without -v: $(cat "$tmp/b.err")" || ok
"$bin" bench -m data/lfm2-tiny-moe-q8_0.gguf -p 8 -n 4 -r 1 -t 1 -v >/dev/null 2>"$tmp/b.err"
grep -q "^tg4: weight products" "$tmp/b.err" && grep -q "^peak RSS" "$tmp/b.err" && ok || bad "bench -v: $(cat "$tmp/b.err")"
for f in md json csv; do
  "$bin" bench -m "$tmp/none.gguf" -p 8 -n 4 -r 1 -o $f >"$tmp/b.out" 2>"$tmp/b.err"; rc=$?
  [ $rc = 1 ] && [ ! -s "$tmp/b.out" ] && grep -q "cannot open" "$tmp/b.err" && ok || bad "bench -o $f of a missing file: rc=$rc out: $(cat "$tmp/b.out") err: $(cat "$tmp/b.err")"
done
# bench: llama-bench's JSON rows, csv, and the batched mode
"$bin" bench -m data/lfm2-tiny-moe-q8_0.gguf -p 16 -n 8 -r 2 -t 1,2 -o json > "$tmp/bench.json" 2>/dev/null
python3 - "$tmp/bench.json" <<'PY' && ok || bad "bench -o json shape"
import json, sys
rows = json.load(open(sys.argv[1]))
assert len(rows) == 4, rows
assert all(r["build_commit"] for r in rows), rows
for r in rows:
    for k in ("n_prompt", "n_gen", "n_threads", "avg_ts", "stddev_ts", "samples_ts"):
        assert k in r, k
    assert len(r["samples_ts"]) == 2 and r["avg_ts"] > 0
    # the pool's passes over the repetitions and those it ran solo (none with one thread)
    assert 0 <= r["pool_solo_steps"] <= r["pool_steps"], r
    assert r["n_threads"] == 2 or r["pool_steps"] == 0, r
    assert r["pool_went_solo"] == (20 * r["pool_solo_steps"] > r["pool_steps"]), r
    # the kernel table that ran and how it was chosen (kernels_choose.c)
    assert r["kernels"] and r["kernels_choice"] in ("forced", "table", "timed", "cached", "only", "default"), r
assert sorted((r["n_threads"], r["n_prompt"], r["n_gen"]) for r in rows) == [(1, 0, 8), (1, 16, 0), (2, 0, 8), (2, 16, 0)]
assert all("warm_read_gbps" not in r for r in rows), rows   # only with --warm-read
# tg on the CPU: its reads replayed, and each of 16 tokens paired with a replay of its own reads
for r in rows:
    if r["n_gen"]:
        assert r["replay_gbps_jobs"] > 0 and r["replay_gbps_flat"] > 0, r
        assert r["replay_paired_share"] > 0 and r["replay_paired_whole_share"] > 0, r
PY
"$bin" bench -m data/lfm2-tiny-moe-q8_0.gguf -p 0 -n 2 -r 1 --warm-read -o json 2>/dev/null | python3 -c "
import json, sys; rows = json.load(sys.stdin); assert len(rows) == 1 and rows[0]['warm_read_gbps'] > 0, rows" && ok || bad "bench --warm-read: no warm_read_gbps"
"$bin" bench -m data/lfm2-tiny-moe-q8_0.gguf -p 8 -n 4 -r 1 -b 3 -o csv > "$tmp/bench.csv" 2>/dev/null && [ "$(wc -l < "$tmp/bench.csv")" = 2 ] && ok || bad "bench -b csv"
expect_err_bench() { "$bin" bench -m data/lfm2-tiny-moe-q8_0.gguf "$@" >/dev/null 2>&1 && bad "bench $* accepted" || ok; }
expect_err_bench -o yaml
expect_err_bench -r 0
expect_err_bench -d -5
expect_err_bench -ctk f8
expect_err_bench -p 0 -n 2 --warm-read --device vulkan
# bench -d (llama-bench's depth) and KV cache types, in the JSON rows
"$bin" bench -m data/lfm2-kq-dense-q4_k_m.gguf -p 16 -n 4 -r 1 -t 1 -d 0,40 -ctk f16,q8_0 -ctv f32 -o json > "$tmp/bd.json" 2>/dev/null
python3 - "$tmp/bd.json" <<'PY' && ok || bad "bench -d / -ctk json"
import json, sys
rows = json.load(open(sys.argv[1]))
got = sorted((r["type_k"], r["type_v"], r["n_depth"], r["test"]) for r in rows)
want = sorted((k, "f32", d, t + ("" if d == 0 else f" @ d{d}")) for k in ("f16", "q8_0") for d in (0, 40) for t in ("pp16", "tg4"))
assert got == want, got
PY
# KV cache types on run / logits; logits default to an F32 cache (the goldens' precision)
"$bin" logits -m data/lfm2-kq-dense-q4_k_m.gguf --tokens 1,498,582,1000 -o "$tmp/ld.f32" >/dev/null 2>&1
"$bin" logits -m data/lfm2-kq-dense-q4_k_m.gguf --tokens 1,498,582,1000 -ctk f32 -ctv f32 -o "$tmp/l32.f32" >/dev/null 2>&1
"$bin" logits -m data/lfm2-kq-dense-q4_k_m.gguf --tokens 1,498,582,1000 --cache-type-k q8_0 --cache-type-v f16 -o "$tmp/lq.f32" >/dev/null 2>&1
cmp -s "$tmp/ld.f32" "$tmp/l32.f32" && ok || bad "logits default is not the f32 cache"
[ -s "$tmp/lq.f32" ] && ! cmp -s "$tmp/ld.f32" "$tmp/lq.f32" && ok || bad "logits -ctk q8_0 -ctv f16"
"$bin" run -m data/lfm2-kq-dense-q4_k_m.gguf -p "Hello" -n 4 --temp 0 -ctk q8_0 -ctv q8_0 >/dev/null 2>&1 && ok || bad "run -ctk q8_0"
# --hugepages: the weights copied into anonymous memory give the same bits
"$bin" logits -m data/lfm2-kq-dense-q4_k_m.gguf --tokens 1,498,582,1000 --hugepages -o "$tmp/lh.f32" >/dev/null 2>&1
cmp -s "$tmp/ld.f32" "$tmp/lh.f32" && ok || bad "logits --hugepages differ"
"$bin" logits -m data/lfm2-kq-dense-q4_k_m.gguf --tokens 1,498,582,1000 --no-hugepages -o "$tmp/ln.f32" >/dev/null 2>&1
cmp -s "$tmp/ld.f32" "$tmp/ln.f32" && ok || bad "logits --no-hugepages differ"
# the AVX-512 and AVX2 tables interleave Q4_K / Q6_K matrices in the copy (ggml_types.h:
# Q4_K_X16, Q6_K_X16): the same bits as the plain rows of the mapped file, in one batch and token
# by token, dense and MoE, for each table this CPU runs
for isa in avx512vnni avx2; do
  "$bin" --version | grep -q "$isa" || continue
  for m in data/lfm2-kq-dense-q4_k_m.gguf data/lfm2-kq-moe-q4_k_m.gguf; do
    LFM2C_ISA=$isa "$bin" info -m "$m" --hugepages 2>&1 | grep -Eq 'layout: .*, [1-9][0-9]* matrices interleaved' && ok || bad "$isa info $m: no matrices interleaved"
    LFM2C_ISA=$isa "$bin" info -m "$m" --no-hugepages 2>&1 | grep -q 'interleaved' && bad "$isa info $m: interleaved in a mapped file" || ok
    for mode in "" --one-by-one; do
      LFM2C_ISA=$isa "$bin" logits -m "$m" --tokens 1,498,582,1000,7,42,9,300 $mode --hugepages -t 2 -o "$tmp/x1.f32" >/dev/null 2>&1
      LFM2C_ISA=$isa "$bin" logits -m "$m" --tokens 1,498,582,1000,7,42,9,300 $mode --no-hugepages -t 2 -o "$tmp/x2.f32" >/dev/null 2>&1
      [ -s "$tmp/x1.f32" ] && cmp -s "$tmp/x1.f32" "$tmp/x2.f32" && ok || bad "$isa logits $m $mode: interleaved differ from plain"
    done
    # every decode prefetch plan (tiles.h) gives those bits too, token by token
    for pf in nta4 t0x2 t1x8 hw nta2+t1x16; do
      LFM2C_DEC_PF=$pf LFM2C_ISA=$isa "$bin" logits -m "$m" --tokens 1,498,582,1000,7,42,9,300 --one-by-one --hugepages -t 2 -o "$tmp/x3.f32" >/dev/null 2>&1
      cmp -s "$tmp/x3.f32" "$tmp/x2.f32" && ok || bad "$isa logits $m: plan $pf differs"
    done
  done
done
# the AVX-512 table interleaves Q2_K / Q3_K matrices too (Q2_K_X16, Q3_K_X16; the AVX2 table keeps
# their rows): files quantized here from the F16 masters, dense and MoE, give the same bits
# interleaved as mapped, in one batch and token by token
if "$bin" --version | grep -q avx512vnni; then
  gzip -dc data/lfm2-kq-moe-f16.gguf.gz >"$tmp/kq-moe-f16.gguf"
  for src in data/lfm2-kq-dense-f16.gguf "$tmp/kq-moe-f16.gguf"; do
    for q in q2_k q3_k_m; do
      m="$tmp/k23-$q.gguf"
      "$bin" quantize "$src" "$m" $q -t 2 >/dev/null 2>&1 && ok || { bad "quantize $src $q"; continue; }
      packed() { LFM2C_ISA=$1 "$bin" info -m "$m" --hugepages 2>&1 | sed -n 's/.*, \([0-9]*\) matrices interleaved.*/\1/p'; }
      n5=$(packed avx512vnni); n2=0
      "$bin" --version | grep -q avx2 && n2=$(packed avx2)
      [ "${n5:-0}" -gt "${n2:-0}" ] && ok || bad "$src $q: avx512vnni interleaves ${n5:-0} matrices, avx2 ${n2:-0}"
      for mode in "" --one-by-one; do
        LFM2C_ISA=avx512vnni "$bin" logits -m "$m" --tokens 1,498,582,1000,7,42,9,300 $mode --hugepages -t 2 -o "$tmp/x1.f32" >/dev/null 2>&1
        LFM2C_ISA=avx512vnni "$bin" logits -m "$m" --tokens 1,498,582,1000,7,42,9,300 $mode --no-hugepages -t 2 -o "$tmp/x2.f32" >/dev/null 2>&1
        [ -s "$tmp/x1.f32" ] && cmp -s "$tmp/x1.f32" "$tmp/x2.f32" && ok || bad "$src $q $mode: interleaved differ from plain"
      done
    done
  done
fi
# --version names the commit the binary was built from (written at build time, not configure time)
if head=$(git rev-parse --short=12 HEAD 2>/dev/null); then
  "$bin" --version | head -1 | grep -Eq "^lfm2c [0-9.]+ \(commit $head(\+changes)?\)$" && ok || bad "--version: not commit $head: $("$bin" --version | head -1)"
fi
# which prefetch plan decode runs, and why: --version, bench (stderr and JSON)
LFM2C_DEC_PF=nta4 "$bin" --version | grep -Eq '^decode prefetch: (nta4 \(forced: LFM2C_DEC_PF=nta4\)|nta2 \(none: )' && ok || bad "--version: no forced plan"
LFM2C_DEC_PF=t1x8 "$bin" bench -m data/lfm2-kq-dense-q4_k_m.gguf -p 0 -n 2 -r 1 -o json 2>/dev/null | grep -Eq '"decode_prefetch": "(t1x8|nta2)"' && ok || bad "bench json: no decode_prefetch"
# and where attention prefetches the KV cache
LFM2C_ATTN_PF=t1 "$bin" --version | grep -Eq '^attention prefetch: t1 \(forced: LFM2C_ATTN_PF=t1\)' && ok || bad "--version: no forced attention prefetch"
LFM2C_ATTN_PF=nta "$bin" bench -m data/lfm2-kq-dense-q4_k_m.gguf -p 0 -n 2 -r 1 -o json 2>/dev/null | grep -q '"attention_prefetch": "nta"' && ok || bad "bench json: no attention_prefetch"
# bench says which it did: --hugepages copies, --no-hugepages maps
"$bin" bench -m data/lfm2-kq-dense-q4_k_m.gguf -p 0 -n 2 -r 1 --hugepages -v 2>&1 >/dev/null | grep -q '^weights copied' && ok || bad "bench --hugepages does not say copied"
"$bin" bench -m data/lfm2-kq-dense-q4_k_m.gguf -p 0 -n 2 -r 1 --no-hugepages -v 2>&1 >/dev/null | grep -q '^weights mapped' && ok || bad "bench --no-hugepages does not say mapped"
# speculative decoding: at --temp 0 the output is the plain run's, with a draft model (itself, a
# quantized copy, an MoE) and with prompt lookup; -v reports drafted / accepted
t=data/lfm2-tiny-dense-f32.gguf
rep="one two three four five one two three four five one two three four five one two three"
"$bin" run -m $t -p "$rep" -n 40 --temp 0 >"$tmp/plain" 2>/dev/null
for opt in "-md $t --draft-p-min 0" "-md data/lfm2-tiny-dense-q4_0.gguf --draft-p-min 0 --draft-max 3" \
           "-md data/lfm2-tiny-moe-f32.gguf" "--spec-lookup" "--spec-lookup 2..4 --draft-max 6 --draft-min 2" \
           "-md $t --draft-p-min 0 --draft-fixed" "--spec-lookup --draft-fixed --draft-max 5" "--spec-lookup --draft-auto"; do
  "$bin" run -m $t -p "$rep" -n 40 --temp 0 $opt -v >"$tmp/spec" 2>"$tmp/spec.err"
  cmp -s "$tmp/plain" "$tmp/spec" && ok || bad "run $opt: output differs from plain decode"
  grep -q "speculative: [0-9]* drafted, [0-9]* accepted" "$tmp/spec.err" && ok || bad "run $opt -v: no drafted/accepted line"
done
"$bin" run -m $t -p "$rep" -n 40 --temp 0 -md $t --draft-p-min 0 -v 2>&1 >/dev/null | grep -q "speculative: \([0-9]*\) drafted, \1 accepted" \
  && ok || bad "the target as its own draft must accept every drafted token"
# with a LoRA adapter on the target (the draft runs without it): still the plain output
"$bin" synth --lora-for $t -o "$tmp/ad.gguf" --rank 4 --seed 7 >/dev/null 2>&1
"$bin" run -m $t --lora "$tmp/ad.gguf" -p "$rep" -n 30 --temp 0 >"$tmp/plain" 2>/dev/null
"$bin" run -m $t --lora "$tmp/ad.gguf" -p "$rep" -n 30 --temp 0 -md $t --draft-p-min 0 >"$tmp/spec" 2>"$tmp/spec.err"
[ -s "$tmp/plain" ] && cmp -s "$tmp/plain" "$tmp/spec" && ok || bad "--lora with a draft model: output differs $(cat "$tmp/spec.err")"
# a context shorter than --draft-max (the default 16): drafts shrink to fit
"$bin" run -m $t -p "Hello" -n 3 --temp 0 >"$tmp/plain" 2>/dev/null
"$bin" run -m $t -p "Hello" -n 3 --temp 0 -md $t --draft-p-min 0 >"$tmp/spec" 2>"$tmp/spec.err"
cmp -s "$tmp/plain" "$tmp/spec" && ok || bad "-n 3 with a draft model: $(cat "$tmp/spec.err")"
# a context that fills up stops at the same token
"$bin" run -m $t -p "$rep" -n 100 -c 40 --temp 0 >"$tmp/plain" 2>/dev/null
"$bin" run -m $t -p "$rep" -n 100 -c 40 --temp 0 -md $t --draft-p-min 0 >"$tmp/spec" 2>/dev/null
cmp -s "$tmp/plain" "$tmp/spec" && ok || bad "full context: speculative output differs"
# sampling with a draft runs and is reproducible for a seed
a=$("$bin" run -m $t -p "Hi" -n 16 --temp 0.9 --seed 5 -md data/lfm2-tiny-moe-f32.gguf 2>/dev/null)
b=$("$bin" run -m $t -p "Hi" -n 16 --temp 0.9 --seed 5 -md data/lfm2-tiny-moe-f32.gguf 2>/dev/null)
[ -n "$a" ] && [ "$a" == "$b" ] && ok || bad "seeded speculative sampling not reproducible"
# --draft-auto above temperature 0 runs (its text then depends on timings, so only that it runs)
"$bin" run -m $t -p "Hi" -n 16 --temp 0.9 --seed 5 -md data/lfm2-tiny-moe-f32.gguf --draft-auto >/dev/null 2>&1 && ok || bad "--draft-auto at --temp 0.9"
# bench --spec: verification cost for k = 1..8, then plain / own draft / forced acceptance rows
"$bin" bench --spec -m $t -md data/lfm2-tiny-dense-q4_0.gguf -p 16 -n 24 -r 1 -t 1 --spec-accept 0.5,1 -o json > "$tmp/spec.json" 2>/dev/null
python3 - "$tmp/spec.json" <<'PY' && ok || bad "bench --spec json"
import json, sys
rows = json.load(open(sys.argv[1]))
tests = [r["test"] for r in rows]
assert tests[0] == "decode step" and tests.count("verify k+1 tokens") == 8, tests
assert [r["k"] for r in rows if r["test"] == "verify k+1 tokens"] == list(range(1, 9))
assert all(r["value"] > 0 for r in rows), rows
own = [r for r in rows if r["test"] == "target as own draft"][0]
assert own["drafted"] > 0 and own["accepted"] == own["drafted"], own
forced = [r for r in rows if r["test"] == "draft, forced acceptance"]
assert [r["accept"] for r in forced] == [0.5, 1.0], forced
assert forced[1]["accepted"] == forced[1]["drafted"] > 0, forced
assert 0 < forced[0]["accepted"] < forced[0]["drafted"], forced
look = [r for r in rows if r["test"] == "prompt lookup, forced acceptance"]
assert [r["accept"] for r in look] == [0.5, 1.0], look
assert look[1]["accepted"] == look[1]["drafted"] > 0 and 0 < look[0]["accepted"] < look[0]["drafted"], look
PY
# an MoE target also times one token repeated (its experts shared: the other end from random tokens)
"$bin" bench --spec -m data/lfm2-tiny-moe-q8_0.gguf -p 8 -n 8 -r 1 -t 1 --spec-accept 1 -o json > "$tmp/specm.json" 2>/dev/null
python3 - "$tmp/spec.json" "$tmp/specm.json" <<'PY' && ok || bad "bench --spec: repeated-token rows"
import json, sys
dense, moe = (json.load(open(f)) for f in sys.argv[1:])
rep = "verify k+1 tokens, one token repeated"
assert not [r for r in dense if r["test"] == rep], dense
assert [r["k"] for r in moe if r["test"] == rep] == list(range(1, 9)) and all(r["value"] > 0 for r in moe), moe
PY
"$bin" bench --spec -m $t -p 8 -n 8 -r 1 -t 1 > "$tmp/spec.md" 2>/dev/null && grep -q "| target as own draft | 4 | 1.00 |" "$tmp/spec.md" \
  && ok || bad "bench --spec markdown: $(cat "$tmp/spec.md")"
# -md with another vocabulary: a clear error
"$bin" synth --preset lfm2-350m --type f32 -o "$tmp/v.gguf" --hidden 64 --layers 2 --attn-layers 1 --heads 4 --kv-heads 2 --ff 128 --vocab 4096 --ctx 256 -t 1 >/dev/null 2>&1
"$bin" run -m $t -p x -md "$tmp/v.gguf" >/dev/null 2>"$tmp/err" && bad "a draft with another vocabulary accepted" || \
  { grep -q "draft model: the draft model's vocabulary (4096 tokens) is not the target's (8192 tokens)" "$tmp/err" && ok || bad "vocab error: $(cat "$tmp/err")"; }
# errors: one line, non-zero exit, no crash
expect_err() { # what, pattern, command...
  local what=$1 pat=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
  if [ $rc -ge 1 ] && [ $rc -le 127 ] && grep -q "$pat" "$tmp/err"; then ok; else bad "$what: rc=$rc $(cat "$tmp/err")"; fi
}
expect_err "missing file" "cannot open" "$bin" run -m "$tmp/none.gguf" -p x
echo "plain text" > "$tmp/text.gguf"
expect_err "not gguf" "not a GGUF" "$bin" info -m "$tmp/text.gguf"
# info's GPU memory plan (core/mem_plan.c): 4 slots of 1024 on an 80 GiB card fit, with BF16
# copies; on 2 GiB they do not (1 GiB + 2% stay free); a cap below the card's memory is its budget
"$bin" info -m data/lfm2-kq-moe-q4_k_m.gguf --gpu-mem 80G -np 4 -c 1024 >"$tmp/plan" 2>&1 &&
  grep -q "memory plan: 4 slots x 1024 positions" "$tmp/plan" && grep -q "BF16 experts .* yes" "$tmp/plan" &&
  grep -q ": fits" "$tmp/plan" && ok || bad "info --gpu-mem: $(cat "$tmp/plan")"
"$bin" info -m data/lfm2-kq-moe-q4_k_m.gguf --gpu-mem 80G --gpu-mem-cap 1G -np 4 -c 1024 2>&1 |
  grep -q "does not fit" && ok || bad "info --gpu-mem-cap 1G: fits"
expect_err "gpu-mem size" "not a size" "$bin" info -m data/lfm2-kq-moe-q4_k_m.gguf --gpu-mem 80X
head -c 100000 data/lfm2-tiny-dense-f32.gguf > "$tmp/trunc.gguf"
expect_err "truncated" "truncated" "$bin" run -m "$tmp/trunc.gguf" -p x
expect_err "prompt too long" "longer than the context" "$bin" run -m data/lfm2-tiny-dense-f32.gguf -p "a b c d e f g h i j k l m n o p" -c 8
expect_err "bad ids" "out of range" "$bin" logits -m data/lfm2-tiny-dense-f32.gguf --tokens 1,999999 -o "$tmp/x"
expect_err "bad flag" "unknown option" "$bin" run -m data/lfm2-tiny-dense-f32.gguf --bogus
expect_err "bad number" "expects an integer" "$bin" run -m data/lfm2-tiny-dense-f32.gguf -p x -n abc
expect_err "unknown command" "unknown command" "$bin" frobnicate
expect_err "bad kv type" "unknown KV cache type" "$bin" run -m data/lfm2-tiny-dense-f32.gguf -p x -ctk f8
expect_err "q8_0 kv, head_dim 16" "multiple of 32" "$bin" run -m data/lfm2-tiny-dense-f32.gguf -p x -ctv q8_0
expect_err "two drafters" "two drafters" "$bin" run -m $t -p x -md $t --spec-lookup
expect_err "bad lookup sizes" "spec-lookup takes" "$bin" run -m $t -p x --spec-lookup 5..2
expect_err "draft-min above draft-max" "above --draft-max" "$bin" run -m $t -p x -md $t --draft-max 2 --draft-min 3
expect_err "bad draft-p-min" "draft-p-min" "$bin" run -m $t -p x -md $t --draft-p-min 2
expect_err "missing draft" "cannot open" "$bin" run -m $t -p x -md "$tmp/none.gguf"
expect_err "spec flags without --spec" "go with --spec" "$bin" bench -m $t -md $t
# constrained output: the text fits whatever the (random) model prefers; refusals are clear
for seed in 1 2 3; do
  out=$("$bin" run -m $t -p "Answer:" -n 40 --temp 1 --seed $seed --regex '[a-z]{2,5}-[0-9]{3}' 2>/dev/null)
  [[ "$out" =~ ^[a-z]{2,5}-[0-9]{3}$ ]] && ok || bad "run --regex seed $seed: '$out'"
  out=$("$bin" run -m $t -p "Answer:" -n 40 --temp 1 --seed $seed --choice positive --choice "it's mixed" 2>/dev/null)
  [ "$out" = positive ] || [ "$out" = "it's mixed" ] && ok || bad "run --choice seed $seed: '$out'"
  "$bin" run -m $t -p "Answer:" -n 80 --temp 1 --seed $seed -j '{"type":"object","properties":{"a":{"enum":[1,2]}},"required":["a"],"additionalProperties":false}' 2>/dev/null > "$tmp/j"
  python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); assert v["a"] in (1,2) and len(v)==1' "$tmp/j" && ok || bad "run -j seed $seed: $(cat "$tmp/j")"
done
echo '{"type":"array","items":{"type":"boolean"},"minItems":1,"maxItems":2}' > "$tmp/schema.json"
"$bin" run -m $t -p "Answer:" -n 80 --temp 1 --seed 4 --json-schema-file "$tmp/schema.json" 2>/dev/null > "$tmp/j"
python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); assert 1<=len(v)<=2 and all(isinstance(x,bool) for x in v)' "$tmp/j" && ok || bad "run --json-schema-file: $(cat "$tmp/j")"
expect_err "bad regex" "cannot constrain the output" "$bin" run -m $t -p x --regex '(a'
expect_err "bad schema" "cannot constrain the output" "$bin" run -m $t -p x -j '{"type":"nope"}'
expect_err "two constraints" "give one of" "$bin" run -m $t -p x --regex a --choice b
expect_err "constraint with speculation" "speculative decoding" "$bin" run -m $t -p x --regex a --spec-lookup
# embed: one unit-length vector per text (JSON Lines), -f FILE the same as arguments, a text
# against itself cosine 1, --pooling mean differs from last, --no-normalize keeps the length
e=data/lfm2-tiny-moe-q8_0.gguf
"$bin" embed -m $e "The quick brown fox" "jumps over the lazy dog" > "$tmp/emb" 2>"$tmp/emb.err"
printf 'The quick brown fox\n\njumps over the lazy dog\n' > "$tmp/texts"
"$bin" embed -m $e -f "$tmp/texts" > "$tmp/embf" 2>/dev/null
"$bin" embed -m $e --pooling mean --no-normalize "The quick brown fox" > "$tmp/embm" 2>/dev/null
python3 - "$tmp/emb" "$tmp/embf" "$tmp/embm" <<'PY' && ok || bad "embed: $(cat "$tmp/emb.err")"
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 2 and all(len(r) == 64 for r in rows), [len(r) for r in rows]
for r in rows: assert abs(math.sqrt(sum(x * x for x in r)) - 1) < 1e-5
assert [json.loads(l) for l in open(sys.argv[2])] == rows
m = json.loads(open(sys.argv[3]).read())
assert len(m) == 64 and abs(math.sqrt(sum(x * x for x in m)) - 1) > 1e-3
PY
sim=$("$bin" embed -m $e --similarity "a b c" "a b c" "zebra" 2>/dev/null)
python3 -c 'import sys; r=[list(map(float,l.split())) for l in sys.argv[1].splitlines()]; assert len(r)==3 and abs(r[0][1]-1)<1e-5 and abs(r[0][2])<0.999 and r[0][2]==r[2][0]' "$sim" && ok || bad "embed --similarity: $sim"
expect_err "embed pooling" "is not last or mean" "$bin" embed -m $e --pooling cls x
expect_err "embed context" "more than the context" "$bin" embed -m $e -c 2 "a longer text than two tokens"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
