#!/usr/bin/env bash
# test_convert_cli.sh — `lfm2c convert` from the command line: a tiny BF16 Hugging Face checkpoint
# written here (python3, standard library only) converts to every --type, the engine loads the
# results, BF16 and F32 conversions give identical logits, and bad invocations fail with one
# clear line and leave no output file behind; a LoRA merge (convert BASE --lora) on 1 and 3
# threads writes the same file, with a progress bar on a terminal.
set -u
LFM2C=${1:?usage: test_convert_cli.sh PATH/TO/lfm2c}
T=$(mktemp -d /tmp/lfm2c-convert-sh-XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $*" >&2; fi; }

python3 - "$T/hf" <<'EOF'
import json, os, random, struct, sys
d = sys.argv[1]; os.makedirs(d)
H, F, V, L = 64, 128, 320, 2
rng = random.Random(5)
def bf16(n, scale):
    return b''.join(struct.pack('<f', rng.gauss(0, scale))[2:] for _ in range(n))
shapes = [("model.embed_tokens.weight", [V, H])]
for l in range(L):
    p = f"model.layers.{l}."
    shapes.append((p + "operator_norm.weight", [H]))
    if l == 0:
        shapes += [(p + "conv.conv.weight", [H, 1, 3]), (p + "conv.in_proj.weight", [3 * H, H]),
                   (p + "conv.out_proj.weight", [H, H])]
    else:
        shapes += [(p + "self_attn.q_proj.weight", [H, H]), (p + "self_attn.k_proj.weight", [32, H]),
                   (p + "self_attn.v_proj.weight", [32, H]), (p + "self_attn.out_proj.weight", [H, H]),
                   (p + "self_attn.q_layernorm.weight", [16]), (p + "self_attn.k_layernorm.weight", [16])]
    shapes += [(p + "ffn_norm.weight", [H]), (p + "feed_forward.w1.weight", [F, H]),
               (p + "feed_forward.w3.weight", [F, H]), (p + "feed_forward.w2.weight", [H, F])]
shapes.append(("model.embedding_norm.weight", [H]))
header, blobs, off = {}, [], 0
for name, shape in shapes:
    n = 1
    for s in shape: n *= s
    blob = bf16(n, 0.02) if len(shape) > 1 else b''.join(struct.pack('<f', 1.0 + rng.uniform(-.1, .1))[2:] for _ in range(n))
    header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [off, off + len(blob)]}
    blobs.append(blob); off += len(blob)
h = json.dumps(header).encode(); h += b' ' * ((8 - len(h) % 8) % 8)
with open(os.path.join(d, "model.safetensors"), "wb") as f:
    f.write(struct.pack('<Q', len(h))); f.write(h); [f.write(b) for b in blobs]
json.dump({"model_type": "lfm2", "hidden_size": H, "num_hidden_layers": L, "num_attention_heads": 4,
           "num_key_value_heads": 2, "block_ff_dim": F, "block_auto_adjust_ff_dim": False, "vocab_size": V,
           "max_position_embeddings": 2048, "layer_types": ["conv", "full_attention"], "norm_eps": 1e-5,
           "rope_theta": 1000000.0, "conv_L_cache": 3, "tie_embedding": True}, open(os.path.join(d, "config.json"), "w"))
bs = list(range(0x21, 0x7f)) + list(range(0xa1, 0xad)) + list(range(0xae, 0x100))
cs, k = bs[:], 0
for b in range(256):
    if b not in bs: bs.append(b); cs.append(256 + k); k += 1
vocab = {chr(c): 16 + b for b, c in zip(bs, cs)}
for i in range(272, V): vocab[f"w{i}"] = i
specials = ["<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|fim_pre|>", "<|fim_mid|>", "<|fim_suf|>", "<|im_start|>",
            "<|im_end|>"] + [f"<|reserved_{i}|>" for i in range(8)]
added = [{"id": i, "content": s, "special": True, "normalized": False} for i, s in enumerate(specials)]
json.dump({"added_tokens": added, "model": {"type": "BPE", "vocab": vocab, "merges": []}},
          open(os.path.join(d, "tokenizer.json"), "w"))
json.dump({"add_bos_token": True, "bos_token": "<|startoftext|>", "eos_token": "<|im_end|>", "pad_token": "<|pad|>"},
          open(os.path.join(d, "tokenizer_config.json"), "w"))
