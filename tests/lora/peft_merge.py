#!/usr/bin/env python3
"""peft_merge.py — merges a LoRA adapter in PEFT's layout into an F32 base GGUF the way PEFT
loads it, with the Python standard library only, for tests/test_lora_peft.sh: an independent
reference for lfm2c's run-time adapter (same logits within float rounding).

usage: peft_merge.py BASE.gguf PEFT_DIR OUT.gguf

PEFT's rules (its source: tuners_utils.check_target_module_exists, other.get_pattern_key), with
Python's re as PEFT uses it:
  - a module carries LoRA when the config targets it (exclude_modules, modules_to_save,
    target_modules: an expression matched whole or a list of names, equal or a "."-suffix;
    layers_to_transform / layers_pattern with a list);
  - a targeted module with lora_A and lora_B: W += scale * B @ A; without them, or with lora_A
    alone, unchanged (PEFT starts B at zero); lora_B alone: an error (A would be random);
    tensors of modules not targeted are ignored;
  - rank and alpha: the first key of rank_pattern / alpha_pattern matching "(.*\\.)?(KEY)$",
    scale alpha / r (alpha / sqrt(r) with use_rslora).
The merged file is the base's bytes with the adapted F32 tensors rewritten in place.
"""
import json, math, os, re, struct, sys

HF_TO_GGUF = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.out_proj": "attn_output", "conv.in_proj": "shortconv.in_proj",
    "conv.out_proj": "shortconv.out_proj", "feed_forward.w1": "ffn_gate", "feed_forward.w2": "ffn_down",
    "feed_forward.w3": "ffn_up", "feed_forward.experts.w1": "ffn_gate_exps",
    "feed_forward.experts.w2": "ffn_down_exps", "feed_forward.experts.w3": "ffn_up_exps",
}
SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def targeted(cfg, key):
    """PEFT's check_target_module_exists for a LoraConfig given as adapter_config.json's dict."""
    ex = cfg.get("exclude_modules")
    if ex:
        if isinstance(ex, str):
            if re.fullmatch(ex, key):
                return False
        elif key in ex or any(key.endswith("." + e) for e in ex):
            return False
    save = cfg.get("modules_to_save")
    if save and any(re.match(rf"(^|.*\.){m}($|\..*)", key) for m in save):
        return False
    tm = cfg.get("target_modules")
    if tm is None or tm == "all-linear":
        return True
    if isinstance(tm, str):
        return re.fullmatch(tm, key) is not None
    if key in tm:
        return True
    found = any(key.endswith("." + t) for t in tm)
    layers = cfg.get("layers_to_transform")
    if found and layers is not None and (not isinstance(layers, list) or len(layers)):
        pats = cfg.get("layers_pattern")
        m = None
        if pats is None or len(pats) == 0:
            m = re.match(r".*?\.[^.]*\.(\d+)\.", key)
        else:
            for p in [pats] if isinstance(pats, str) else pats:
                m = re.match(rf".*?\.{p}\.(\d+)\.", key)
                if m:
                    break
        if m is None:
            return False
        i = int(m.group(1))
        return i == layers if isinstance(layers, int) else i in layers
    return found


def pattern_key(keys, name):
    """PEFT's get_pattern_key: the first key matching, else the name itself."""
    for k in keys:
        if re.match(rf"(.*\.)?({k})$", name):
            return k
    return name


def rank_scale(cfg, name):
    rp, ap = cfg.get("rank_pattern") or {}, cfg.get("alpha_pattern") or {}
    r = rp.get(pattern_key(rp.keys(), name), cfg["r"])
    alpha = ap.get(pattern_key(ap.keys(), name), cfg["lora_alpha"])
    return r, alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r


def read_safetensors(path):
    buf = open(path, "rb").read()
    n = struct.unpack_from("<Q", buf)[0]
    header = json.loads(buf[8:8 + n])
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        assert h["dtype"] == "F32", "F32 adapters only"
        a, b = h["data_offsets"]
        vals = struct.unpack("<%df" % ((b - a) // 4), buf[8 + n + a:8 + n + b])
        out[name] = (h["shape"], vals)
    return out


def read_gguf_layout(buf):
    """name -> (ne, absolute offset of its data) of an F32 GGUF."""
    pos = 4

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, buf, pos)[0]
        pos += struct.calcsize("<" + fmt)
        return v

    def value(t):
        nonlocal pos
        if t == 8:
            n = take("Q")
            pos += n
            return None
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        return take(SCALAR[t])

    def string():
        nonlocal pos
        n = take("Q")
        pos += n
        return buf[pos - n:pos].decode()

    take("I")
    n_tensors, n_kv = take("Q"), take("Q")
    align = 32
    for _ in range(n_kv):
        k = string()
        v = value(take("I"))
        if k == "general.alignment":
            align = v
    infos = []
    for _ in range(n_tensors):
        name = string()
        nd = take("I")
        ne = [take("Q") for _ in range(nd)]
        typ, off = take("I"), take("Q")
        infos.append((name, ne, typ, off))
    base = (pos + align - 1) // align * align
    return {name: (ne, typ, base + off) for name, ne, typ, off in infos}


def module_of(tname):
    """"base_model.model.model.layers.L.<mod>.lora_X.weight" -> (module name, layer, hf, expert, side)."""
    m = re.fullmatch(r"base_model\.model\.(model\.layers\.(\d+)\.(.+))\.lora_([AB])\.weight", tname)
    assert m, "not a LoRA tensor: " + tname
    module, layer, mod, side = m.group(1), int(m.group(2)), m.group(3), m.group(4)
    e = re.fullmatch(r"feed_forward\.experts\.(\d+)\.(w[123])", mod)
    if e:
        return module, layer, "feed_forward.experts." + e.group(2), int(e.group(1)), side
    return module, layer, mod, 0, side


def main():
    base_path, adir, out_path = sys.argv[1:4]
    cfg = json.load(open(os.path.join(adir, "adapter_config.json")))
    tensors = read_safetensors(os.path.join(adir, "adapter_model.safetensors"))
    buf = bytearray(open(base_path, "rb").read())
    layout = read_gguf_layout(buf)
    pairs = {}
    for tname, (shape, vals) in tensors.items():
        module, layer, hf, expert, side = module_of(tname)
        if targeted(cfg, module):
            pairs.setdefault((module, layer, hf, expert), {})[side] = (shape, vals)
    merged = 0
    for (module, layer, hf, expert), sides in sorted(pairs.items()):
        assert "A" in sides, module + ": lora_B without lora_A"
        if "B" not in sides:
            continue  # B starts at zero in PEFT: unchanged
        r, scale = rank_scale(cfg, module)
        (ra, n_in), a = sides["A"]
        (n_out, rb), b = sides["B"]
        assert ra == rb == r, "%s: rank %d / %d, the config says %d" % (module, ra, rb, r)
        ne, typ, off = layout["blk.%d.%s.weight" % (layer, HF_TO_GGUF[hf])]
        assert typ == 0 and ne[0] == n_in and ne[1] == n_out, module + ": shapes"
        off += expert * n_in * n_out * 4
        for o in range(n_out):
            row = list(struct.unpack_from("<%df" % n_in, buf, off + o * n_in * 4))
            for j in range(r):
                c = scale * b[o * r + j]
                aj = a[j * n_in:(j + 1) * n_in]
                row = [w + c * x for w, x in zip(row, aj)]
            struct.pack_into("<%df" % n_in, buf, off + o * n_in * 4, *row)
        merged += 1
    open(out_path, "wb").write(buf)
    print("merged %d matrices" % merged)


if __name__ == "__main__":
    main()
