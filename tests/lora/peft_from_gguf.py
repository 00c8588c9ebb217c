#!/usr/bin/env python3
"""peft_from_gguf.py — writes a LoRA adapter in PEFT's layout (adapter_config.json +
adapter_model.safetensors) from a GGUF adapter of F32 tensors, with the Python standard library
only, for tests/test_lora_cli.sh: the same A and B under PEFT's names, so lfm2c must give the same
logits for both forms.

usage: peft_from_gguf.py ADAPTER.gguf OUT_DIR [--rslora] [--drop NAME] [--extra NAME]
                         [--rank-pattern KEY=R] [--targets a,b,c]
  --rslora        write use_rslora with the lora_alpha that gives the same scale (alpha_gguf * sqrt(r) / r)
  --drop NAME     leave out the PEFT tensor NAME (a bad adapter)
  --extra NAME    add a [r, 8] tensor NAME (a bad adapter)
"""
import json, math, os, struct, sys

GGUF_TO_HF = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.out_proj", "shortconv.in_proj": "conv.in_proj",
    "shortconv.out_proj": "conv.out_proj", "ffn_gate": "feed_forward.w1", "ffn_down": "feed_forward.w2",
    "ffn_up": "feed_forward.w3", "ffn_gate_exps": "feed_forward.experts.{e}.w1",
    "ffn_down_exps": "feed_forward.experts.{e}.w2", "ffn_up_exps": "feed_forward.experts.{e}.w3",
}
SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def read_gguf(path):
    buf = open(path, "rb").read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("Q")
        s = buf[pos:pos + n].decode()
        pos += n
        return s

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        return take(SCALAR[t])

    assert buf[:4] == b"GGUF"
    pos = 4
    take("I")
    n_tensors, n_kv = take("Q"), take("Q")
    kv = {}
    for _ in range(n_kv):
        k = string()
        kv[k] = value(take("I"))
    infos = []
    for _ in range(n_tensors):
        name = string()
        nd = take("I")
        ne = [take("Q") for _ in range(nd)]
        typ, off = take("I"), take("Q")
        assert typ == 0, "F32 adapters only"
        infos.append((name, ne, off))
    align = kv.get("general.alignment", 32)
    base = (pos + align - 1) // align * align
    tensors = {}
    for name, ne, off in infos:
        n = math.prod(ne)
        tensors[name] = (ne, buf[base + off:base + off + 4 * n])
    return kv, tensors


def main():
    args = sys.argv[1:]
    src, out = args[0], args[1]
    opts = {"--drop": [], "--extra": [], "--rank-pattern": [], "--targets": None, "--rslora": False}
    i = 2
    while i < len(args):
        if args[i] == "--rslora":
            opts["--rslora"] = True
            i += 1
        elif args[i] == "--targets":
            opts["--targets"] = args[i + 1].split(",")
            i += 2
        else:
            opts[args[i]].append(args[i + 1])
            i += 2
    kv, tensors = read_gguf(src)
    alpha = kv["adapter.lora.alpha"]
    out_t = {}
    ranks, targets = set(), set()
    for name, (ne, data) in tensors.items():
        base, side = name.rsplit(".lora_", 1)
        assert base.startswith("blk.") and base.endswith(".weight")
        layer, module = base[4:-7].split(".", 1)
        hf = GGUF_TO_HF[module]
        targets.add(hf.rsplit(".", 1)[1])
        n_exp = ne[2] if len(ne) == 3 else 1
        per = len(data) // n_exp
        shape = [ne[1], ne[0]]                     # torch order: A [r, in], B [out, r]
        ranks.add(ne[1] if side == "a" else ne[0])
        for e in range(n_exp):
            peft = "base_model.model.model.layers.%s.%s.lora_%s.weight" % (layer, hf.format(e=e), side.upper())
            out_t[peft] = (shape, data[e * per:(e + 1) * per])
    assert len(ranks) == 1, "one rank"
    r = ranks.pop()
    for name in opts["--drop"]:
        del out_t[name]
    for name in opts["--extra"]:
        out_t[name] = ([r, 8], b"\0" * (4 * r * 8))
    os.makedirs(out, exist_ok=True)
    header, off, blobs = {}, 0, []
    for name in sorted(out_t):
        shape, data = out_t[name]
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    header["__metadata__"] = {"format": "pt"}
    hj = json.dumps(header).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(os.path.join(out, "adapter_model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj + b"".join(blobs))
    cfg = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "bias": "none", "fan_in_fan_out": False,
        "lora_alpha": alpha,
        "use_rslora": False, "use_dora": False, "lora_dropout": 0.0,
        "target_modules": opts["--targets"] or sorted(targets), "rank_pattern": {}, "alpha_pattern": {},
    }
    if opts["--rslora"]:
        cfg["use_rslora"] = True
        cfg["lora_alpha"] = alpha / math.sqrt(r)   # alpha' / sqrt(r) == alpha / r
    for kvp in opts["--rank-pattern"]:
        k, v = kvp.split("=")
        cfg["rank_pattern"][k] = int(v)
    with open(os.path.join(out, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


main()
