// qk.comp — attention inputs of one (token, head): q heads RMSNormed and rotated (NEOX) in
// place; k heads the same, then stored into the session's K cache at the token's position;
// v heads stored into the V cache. Heads: [0, nh) q, [nh, nh+nkv) k, [nh+nkv, nh+2nkv) v.
// Cache layout per session: [n_attn][kv_cap][kvdm] values, each cache F16 (two halves to a
// 32-bit word, rounded to nearest even as the CPU's) or F32 as kv's bits say (-ctk / -ctv).
#version 450
#include "common.glsl"
#include "tok.glsl"
layout(local_size_x = 64) in;
layout(push_constant) uniform P {
    uvec2 q, k, v, qn, kn, rope, toks;
    uint nh, nkv, hd, attn_index, kvdm;
    float eps;
    uint kv;   // bit 0: the K cache is F32, bit 1: the V cache is F32 (else F16)
} p;
shared float red[64];
shared float head[256];   // the rotated k head, for the cache store

void main() {
    uint t = gl_WorkGroupID.x, h = gl_WorkGroupID.y, lid = gl_LocalInvocationID.x, half_d = p.hd / 2u;
    I32s TB = I32s(p.toks);
    uint kvd = p.nkv * p.hd;
    bool is_q = h < p.nh, is_v = h >= p.nh + p.nkv;
    F32s src = is_q ? F32s(p.q) : is_v ? F32s(p.v) : F32s(p.k);
    uint hh = is_q ? h : is_v ? h - p.nh - p.nkv : h - p.nh;
    uint base = is_q ? t * p.nh * p.hd + hh * p.hd : t * kvd + hh * p.hd;
    if (!is_v) {   // uniform per workgroup
        float ss = 0.0;
        for (uint i = lid; i < p.hd; i += 64u) ss += src.v[base + i] * src.v[base + i];
        red[lid] = ss;
        barrier();
        for (uint s = 32u; s > 0u; s >>= 1) {
            if (lid < s) red[lid] += red[lid + s];
            barrier();
        }
        float scale = 1.0 / sqrt(red[0] / float(p.hd) + p.eps);
        F32s nw = is_q ? F32s(p.qn) : F32s(p.kn), cs = F32s(p.rope);
        for (uint i = lid; i < half_d; i += 64u) {
            float a = src.v[base + i] * scale * nw.v[i], b = src.v[base + i + half_d] * scale * nw.v[i + half_d];
            float c = cs.v[t * p.hd + 2u * i], s = cs.v[t * p.hd + 2u * i + 1u];
            float ya = a * c - b * s, yb = b * c + a * s;
            src.v[base + i] = ya;
            src.v[base + i + half_d] = yb;
            head[i] = ya;
            head[i + half_d] = yb;
        }
        barrier();
    } else {
        for (uint i = lid; i < p.hd; i += 64u) head[i] = src.v[base + i];
        barrier();
    }
    if (is_q) return;
    uvec2 at = tok_addr(TB, t, is_v ? 1u : 0u);
    uint cell = (p.attn_index * tok_cap(TB, t) + uint(tok_pos(TB, t))) * p.kvdm + hh * p.hd;   // in values
    if ((p.kv & (is_v ? 2u : 1u)) != 0u) {
        F32s cache = F32s(at);
        for (uint i = lid; i < p.hd; i += 64u) cache.v[cell + i] = head[i];
    } else {
        U32s cache = U32s(at);
        for (uint i = lid; i < half_d; i += 64u) cache.v[cell / 2u + i] = pack_half2(head[2u * i], head[2u * i + 1u]);
    }
}
