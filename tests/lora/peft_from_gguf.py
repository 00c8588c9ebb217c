#!/usr/bin/env python3
"""peft_from_gguf.py — writes a LoRA adapter in PEFT's layout (adapter_config.json +
adapter_model.safetensors) from a GGUF adapter of F32 tensors, with the Python standard library
only, for tests/test_lora_cli.sh: the same A and B under PEFT's names, so lfm2c must give the same
logits for both forms.

usage: peft_from_gguf.py ADAPTER.gguf OUT_DIR [--rslora] [--drop NAME] [--drop-re RE] [--extra NAME]
                         [--rank-pattern KEY=R] [--targets a,b,c] [--config KEY=JSON] [--cut-rank]
                         [--keep-all]
  --rslora        write use_rslora with the lora_alpha that gives the same scale (alpha_gguf * sqrt(r) / r)
  --drop NAME     leave out the PEFT tensor NAME (a bad adapter, or a module left unchanged)
  --drop-re RE    leave out the PEFT tensors whose names RE matches (re.search)
  --extra NAME    add a [r, 8] tensor NAME (a bad adapter)
  --rank-pattern KEY=R  rank_pattern[KEY] = R in the config only (the tensors keep their rank)
  --config KEY=JSON     adapter_config.json's KEY set to the JSON value (layers_to_transform,
                  layers_pattern, exclude_modules, target_modules, rank_pattern, alpha_pattern, ...)
  --cut-rank      cut each module's A and B to the rank its rank_pattern gives (a real rank pattern)
  --keep-all      keep the tensors of modules the config does not target (PEFT saves only the
                  targeted ones, peft_merge.targeted: the default)
"""
import json, math, os, re, struct, sys

from peft_merge import rank_scale, targeted

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
    opts = {"--drop": [], "--drop-re": [], "--extra": [], "--rank-pattern": [], "--config": [], "--targets": None,
            "--rslora": False, "--cut-rank": False, "--keep-all": False}
    i = 2
    while i < len(args):
        if args[i] in ("--rslora", "--cut-rank", "--keep-all"):
            opts[args[i]] = True
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
    cfg = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "bias": "none", "fan_in_fan_out": False,
        "lora_alpha": alpha,
        "use_rslora": False, "use_dora": False, "lora_dropout": 0.0,
        "target_modules": opts["--targets"] or sorted(targets), "rank_pattern": {}, "alpha_pattern": {},
    }
    if opts["--rslora"]:
        cfg["use_rslora"] = True
        cfg["lora_alpha"] = alpha / math.sqrt(r)   # alpha' / sqrt(r) == alpha / r
    for kv in opts["--config"]:
        k, v = kv.split("=", 1)
        cfg[k] = json.loads(v)
    for name in list(out_t):
        module = name[len("base_model.model."):].rsplit(".lora_", 1)[0]
        if not opts["--keep-all"] and not targeted(cfg, module):
            del out_t[name]
        elif opts["--cut-rank"]:
            want = rank_scale(cfg, module)[0]
            shape, data = out_t[name]
            if ".lora_A." in name:   # [r, in]: the first rows
                out_t[name] = ([want, shape[1]], data[:4 * want * shape[1]])
            else:                    # [out, r]: the first columns of each row
                out_t[name] = ([shape[0], want], b"".join(data[4 * o * r:4 * (o * r + want)] for o in range(shape[0])))
    for name in opts["--drop"]:
        del out_t[name]
    for pat in opts["--drop-re"]:
        for name in [n for n in out_t if re.search(pat, n)]:
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
    for kvp in opts["--rank-pattern"]:
        k, v = kvp.split("=")
        cfg["rank_pattern"][k] = int(v)
    with open(os.path.join(out, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


if __name__ == "__main__":
    main()
