#!/bin/bash
# test_lora_peft.sh PATH/TO/lfm2c — LoRA adapters as PEFT writes them, against a merge made the
# way PEFT loads them (tests/lora/peft_merge.py, Python's re, stdlib only): partial targets
# (layers_to_transform, layers_pattern, exclude_modules, target_modules as an expression or with
# names LFM2 lacks), missing tensors (unchanged modules), rank_pattern / alpha_pattern keys as
# expressions, experts of one module with different alphas, tensors the config does not target
# (ignored); `-v` names the modules and layers applied; refused: what cannot be applied (lora_B
# alone, a shape or a module the model lacks); hostile configs (issue 72): costly or too many
# pattern keys fail fast, ranks and scales that are not finite, integral or sane, values that are
# not finite. The folders are written by tests/lora/peft_from_gguf.py from `synth --lora-for`.
bin=$(readlink -f "${1:?usage: test_lora_peft.sh PATH/TO/lfm2c}")
cd "$(dirname "$0")"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
check() { if eval "$2"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: $1" >&2; fi; }
T=1,32,45,67,300,301,302,7,6,100,101,102
maxdiff() {
  python3 -c '
import array, sys
a, b = array.array("f"), array.array("f")
a.frombytes(open(sys.argv[1], "rb").read()); b.frombytes(open(sys.argv[2], "rb").read())
assert len(a) == len(b) and len(a) > 0
print(max(abs(x - y) for x, y in zip(a, b)))' "$1" "$2" 2>/dev/null || echo 1e9
}
le() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)" "$1" "$2"; }
logits() { local out=$1; shift; rm -f "$out"; "$bin" logits -t 2 --tokens $T -o "$out" "$@" >/dev/null 2>"$tmp/lerr"; }
expect_error() {   # NAME PATTERN CMD...: non-zero exit, one "lfm2c: " line matching PATTERN
  local name=$1 pat=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  check "$name: fails" "[ $rc -ne 0 ] && [ $rc -lt 124 ]"
  check "$name: one-line message" "[ \$(wc -l <\"$tmp/err\") -eq 1 ] && grep -q '^lfm2c: ' \"$tmp/err\""
  check "$name: says '$pat' (got: $(head -c 300 "$tmp/err"))" "grep -q -- \"$pat\" \"$tmp/err\""
}
W="python3 lora/peft_from_gguf.py"