open(os.path.join(d, "chat_template.jinja"), "w").write("{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}")
EOF
ok test -f "$T/hf/model.safetensors"

for ty in f32 bf16 f16 q8_0; do
  ok "$LFM2C" convert "$T/hf" -o "$T/m-$ty.gguf" --type "$ty" -t 2 >"$T/out-$ty.txt" 2>&1
  ok grep -q "tensors: 21" "$T/out-$ty.txt"
  ok grep -q "MB/s" "$T/out-$ty.txt"
  ok test ! -e "$T/m-$ty.gguf.tmp"
done
ok grep -q "F32: 21" "$T/out-f32.txt"
ok grep -q "BF16: 13" "$T/out-bf16.txt"
ok grep -q "Q8_0: 13" "$T/out-q8_0.txt"

# the engine loads the conversions; BF16 weights are exact in both files
ok "$LFM2C" logits -m "$T/m-f32.gguf" --tokens 1,20,40,300,7,100 --reference -o "$T/l32.bin"
ok "$LFM2C" logits -m "$T/m-bf16.gguf" --tokens 1,20,40,300,7,100 --reference -o "$T/lbf.bin"
ok cmp -s "$T/l32.bin" "$T/lbf.bin"
ok test -s "$T/l32.bin"
ok "$LFM2C" logits -m "$T/m-q8_0.gguf" --tokens 1,20,40,300,7,100 -o "$T/lq8.bin"

# bad invocations: one line "lfm2c: ...", non-zero exit, nothing written
fails_with() {  # fails_with NEEDLE ARGS...
  local needle=$1; shift
  "$LFM2C" convert "$@" >"$T/err.txt" 2>&1 && return 1
  grep -q "^lfm2c: .*$needle" "$T/err.txt" || { cat "$T/err.txt" >&2; return 1; }
}
ok fails_with "unknown --type 'q4_0'" "$T/hf" -o "$T/bad.gguf" --type q4_0
ok fails_with "needs HF_DIR" "$T/hf"
ok fails_with "config.json" "$T/nope" -o "$T/bad.gguf"
cp -r "$T/hf" "$T/hf2"
sed -i 's/"lfm2"/"mamba"/' "$T/hf2/config.json"
ok fails_with "unsupported model_type 'mamba'" "$T/hf2" -o "$T/bad.gguf"
cp "$T/hf/config.json" "$T/hf2/config.json"
truncate -s 5000 "$T/hf2/model.safetensors"
ok fails_with "truncated" "$T/hf2" -o "$T/bad.gguf"
ok test ! -e "$T/bad.gguf"
ok test ! -e "$T/bad.gguf.tmp"

# convert BASE --lora A -o MERGED: -t spreads the rows over threads (the file is the same whatever
# their number, and as without -t), the count is reported; a progress bar on a terminal (script(1)
# gives the command a tty), none in a pipe
B=data/lfm2-kq-moe-q4_k_m.gguf
"$LFM2C" synth --lora-for "$B" -o "$T/ad.gguf" --rank 4 --seed 3 >/dev/null 2>&1
ok test -s "$T/ad.gguf"
"$LFM2C" convert "$B" --lora "$T/ad.gguf" -o "$T/m1.gguf" -t 1 >"$T/m1.out" 2>"$T/m1.err"
ok grep -q "merged 1 adapter(s) .* (1 thread," "$T/m1.out"
ok test ! -s "$T/m1.err"
"$LFM2C" convert "$B" --lora "$T/ad.gguf" -o "$T/m3.gguf" -t 3 >"$T/m3.out" 2>&1
ok grep -q "merged 1 adapter(s) .* (3 threads," "$T/m3.out"
ok cmp -s "$T/m1.gguf" "$T/m3.gguf"
"$LFM2C" convert "$B" --lora "$T/ad.gguf" -o "$T/md.gguf" >/dev/null 2>&1
ok cmp -s "$T/m1.gguf" "$T/md.gguf"
ok test "$(stat -c %s "$T/m1.gguf")" -eq "$(stat -c %s "$B")"
if command -v script >/dev/null; then
  script -qec "'$LFM2C' convert '$B' --lora '$T/ad.gguf' -o '$T/mt.gguf' -t 2" /dev/null >"$T/tty" 2>&1
  ok grep -q "\[#*\] *[0-9]*%  blk\." "$T/tty"
  ok cmp -s "$T/m1.gguf" "$T/mt.gguf"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
