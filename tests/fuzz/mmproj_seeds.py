#!/usr/bin/env python3
"""mmproj_seeds.py — small complete mmproj seeds for fuzz_mmproj (a few KB each, so mutation reaches
the tensor checks and the encoder): the fixture's keys (tests/data/vision/mmproj-tiny-f32.gguf, as
`lfm2c synth --mmproj` writes it) with smaller sizes (width 32, FFN 32, 2 heads, one block, patch 2,
a 4 x 4 position grid, unshuffle 2, projector 32 -> 32) and every tensor it needs, of random
values, in F32, F16 or Q8_0 (matrices; vectors F32), with and without the projector's layer norm.

usage: python3 tests/fuzz/mmproj_seeds.py FIXTURE.gguf OUT_DIR"""
import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_seeds  # noqa: E402  (its GGUF reader and writer)

F32, F16, Q8_0 = 0, 1, 8
E, FF, HEADS, PATCH, SIDE, MERGE, HIDDEN, PROJ = 32, 32, 2, 2, 4, 2, 32, 32
SIZES = {b'clip.vision.embedding_length': E, b'clip.vision.feed_forward_length': FF,
         b'clip.vision.attention.head_count': HEADS, b'clip.vision.block_count': 1,
         b'clip.vision.patch_size': PATCH, b'clip.vision.projection_dim': PROJ,
         b'clip.vision.image_size': SIDE * PATCH, b'clip.vision.projector.scale_factor': MERGE}


def values(n, ty, rnd):
    if ty == F32:
        return struct.pack('<%df' % n, *(rnd.uniform(-0.5, 0.5) for _ in range(n)))
    if ty == F16:
        return struct.pack('<%de' % n, *(rnd.uniform(-0.5, 0.5) for _ in range(n)))
    out = bytearray()  # Q8_0: blocks of 32 (an F16 scale, 32 int8)
    for _ in range(n // 32):
        out += struct.pack('<e', 0.01) + bytes(rnd.randrange(256) for _ in range(32))
    return bytes(out)


def tensors(mat, norm, rnd):
    merged = E * MERGE * MERGE
    vec = [(b'v.patch_embd.bias', [E]), (b'v.position_embd.weight', [E, SIDE * SIDE]),
           (b'v.post_ln.weight', [E]), (b'v.post_ln.bias', [E]), (b'mm.1.bias', [HIDDEN]), (b'mm.2.bias', [PROJ])]
    if norm:
        vec += [(b'mm.input_norm.weight', [merged]), (b'mm.input_norm.bias', [merged])]
    for v in (b'ln1.weight', b'ln1.bias', b'ln2.weight', b'ln2.bias', b'attn_q.bias', b'attn_k.bias',
              b'attn_v.bias', b'attn_out.bias', b'ffn_down.bias'):
        vec.append((b'v.blk.0.' + v, [E]))
    vec.append((b'v.blk.0.ffn_up.bias', [FF]))
    mats = [(b'v.blk.0.attn_' + m + b'.weight', [E, E]) for m in (b'q', b'k', b'v', b'out')]
    mats += [(b'v.blk.0.ffn_up.weight', [E, FF]), (b'v.blk.0.ffn_down.weight', [FF, E]),
             (b'mm.1.weight', [merged, HIDDEN]), (b'mm.2.weight', [HIDDEN, PROJ])]
    out = [[n, ne, F32, values(ne[0] * (ne[1] if len(ne) > 1 else 1), F32, rnd)] for n, ne in vec]
    out += [[n, ne, mat, values(ne[0] * ne[1], mat, rnd)] for n, ne in mats]
    kernel = [PATCH, PATCH, 3, E]  # the patch kernel, 4-D, F16 (its rows of 3 p^2 are no Q8_0 blocks)
    out.append([b'v.patch_embd.weight', kernel, F16, values(PATCH * PATCH * 3 * E, F16, rnd)])
    return out


def main():
    fixture, out_dir = sys.argv[1], sys.argv[2]
    kv, _ = gguf_seeds.read(fixture)
    kv = [(k, t, SIZES.get(k, v)) for k, t, v in kv]
    kv = [(k, t, b'fuzz seed (tests/fuzz/mmproj_seeds.py)' if k == b'general.description' else v) for k, t, v in kv]
    os.makedirs(out_dir, exist_ok=True)
    for name, mat, norm in (('f32-norm', F32, True), ('f16', F16, False), ('q8_0-norm', Q8_0, True)):
        gguf_seeds.write(os.path.join(out_dir, 'tiny-%s.gguf' % name), kv, tensors(mat, norm, random.Random(name)))


if __name__ == '__main__':
    main()
