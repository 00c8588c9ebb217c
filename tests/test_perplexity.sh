#!/bin/bash
# test_perplexity.sh PATH/TO/lfm2c — `lfm2c perplexity` and `lfm2c imatrix` against llama.cpp's
# llama-perplexity and llama-imatrix on the same files and text (tests/data/ppl; its README says
# how the goldens were made and the tolerances why):
# - the models: `lfm2c synth` + `lfm2c quantize`, the goldens' bytes (sha256);
# - PPL of each (dense / MoE, F32 / Q8_0 / Q4_K_M, chunks of 128): llama-perplexity's within
#   2e-5 (F32) or 2e-3 (quantized), every chunk's running PPL of the F32 models within 5e-5;
# - the logits file both ways: ours has llama-perplexity's size and header bytes; this model
#   against llama's file of itself diverges by nothing; the quants against llama's file, and
#   against ours, print llama-perplexity's figures (--kl-divergence) within the tolerances below;
#   --json carries the same figures;
# - imatrix: --show-statistics prints llama-imatrix's table of its file; our file's statistics
#   are within 2e-3 of llama-imatrix's file's (F32), 3e-2 (Q4_K_M), the counts equal; its .dat
#   and GGUF merged byte for byte as llama-imatrix merges them; --save-frequency's files;
# - refusals: one line each, non-zero exit.
bin=$(readlink -f "${1:?usage: test_perplexity.sh PATH/TO/lfm2c}")
cd "$(dirname "$0")"
D=data/ppl
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
check() { if eval "$2"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: $1" >&2; fi; }
# near A B REL [ABS]: |A - B| <= REL |B| + ABS
near() { awk -v a="$1" -v b="$2" -v r="$3" -v e="${4:-0}" 'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b;
  exit !(a != "" && b != "" && d <= r * m + e) }'; }
# num FILE LABEL: the first number after LABEL on its line
num() { grep -F -- "$2" "$1" | head -1 | sed "s/.*$(printf '%s' "$2" | sed 's/[][\.*^$%/]/\\&/g')//" |
  grep -oE -- '-?[0-9]+(\.[0-9]+)?(e-?[0-9]+)?' | head -1; }
# fails FILE CMD...: non-zero exit and a single "lfm2c: " line on stderr
fails() { local f=$1; shift; "$@" >/dev/null 2>"$f"; local rc=$?; [ $rc -ne 0 ] && [ "$(wc -l <"$f")" -eq 1 ] && grep -q '^lfm2c: ' "$f"; }

# ---- the models --------------------------------------------------------------------------------
"$bin" synth --preset lfm2-350m --type f32 -o "$tmp/dense-f32.gguf" --hidden 256 --layers 4 --attn-layers 1,3 \
  --heads 4 --kv-heads 2 --ff 512 --vocab 512 --seed 84 >/dev/null
"$bin" synth --preset lfm2-8b-a1b --type f32 -o "$tmp/moe-f32.gguf" --hidden 256 --layers 4 --attn-layers 1,3 \
  --heads 4 --kv-heads 2 --ff 512 --experts 8 --experts-used 2 --expert-ff 256 --dense-layers 1 --vocab 512 \
  --seed 84 >/dev/null
for m in dense moe; do for t in q8_0 q4_k_m; do
  "$bin" quantize "$tmp/$m-f32.gguf" "$tmp/$m-$t.gguf" $t -t 1 >/dev/null; done; done
(cd "$tmp" && sha256sum -c --quiet "$OLDPWD/$D/models.sha256" >/dev/null 2>&1)
check "the goldens' models (synth + quantize changed? then make the goldens again: $D/README.md)" "[ $? -eq 0 ]"

# ---- perplexity --------------------------------------------------------------------------------
for m in dense-f32 dense-q8_0 dense-q4_k_m moe-f32 moe-q8_0 moe-q4_k_m; do
  "$bin" perplexity -m "$tmp/$m.gguf" -f $D/text.txt -c 128 -t 1 >"$tmp/ppl.out" 2>"$tmp/ppl.err"
  check "$m: perplexity runs" "[ $? -eq 0 ] && grep -q '26 chunks of 128, 63 scored in each' \"$tmp/ppl.err\""
  ours=$(num "$tmp/ppl.out" "PPL ="); theirs=$(num $D/ppl-$m.txt "PPL =")
  case $m in *f32) tol=2e-5;; *) tol=2e-3;; esac
  check "$m: PPL $ours, llama-perplexity's $theirs (within $tol)" "near $ours $theirs $tol"
  check "$m: its ± too" "near $(num "$tmp/ppl.out" "+/-") $(num $D/ppl-$m.txt "+/-") $tol"
  [ $m = dense-f32 ] && cp "$tmp/ppl.out" "$tmp/dense-f32.ppl"
  if [[ $m == *f32 ]]; then
    ok=1
    for c in $(seq 1 26); do near "$(num "$tmp/ppl.out" "[$c]")" "$(num $D/ppl-$m.txt "[$c]")" 5e-5 || ok=0; done
    check "$m: every chunk's running PPL" "[ $ok = 1 ]"
  fi
