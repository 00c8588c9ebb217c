#!/usr/bin/env python3
"""gguf_seeds.py — shrinks `lfm2c synth` models into complete GGUF seeds for fuzz_gguf (each a few
KB, so mutation reaches model open: hyperparameters, tensor binding, tokenizer, template), which
truncated heads of the test models never do (their tensors run past the end of the file).

usage: lfm2c synth ... -o IN.gguf; python3 gguf_seeds.py IN.gguf OUT.gguf [N_VOCAB]
The vocabulary is cut to its first N_VOCAB tokens (default 40; a few merges kept that use only
those), the embedding rewritten as Q4_0 with that many rows, tensor bytes kept as they are (the
weights only need to be well-formed), and the long description and chat template replaced by short ones."""
import struct
import sys

SCALAR = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}
GGUF_STR, GGUF_ARR, Q4_0 = 8, 9, 2
# a short chat template (the full LFM2 ones are in the jinja corpus)
TEMPLATE = (b"{{- bos_token -}}{%- for m in messages -%}{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] -}}"
            b"{{- '<|im_end|>\\n' -}}{%- endfor -%}{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}"
            b"{%- endif -%}")
BLOCK = {0: (1, 4), 1: (1, 2), 2: (32, 18), 8: (32, 34), 12: (256, 144), 14: (256, 210)}  # type: (elems, bytes)


def read(path):
    d = open(path, 'rb').read()
    assert d[:4] == b'GGUF'
    off = 8
    nt, nkv = struct.unpack_from('<QQ', d, off)
    off += 16

    def rstr(o):
        n, = struct.unpack_from('<Q', d, o)
        return d[o + 8:o + 8 + n], o + 8 + n

    def rval(t, o):
        if t == GGUF_STR:
            return rstr(o)
        if t == GGUF_ARR:
            at, n = struct.unpack_from('<IQ', d, o)
            o += 12
            vals = []
            for _ in range(n):
                v, o = rval(at, o)
                vals.append(v)
            return (at, vals), o
        v, = struct.unpack_from('<' + SCALAR[t], d, o)
        return v, o + struct.calcsize(SCALAR[t])

    kv = []
    for _ in range(nkv):
        k, off = rstr(off)
        t, = struct.unpack_from('<I', d, off)
        v, off = rval(t, off + 4)
        kv.append((k, t, v))
    tensors = []
    for _ in range(nt):
        name, off = rstr(off)
        nd, = struct.unpack_from('<I', d, off)
        ne = list(struct.unpack_from('<%dQ' % nd, d, off + 4))
        ty, o = struct.unpack_from('<IQ', d, off + 4 + 8 * nd)
        off += 4 + 8 * nd + 12
        tensors.append([name, ne, ty, o])
    data = (off + 31) // 32 * 32
    for t in tensors:
        t[3] = d[data + t[3]:data + t[3] + nbytes(t[1], t[2])]
    return kv, tensors


def nbytes(ne, ty):
    el, by = BLOCK[ty]
    n = 1
    for x in ne:
        n *= x
    return n // el * by


def write(path, kv, tensors):
    out = bytearray(b'GGUF' + struct.pack('<IQQ', 3, len(tensors), len(kv)))

    def wstr(s):
        out.extend(struct.pack('<Q', len(s)) + s)

    def wval(t, v):
        if t == GGUF_STR:
            wstr(v)
        elif t == GGUF_ARR:
            at, vals = v
            out.extend(struct.pack('<IQ', at, len(vals)))
            for x in vals:
                wval(at, x)
        else:
            out.extend(struct.pack('<' + SCALAR[t], v))

    for k, t, v in kv:
        wstr(k)
        out.extend(struct.pack('<I', t))
        wval(t, v)
    off = 0
    for name, ne, ty, blob in tensors:
        wstr(name)
        out.extend(struct.pack('<I', len(ne)) + struct.pack('<%dQ' % len(ne), *ne) + struct.pack('<IQ', ty, off))
        off = (off + len(blob) + 31) // 32 * 32
    out.extend(b'\0' * (-len(out) % 32))
    for _, _, _, blob in tensors:
        out.extend(blob + b'\0' * (-len(blob) % 32))
    open(path, 'wb').write(out)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    nv = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    kv, tensors = read(src)
    toks = None
    new = []
    for k, t, v in kv:
        if k == b'tokenizer.ggml.tokens':
            toks = set(v[1][:nv])
            v = (v[0], v[1][:nv])
        elif k == b'tokenizer.ggml.token_type':
            v = (v[0], v[1][:nv])
        elif k == b'tokenizer.ggml.merges':
            v = (v[0], [m for m in v[1] if all(p in toks for p in m.split(b' ', 1))][:4])
        elif k.endswith(b'.vocab_size'):
            v = nv
        elif k.endswith(b'_token_id'):
            v = min(v, nv - 1)
        elif k == b'general.description':
            v = b'fuzz seed (tests/fuzz/gguf_seeds.py)'
        elif k == b'tokenizer.chat_template':
            v = TEMPLATE
        new.append((k, t, v))
    for t in tensors:
        if t[0] == b'token_embd.weight':
            t[1][1] = nv
            t[2] = Q4_0
            t[3] = (t[3] * 2)[:nbytes(t[1], Q4_0)]
    write(dst, new, tensors)


if __name__ == '__main__':
    main()