# same_as_merge NAME BASE DIR: the adapter loads, changes the logits, and equals PEFT's merge
same_as_merge() {
  local name=$1 base=$2 dir=$3 d
  if ! python3 lora/peft_merge.py "$base" "$dir" "$tmp/merged.gguf" >/dev/null 2>"$tmp/merr"; then
    check "$name: peft_merge.py ($(tail -1 "$tmp/merr"))" false; return
  fi
  logits "$tmp/run.f32" -m "$base" --lora "$dir"
  check "$name: loads ($(head -c 300 "$tmp/lerr"))" "[ -s \"$tmp/run.f32\" ]"
  logits "$tmp/merged.f32" -m "$tmp/merged.gguf"
  d=$(maxdiff "$tmp/run.f32" "$tmp/merged.f32")
  check "$name: run time == PEFT's merge ($d)" "le $d 1e-3"
  d=$(maxdiff "$tmp/base.f32" "$tmp/run.f32")
  check "$name: the adapter changes the logits ($d)" "le 1e-3 $d"
}
# applied NAME BASE DIR LAYERS [TEXT]: `run -v` describes the adapter; the layers it names are
# exactly LAYERS (comma-separated), and TEXT is in the line
applied() {
  local name=$1 base=$2 dir=$3 want=$4 text=${5:-}
  "$bin" run -m "$base" -p Hello -n 1 --temp 0 -v --lora "$dir" >/dev/null 2>"$tmp/verr"
  local line; line=$(grep "LoRA adapter $dir: " "$tmp/verr")
  local got; got=$(python3 -c '
import re, sys
s = set()
for g in re.findall(r"layers? ([0-9,-]+)", sys.argv[1]):
    for part in g.split(","):
        a, _, b = part.partition("-")
        s.update(range(int(a), int(b or a) + 1))
print(",".join(map(str, sorted(s))))' "$line")
  check "$name: -v names layers $want (got: $(head -c 400 <<<"$line"))" "[ \"$got\" = \"$want\" ]"
  [ -z "$text" ] || check "$name: -v says '$text'" "grep -q -- \"$text\" <<<\"\$line\""
}

for m in dense moe; do
  base=data/lfm2-tiny-$m-f32.gguf ad=$tmp/$m.lora.gguf
  "$bin" synth --lora-for "$base" -o "$ad" --rank 4 --seed 7 >/dev/null 2>&1
  logits "$tmp/base.f32" -m "$base"
  P="$W $ad"
  $P "$tmp/p1" --config 'layers_to_transform=[0,2]'
  same_as_merge "$m: layers_to_transform [0, 2]" "$base" "$tmp/p1"
  applied "$m: layers_to_transform [0, 2]" "$base" "$tmp/p1" 0,2 "self_attn.q_proj layer 2 (rank 4, scale 2)"
  $P "$tmp/p2" --config 'layers_to_transform=[1,3,4]' --config 'layers_pattern="layers"'
  same_as_merge "$m: layers_pattern" "$base" "$tmp/p2"
  applied "$m: layers_pattern" "$base" "$tmp/p2" 1,3,4
  $P "$tmp/p3" --config 'layers_to_transform=5' --config 'layers_pattern=["blocks","layers"]'
  same_as_merge "$m: one layer, the second of two patterns" "$base" "$tmp/p3"
  applied "$m: one layer" "$base" "$tmp/p3" 5
  $P "$tmp/p4" --config 'exclude_modules=["q_proj","w2","in_proj"]'
  same_as_merge "$m: exclude_modules (names)" "$base" "$tmp/p4"
  "$bin" run -m "$base" -p Hello -n 1 --temp 0 -v --lora "$tmp/p4" >/dev/null 2>"$tmp/verr"
  check "$m: excluded modules are not applied" "grep -q 'LoRA adapter' \"$tmp/verr\" && ! grep -qE 'q_proj|w2|in_proj' \"$tmp/verr\""
  $P "$tmp/p5" --config 'exclude_modules="model\\.layers\\.[1-3]\\..*"'
  same_as_merge "$m: exclude_modules (an expression)" "$base" "$tmp/p5"
  applied "$m: exclude_modules (an expression)" "$base" "$tmp/p5" 0,4,5
  $P "$tmp/p6" --config 'target_modules="model\\.layers\\.[0-4]\\..*\\.(in_proj|q_proj|w1)"'
  same_as_merge "$m: target_modules as an expression" "$base" "$tmp/p6"
  $P "$tmp/p7" --targets q_proj,o_proj,gate_proj,w1
  same_as_merge "$m: target_modules naming modules LFM2 lacks" "$base" "$tmp/p7"
  # missing tensors: a whole layer, a module's lora_B (its lora_A alone), an expert
  $P "$tmp/p8" --drop-re 'layers\.1\.' --drop-re 'layers\.4\..*lora_B' --drop-re 'experts\.5\.w3\.' \
    --drop-re 'layers\.3\.feed_forward\.experts\.2\.w1\.lora_B'
  same_as_merge "$m: missing tensors" "$base" "$tmp/p8"
  applied "$m: missing tensors" "$base" "$tmp/p8" 0,2,3,5 "with lora_A alone left unchanged"
  # patterns: expressions and literals, first match wins, ranks cut to match; experts of one
  # module with different alphas
  pats=(--config 'rank_pattern={"model\\.layers\\.[01]\\..*": 2, "w3": 3, "k_proj": 1}'
        --config 'alpha_pattern={"q_proj": 16, "experts\\.[0-3]\\.w1": 2, "layers\\.(4|5)\\..*out_proj": 0.5, "v_proj": -3}')
  $P "$tmp/p9" "${pats[@]}" --cut-rank
  same_as_merge "$m: rank_pattern / alpha_pattern" "$base" "$tmp/p9"
  $P "$tmp/p10" "${pats[@]}" --cut-rank --rslora
  same_as_merge "$m: patterns with use_rslora" "$base" "$tmp/p10"
  # tensors of modules the config does not target: ignored, as PEFT does
  $P "$tmp/p11" --config 'layers_to_transform=[0,5]' --keep-all
  same_as_merge "$m: untargeted tensors ignored" "$base" "$tmp/p11"
  applied "$m: untargeted tensors ignored" "$base" "$tmp/p11" 0,5 "tensors ignored"
  rm -rf "$tmp"/p*
done

# ---- what cannot be applied is refused ---------------------------------------------------------
moe=data/lfm2-tiny-moe-f32.gguf mad=$tmp/moe.lora.gguf P="$W $mad" pre=base_model.model.model.layers
$P "$tmp/b1" --drop $pre.2.self_attn.q_proj.lora_A.weight
expect_error "lora_B alone" "q_proj.lora_B.weight' has no lora_A" "$bin" logits --tokens $T -o "$tmp/x" -m "$moe" --lora "$tmp/b1"
$P "$tmp/b2" --extra $pre.0.conv.in_proj.lora_A.weight
expect_error "a shape the model does not have" "has shape \[8, 4, 1\], the base wants \[64, 4, 1\]" "$bin" logits --tokens $T -o "$tmp/x" -m "$moe" --lora "$tmp/b2"
$P "$tmp/b3" --extra $pre.0.self_attn.q_proj.lora_A.weight
expect_error "a module the model does not have" "the model has no attn_q.weight in layer 0" "$bin" logits --tokens $T -o "$tmp/x" -m "$moe" --lora "$tmp/b3"
$P "$tmp/b4" --extra $pre.9.self_attn.q_proj.lora_A.weight
expect_error "a layer the model does not have" "layers.9.self_attn.q_proj.lora_A.weight' (F32, 2 dims) does not fit" "$bin" logits --tokens $T -o "$tmp/x" -m "$moe" --lora "$tmp/b4"
$P "$tmp/b5" --config 'layers_to_transform=[7]' --keep-all
expect_error "an adapter that changes nothing" "changes nothing" "$bin" logits --tokens $T -o "$tmp/x" -m "$moe" --lora "$tmp/b5"

# ---- hostile configs: each fails fast with a clear message ---------------------------------------
# hostile NAME PATTERN JSON-EDIT: a folder whose config python's JSON-EDIT (on dict c) changed
hostile() {
  local name=$1 pat=$2 edit=$3
  rm -rf "$tmp/h"; $P "$tmp/h"
  python3 -c "import json, sys; p = sys.argv[1]; c = json.load(open(p)); $edit; json.dump(c, open(p, 'w'))" "$tmp/h/adapter_config.json"
  expect_error "$name" "$pat" timeout 20 "$bin" logits --tokens $T -o "$tmp/x" -m "$moe" --lora "$tmp/h"
}
hostile "a key of nested counted repetitions" "rank_pattern key '(.{1,255}){1,255}'" 'c["rank_pattern"] = {"(.{1,255}){1,255}": 4}'
hostile "a key under the state caps but over the budget" "alpha_pattern key .(.{1,120}){1,120}.: too costly" 'c["alpha_pattern"] = {"(.{1,120}){1,120}": 2}'
hostile "40000 keys" "rank_pattern must be an object of at most 4096 keys" 'c["rank_pattern"] = {"nomatch%d" % i: 2 for i in range(40000)}'
hostile "a key of 4 KB" "is longer than 512 bytes" 'c["alpha_pattern"] = {"x" * 4096: 2}'
hostile "a rank of 1e300" "rank_pattern\['w2'\] must be an integer from 1 to 1024" 'c["rank_pattern"] = {"w2": 1e300}'
hostile "a rank of 2.5" "rank_pattern\['w2'\] must be an integer" 'c["rank_pattern"] = {"w2": 2.5}'
hostile "a rank of 0" "rank_pattern\['w2'\] must be an integer" 'c["rank_pattern"] = {"w2": 0}'
hostile "a rank as text" "rank_pattern\['w2'\] must be an integer" 'c["rank_pattern"] = {"w2": "4"}'
hostile "lora_alpha 1e300" "scale 2.5e+299 (alpha 1e+300 / 4) is over 10000" 'c["lora_alpha"] = 1e300'
hostile "an alpha_pattern of 1e300" "scale .* is over 10000" 'c["alpha_pattern"] = {"q_proj": 1e300}'
hostile "rank_pattern not an object" "rank_pattern must be an object" 'c["rank_pattern"] = ["w2"]'
hostile "layers_to_transform of text" "layers_to_transform must be an integer or a list" 'c["layers_to_transform"] = ["0"]'
hostile "a key the engine refuses" "alpha_pattern key '(?<=x)w1'" 'c["alpha_pattern"] = {"(?<=x)w1": 2}'
# 4096 keys that match nothing: the load stays fast (each compiled once)
rm -rf "$tmp/h"; $P "$tmp/h"
python3 -c 'import json, sys; p = sys.argv[1]; c = json.load(open(p)); c["rank_pattern"] = {"nomatch[0-9]+x%d" % i: 2 for i in range(4096)}; json.dump(c, open(p, "w"))' "$tmp/h/adapter_config.json"
start=$(date +%s.%N)
timeout 60 "$bin" logits --tokens $T -o "$tmp/x" -m "$moe" --lora "$tmp/h" >/dev/null 2>"$tmp/err"
rc=$? secs=$(python3 -c "import sys; print(round($(date +%s.%N) - $start, 1))")
check "4096 expression keys that match nothing load ($(head -c 200 "$tmp/err"))" "[ $rc -eq 0 ]"
check "... within 20 s ($secs s)" "le $secs 20"
# values that are not finite
rm -rf "$tmp/h"; $P "$tmp/h"
python3 - "$tmp/h/adapter_model.safetensors" <<'EOF'
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read()); n = struct.unpack_from("<Q", b)[0]
h = json.loads(b[8:8 + n]); a = h["base_model.model.model.layers.3.conv.out_proj.lora_B.weight"]["data_offsets"][0]
struct.pack_into("<f", b, 8 + n + a + 8, float("nan")); open(sys.argv[1], "wb").write(b)
EOF
expect_error "PEFT: a NaN in lora_B" "conv.out_proj.lora_B.weight' holds a value that is not finite" "$bin" logits --tokens $T -o "$tmp/x" -m "$moe" --lora "$tmp/h"
# GGUF adapters: alpha and values
gguf_edit() {  # FILE PYTHON: PYTHON on the bytes b and the tensors' layout t (name -> (ne, type, offset))
  python3 -c "
import struct, sys; sys.path.insert(0, 'lora'); from peft_merge import read_gguf_layout
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); t = read_gguf_layout(b)
$2
open(p, 'wb').write(b)" "$1"
}
cp "$mad" "$tmp/g1.gguf"
gguf_edit "$tmp/g1.gguf" 'k = b.index(b"adapter.lora.alpha") + len("adapter.lora.alpha"); assert struct.unpack_from("<I", b, k)[0] == 6; struct.pack_into("<f", b, k + 4, 3e38)'
expect_error "GGUF: adapter.lora.alpha 3e38" "scale .* is not finite or over 10000" "$bin" logits --tokens $T -o "$tmp/x" -m "$moe" --lora "$tmp/g1.gguf"
cp "$mad" "$tmp/g2.gguf"
gguf_edit "$tmp/g2.gguf" 'struct.pack_into("<f", b, t["blk.4.ffn_up_exps.weight.lora_a"][2] + 4, float("inf"))'
expect_error "GGUF: an infinity in lora_a" "ffn_up_exps.weight.lora_a' holds a value that is not finite" "$bin" logits --tokens $T -o "$tmp/x" -m "$moe" --lora "$tmp/g2.gguf"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