done
"$bin" perplexity -m "$tmp/dense-f32.gguf" -f $D/text.txt -c 128 -b 40 --chunks 3 -t 1 >"$tmp/b40.out" 2>/dev/null
check "-b 40 changes no figure; --chunks 3 stops after three" \
  "[ \"\$(grep -o '^\[1\][^[]*\[2\][^[]*\[3\][0-9.]*' \"$tmp/b40.out\")\" = \"\$(grep -o '^\[1\][^[]*\[2\][^[]*\[3\][0-9.]*' \"$tmp/dense-f32.ppl\")\" ] && ! grep -q '\[4\]' \"$tmp/b40.out\""

# ---- the logits file and KL divergence -----------------------------------------------------------
"$bin" perplexity -m "$tmp/dense-f32.gguf" -f $D/text.txt -c 128 --chunks 4 --kl-divergence-base "$tmp/ours.kld" \
  -t 1 >/dev/null 2>&1
check "ours has llama-perplexity's size" "[ \$(stat -c %s \"$tmp/ours.kld\") = \$(stat -c %s $D/dense-f32.kld) ]"
check "and its header, byte for byte (the tokens, BOS not written in)" "cmp -s -n $((20 + 4 * 128 * 4)) \"$tmp/ours.kld\" $D/dense-f32.kld"
"$bin" perplexity -m "$tmp/dense-f32.gguf" --kl-divergence-base $D/dense-f32.kld --kl-divergence -t 1 \
  >"$tmp/self.out" 2>/dev/null
check "the same model against llama's file of it: KLD $(num "$tmp/self.out" "Mean    KLD:") ~ 0" \
  "near $(num "$tmp/self.out" "Maximum KLD:") 0 0 1e-4 && near $(num "$tmp/self.out" "Mean PPL(Q) ") $(num "$tmp/self.out" "Mean PPL(base)") 1e-5"
check "... the same top token everywhere" "near $(num "$tmp/self.out" "Same top p:") 100 0 0.5"
# compare OURS THEIRS: llama-perplexity's --kl-divergence figures, label by label
compare() {
  local o=$1 t=$2 what=$3 ok=1 l
  for l in "Mean PPL(Q) " "Mean PPL(base) " "Mean PPL(Q)/PPL(base) "; do near "$(num $o "$l")" "$(num $t "$l")" 1e-3 || { ok=0; echo "  $l: $(num $o "$l") vs $(num $t "$l")"; }; done
  near "$(num $o "Mean ln(PPL(Q)/PPL(base))")" "$(num $t "Mean ln(PPL(Q)/PPL(base))")" 0 1e-3 || { ok=0; echo "  ln ratio"; }
  near "$(num $o "Mean    KLD:")" "$(num $t "Mean    KLD:")" 0.03 || { ok=0; echo "  mean KLD: $(num $o "Mean    KLD:") vs $(num $t "Mean    KLD:")"; }
  for l in "Maximum KLD:" "99.9%   KLD:" "99.0%   KLD:" "95.0%   KLD:" "90.0%   KLD:" "Median  KLD:" "10.0%   KLD:" \
           " 5.0%   KLD:" " 1.0%   KLD:"; do
    near "$(num $o "$l")" "$(num $t "$l")" 0.1 || { ok=0; echo "  $l $(num $o "$l") vs $(num $t "$l")"; }; done
  for l in "Mean    Δp:" "Maximum Δp:" "99.0%   Δp:" "90.0%   Δp:" "Median  Δp:" "10.0%   Δp:" " 1.0%   Δp:" \
           "Minimum Δp:" "RMS Δp    :"; do
    near "$(num $o "$l")" "$(num $t "$l")" 0 0.05 || { ok=0; echo "  $l $(num $o "$l") vs $(num $t "$l")"; }; done
  near "$(num $o "Same top p:")" "$(num $t "Same top p:")" 0 2 || { ok=0; echo "  same top: $(num $o "Same top p:") vs $(num $t "Same top p:")"; }
  check "$what: llama-perplexity's figures (KLD $(num $o "Mean    KLD:"), theirs $(num $t "Mean    KLD:"))" "[ $ok = 1 ]"
  check "$what: its lines" "[ \"\$(grep -o '^[A-Z][^:]*:' $o)\" = \"\$(grep -o '^[A-Z][^:]*:' $t)\" ] && [ \$(grep -c '^ *[0-9] ' $o) = 4 ]"
}
for m in dense-q8_0 dense-q4_k_m; do
  "$bin" perplexity -m "$tmp/$m.gguf" --kl-divergence-base $D/dense-f32.kld --kl-divergence -t 1 >"$tmp/$m.kld.out" 2>/dev/null
  compare "$tmp/$m.kld.out" $D/kld-$m.txt "$m against llama's logits"
