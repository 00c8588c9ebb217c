#!/bin/bash
# test_quantize_imatrix.sh PATH/TO/lfm2c — `lfm2c quantize` with importance matrices and the low-bit
# file types against llama-quantize: synthetic dense and MoE models (rows of 256, ffn rows of 320
# that fall back), the imatrix files llama-imatrix made for them, and the SHA-256 of
# llama-quantize's output per file type (data/quant/goldens.sha256; data/quant/README.md says how
# they were made). By default 8 of the 51 cases run (about 15 s); LFM2C_QUANT_ALL=1 runs
# all, LFM2C_QUANT_CASES="NAME ..." those (the sanitized build: 4; the last ends in moe-opt1). Then the refusals: no imatrix for a type that needs one, an imatrix of another model, a
# malformed one, bad options; and a quantized output loads and generates.
bin=$(readlink -f "${1:?usage: test_quantize_imatrix.sh PATH/TO/lfm2c}")
data=$(readlink -f "$(dirname "$0")/data/quant")
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
check() { if eval "$2"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: $1" >&2; fi; }
golden() { awk -v n="$1" '$1 == n {print $2}' "$data/goldens.sha256"; }
sha() { sha256sum "$1" | cut -c1-64; }
cd "$tmp" || exit 1
cp "$data/dense.imatrix.gguf" "$data/moe.imatrix.gguf" "$data/moe.imatrix.dat" .

"$bin" synth --preset lfm2-1.2b --type f16 -o dense.gguf --hidden 256 --layers 8 --attn-layers 2,5 --heads 4 \
  --kv-heads 1 --ff 320 --vocab 512 --seed 5 >/dev/null
"$bin" synth --preset lfm2-8b-a1b --type f16 -o moe.gguf --hidden 256 --layers 6 --attn-layers 2,4 --heads 4 \
  --kv-heads 2 --ff 512 --experts 8 --experts-used 2 --expert-ff 256 --dense-layers 2 --vocab 512 --seed 7 >/dev/null
check "synth dense input as recorded" "[ \"$(sha dense.gguf)\" = \"$(golden input-dense)\" ]"
check "synth moe input as recorded" "[ \"$(sha moe.gguf)\" = \"$(golden input-moe)\" ]"

# case NAME: MODEL-FTYPE (with MODEL.imatrix.gguf), MODEL-FTYPE-noim, moe-IQ2_XXS-dat, moe-opt1, dense-opt2
run_case() {
  local name=$1 m=${1%%-*} rest=${1#*-} args
  case $name in
    moe-opt1) args=(--imatrix moe.imatrix.gguf --tensor-type "ffn_down=q5_k" --tensor-type "blk\.[0-2]\.attn=iq4_xs"
                    --output-tensor-type q8_0 --token-embedding-type iq3_s moe.gguf out.gguf IQ2_XS) ;;
    dense-opt2) args=(--imatrix dense.imatrix.gguf --leave-output-tensor dense.gguf out.gguf Q3_K_M) ;;
    *-dat) args=(--imatrix "$m.imatrix.dat" "$m.gguf" out.gguf "${rest%-dat}") ;;
    *-noim) args=("$m.gguf" out.gguf "${rest%-noim}") ;;
    *) args=(--imatrix "$m.imatrix.gguf" "$m.gguf" out.gguf "$rest") ;;
  esac
  rm -f out.gguf
  "$bin" quantize "${args[@]}" -t 2 >/dev/null 2>err.txt
  check "$name: quantize succeeds ($(head -c 200 err.txt))" "[ -s out.gguf ]"
  check "$name: output byte-identical to llama-quantize's" "[ \"\$(sha out.gguf)\" = \"$(golden "$name")\" ]"
}
subset=${LFM2C_QUANT_CASES:-dense-Q2_K_S dense-IQ3_XS dense-IQ2_M dense-IQ1_M dense-IQ4_NL-noim dense-opt2 moe-IQ2_XXS-dat moe-opt1}
[ "${LFM2C_QUANT_ALL:-0}" = 1 ] && subset=$(awk '$1 !~ /^input-/ {print $1}' "$data/goldens.sha256")
for c in $subset; do run_case "$c"; done

# a quantized output (the last case's: moe-opt1, IQ2_XS with IQ4_XS, Q5_K, IQ3_S, Q8_0) loads and generates
"$bin" run -m out.gguf --raw -p "the cat" -n 3 --temp 0 >out.txt 2>&1
check "a low-bit output runs" "[ \$? -eq 0 ] && [ -s out.txt ]"

# expect_error NAME PATTERN ARGS...: non-zero exit, one "lfm2c: " line naming PATTERN, no output left
expect_error() {
  local name=$1 pat=$2; shift 2
  rm -f x.gguf x.gguf.tmp
  "$bin" quantize "$@" >/dev/null 2>err.txt; local rc=$?
  check "$name: non-zero exit" "[ $rc -ne 0 ]"
  check "$name: says '$pat' ($(head -c 200 err.txt))" "grep -q '^lfm2c: .*$pat' err.txt && [ \$(wc -l <err.txt) -eq 1 ]"
  check "$name: no output left" "[ ! -e x.gguf ] && [ ! -e x.gguf.tmp ]"
}
expect_error "no imatrix for IQ2_XXS" "needs an importance matrix" dense.gguf x.gguf IQ2_XXS
expect_error "no imatrix for Q2_K_S" "needs an importance matrix" dense.gguf x.gguf Q2_K_S
expect_error "imatrix of another model" "imatrix size 320 is different from tensor size 512" \
  --imatrix dense.imatrix.gguf moe.gguf x.gguf IQ2_XXS
head -c 3000 moe.imatrix.gguf >cut.gguf
expect_error "truncated imatrix" "imatrix\|cut\|truncated\|bad" --imatrix cut.gguf moe.gguf x.gguf IQ2_XXS
printf 'junk junk junk junk' >junk.dat
expect_error "malformed imatrix" "imatrix" --imatrix junk.dat moe.gguf x.gguf IQ2_XXS
expect_error "missing imatrix file" "imatrix" --imatrix nonexistent.gguf moe.gguf x.gguf IQ2_XXS
expect_error "--tensor-type without =" "PATTERN=TYPE" --tensor-type ffn_down dense.gguf x.gguf Q3_K_M
expect_error "--tensor-type bad type" "not a type quantize makes" --tensor-type ffn_down=q9_z dense.gguf x.gguf Q3_K_M
expect_error "--tensor-type bad pattern" "bad pattern" --tensor-type "blk[=q4_k" dense.gguf x.gguf Q3_K_M
expect_error "--output-tensor-type bad type" "not a type quantize makes" --output-tensor-type q8_1 dense.gguf x.gguf Q3_K_M
expect_error "--tensor-type bad pattern" "bad pattern" --tensor-type "ffn_(=q4_k" dense.gguf x.gguf Q3_K_M
expect_error "IQ2_XXS embeddings without weights" "without importance weights" \
  --token-embedding-type iq2_xxs dense.gguf x.gguf Q4_K_M

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