done
"$bin" perplexity -m "$tmp/dense-q4_k_m.gguf" --kl-divergence-base "$tmp/ours.kld" --kl-divergence -t 1 \
  >"$tmp/ours.kld.out" 2>/dev/null
compare "$tmp/ours.kld.out" $D/kld-dense-q4_k_m.llama-reads-lfm2c.txt "dense-q4_k_m against our logits (and llama-perplexity reading them)"
"$bin" perplexity -m "$tmp/dense-q4_k_m.gguf" --kl-divergence-base $D/dense-f32.kld --kl-divergence --json -t 1 \
  >"$tmp/kld.json" 2>/dev/null
check "--json: the same figures" "python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); k=j[\"kl_divergence\"]; \
assert abs(100*k[\"same_top\"] - $(num "$tmp/dense-q4_k_m.kld.out" "Same top p:")) < 1e-3 and abs(k[\"kld_mean\"] - $(num "$tmp/dense-q4_k_m.kld.out" "Mean    KLD:")) < 1e-6 \
and j[\"chunks\"] == 4 and len(j[\"chunk_ppl\"]) == 4 and \"99.9\" in k[\"kld_percentiles\"]' \"$tmp/kld.json\""
"$bin" perplexity -m "$tmp/dense-f32.gguf" -f $D/text.txt -c 128 --json -t 1 --kl-divergence-base "$tmp/j.kld" \
  >"$tmp/ppl.json" 2>/dev/null
check "--json: PPL" "python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert abs(j[\"ppl\"] - $(num $D/ppl-dense-f32.txt "PPL =")) < 0.02 and j[\"tokens_scored\"] == 26 * 63 and j[\"kl_divergence_base\"].endswith(\"j.kld\")' \"$tmp/ppl.json\""

# ---- refusals ------------------------------------------------------------------------------------
head -c 100000 $D/dense-f32.kld >"$tmp/cut.kld"
check "a cut logits file" "fails \"$tmp/err\" \"$bin\" perplexity -m \"$tmp/dense-q8_0.gguf\" --kl-divergence-base \"$tmp/cut.kld\" --kl-divergence && grep -q 'truncated' \"$tmp/err\""
check "another vocabulary" "fails \"$tmp/err\" \"$bin\" perplexity -m data/lfm2-tiny-dense-q8_0.gguf --kl-divergence-base $D/dense-f32.kld --kl-divergence && grep -q 'vocabulary of 512' \"$tmp/err\""
check "not a logits file" "fails \"$tmp/err\" \"$bin\" perplexity -m \"$tmp/dense-q8_0.gguf\" --kl-divergence-base $D/text.txt --kl-divergence"
check "a text too short for the context" "fails \"$tmp/err\" \"$bin\" perplexity -m \"$tmp/dense-q8_0.gguf\" -f $D/text.txt -c 2048 && grep -q 'needs at least 4096' \"$tmp/err\""
check "--kl-divergence without its file" "fails \"$tmp/err\" \"$bin\" perplexity -m \"$tmp/dense-q8_0.gguf\" --kl-divergence"
check "no text" "fails \"$tmp/err\" \"$bin\" perplexity -m \"$tmp/dense-q8_0.gguf\""
check "an unwritable logits file" "fails \"$tmp/err\" \"$bin\" perplexity -m \"$tmp/dense-q8_0.gguf\" -f $D/text.txt -c 128 --kl-divergence-base \"$tmp/no/dir.kld\""

# ---- imatrix ---------------------------------------------------------------------------------------
# stats_near A B REL: two --show-statistics tables, row by row (layer + tensor): sum, min, max, mean,
# spread within REL (+ the printed digit), active share and N equal, entropy and cosine within REL
stats_near() {
  awk -F'\t' -v r="$3" 'function far(a, b, e) { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; return d > r * m + e }
    NR == FNR { if (NF >= 13) row[$1 "|" $2] = $0; next }
    NF >= 13 { k = $1 "|" $2; if (!(k in row)) { print "  no row " k; bad = 1; next }; split(row[k], a, "\t"); seen++
      if (far($3, a[3], .01) || far($4, a[4], 1e-4) || far($5, a[5], 1e-4) || far($6, a[6], .01) || far($7, a[7], .01) ||
          $8 != a[8] || $9 != a[9] || far($10, a[10], 1e-4) || far($13, a[13], 1e-4)) { print "  " k ": " $0 " vs " a[3] " " a[4] " " a[5]; bad = 1 } }
    END { exit bad || seen == 0 }' "$1" "$2"
}
istats() { "$bin" imatrix --in-file "$1" --show-statistics -c 128 >"$2" 2>/dev/null; }
for m in dense-f32 moe-f32; do
  istats $D/imatrix-$m.gguf "$tmp/theirs.st"
  check "$m: --show-statistics prints llama-imatrix's table of its file" \
    "stats_near \"$tmp/theirs.st\" $D/imatrix-$m.stats.txt 2e-5 && diff <(sed 1d \"$tmp/theirs.st\" | cut -f1,2,9) <(sed 1d $D/imatrix-$m.stats.txt | cut -f1,2,9) >/dev/null"
done
for m in dense-f32 moe-f32 dense-q4_k_m; do
  "$bin" imatrix -m "$tmp/$m.gguf" -f $D/text.txt -c 128 -t 1 -o "$tmp/$m.imatrix.gguf" >"$tmp/im.out" 2>"$tmp/im.err"
  check "$m: imatrix runs, and prints llama-imatrix's PPL on the way" \
    "[ $? -eq 0 ] && near $(num "$tmp/im.out" "PPL =") $(num $D/ppl-$m.txt "PPL =") 2e-3"
  case $m in *f32) tol=2e-3;; *) tol=3e-2;; esac
  istats "$tmp/$m.imatrix.gguf" "$tmp/ours.st"; istats $D/imatrix-$m.gguf "$tmp/theirs.st"
  check "$m: our matrix's statistics within $tol of llama-imatrix's matrix's" "stats_near \"$tmp/ours.st\" \"$tmp/theirs.st\" $tol"
done
check "the header: 26 chunks of 128, the text's name" "grep -aq 'text.txt' \"$tmp/dense-f32.imatrix.gguf\" && grep -q '27 entries, 26 chunks of 128' \"$tmp/im.err\" || grep -q 'entries, 26 chunks of 128' \"$tmp/im.err\""
"$bin" imatrix -m "$tmp/moe-f32.gguf" -f $D/text.txt -c 128 -t 1 --chunks 4 --save-frequency 2 --no-ppl \
  --output-format dat -o "$tmp/m.dat" >"$tmp/im.out" 2>&1
check "--chunks 4 --save-frequency 2 --output-format dat: the .dat and its .at_2, .at_4" \
  "[ -s \"$tmp/m.dat\" ] && [ -s \"$tmp/m.dat.at_2\" ] && [ -s \"$tmp/m.dat.at_4\" ] && ! grep -q 'PPL' \"$tmp/im.out\""
"$bin" imatrix --in-file "$tmp/m.dat" -c 128 -o "$tmp/m.gguf" >/dev/null 2>&1 && istats "$tmp/m.gguf" "$tmp/m.st"
check "our .dat read back: 27 tensors" "grep -q '(27 tensors)' \"$tmp/m.st\""
"$bin" imatrix --in-file $D/imatrix-moe-f32.gguf --in-file $D/imatrix-moe-f32.c8.dat -c 128 -o "$tmp/merged.gguf" \
  >/dev/null 2>&1
check "llama-imatrix's GGUF and .dat merged: its merge, byte for byte" "cmp -s \"$tmp/merged.gguf\" $D/imatrix-moe-f32.merged.gguf"
check "a model is not an imatrix" "fails \"$tmp/err\" \"$bin\" imatrix --in-file \"$tmp/dense-f32.gguf\" -o \"$tmp/x.gguf\" && grep -q 'not an imatrix' \"$tmp/err\""
check "nor is a text" "fails \"$tmp/err\" \"$bin\" imatrix --in-file $D/text.txt -o \"$tmp/x.gguf\""
check "no text, no --in-file" "fails \"$tmp/err\" \"$bin\" imatrix -m \"$tmp/dense-f32.gguf\""
check "--show-statistics needs one file" "fails \"$tmp/err\" \"$bin\" imatrix --show-statistics -m \"$tmp/dense-f32.gguf\" -f $D/text.txt"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
