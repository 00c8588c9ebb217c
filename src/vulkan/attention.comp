// attention.comp — causal attention of one (token, query head) over its sequence's cache
// (positions 0..pos; GQA: query head h reads KV head h / (nh / nkv); K and V each F16 or F32 as
// kv's bits say, qk.comp's layout; halves are read into float, all arithmetic is float).
// Positions go in chunks of 128: each thread scores one position, then every thread folds the
// chunk into an online softmax for the two dims it owns (head_dim <= 256).
#version 450
#include "common.glsl"
#include "tok.glsl"
layout(local_size_x = 128) in;
layout(push_constant) uniform P { uvec2 q, toks, o; uint nh, nkv, hd, attn_index, kvdm, kv; } p;
shared float qs[256];
shared float sc[128];

// value i of a cache: F32 (f32) or F16
float kv_at(uvec2 c, bool f32, uint i) {
    if (f32) return F32s(c).v[i];
    vec2 v = unpackHalf2x16(U32s(c).v[i >> 1]);
    return (i & 1u) != 0u ? v.y : v.x;
}

// q (in qs) · the K row at value k (hd values)
float score(uvec2 K, bool f32, uint k) {
    float s = 0.0;
    if (f32) {
        F32s R = F32s(K);
        for (uint i = 0u; i < p.hd; i++) s += qs[i] * R.v[k + i];
    } else {
        U32s R = U32s(K);
        for (uint i = 0u; i < p.hd / 2u; i++) {
            vec2 kv = unpackHalf2x16(R.v[k / 2u + i]);
            s += qs[2u * i] * kv.x + qs[2u * i + 1u] * kv.y;
        }
    }
    return s;
}

void main() {
    uint t = gl_WorkGroupID.x, h = gl_WorkGroupID.y, lid = gl_LocalInvocationID.x;
    I32s TB = I32s(p.toks);
    uint pos = uint(tok_pos(TB, t)), g = h / (p.nh / p.nkv);
    uvec2 K = tok_addr(TB, t, 0u), V = tok_addr(TB, t, 1u);
    bool k32 = (p.kv & 1u) != 0u, v32 = (p.kv & 2u) != 0u;
    uint base = p.attn_index * tok_cap(TB, t) * p.kvdm + g * p.hd;   // in values
    F32s Q = F32s(p.q);
    float qscale = 1.0 / sqrt(float(p.hd));
    for (uint i = lid; i < p.hd; i += 128u) qs[i] = Q.v[t * p.nh * p.hd + h * p.hd + i] * qscale;
    barrier();
    uint d0 = lid, d1 = lid + 128u;
    float m = -1.0 / 0.0, l = 0.0, acc0 = 0.0, acc1 = 0.0;
    for (uint p0 = 0u; p0 <= pos; p0 += 128u) {
        uint pp = p0 + lid;
        sc[lid] = pp <= pos ? score(K, k32, base + pp * p.kvdm) : 0.0;
        barrier();
        uint cnt = min(128u, pos + 1u - p0);
        float mx = m;
        for (uint j = 0u; j < cnt; j++) mx = max(mx, sc[j]);
        float corr = exp(m - mx);
        l *= corr;
        acc0 *= corr;
        acc1 *= corr;
        for (uint j = 0u; j < cnt; j++) {
            float e = exp(sc[j] - mx);
            l += e;
            uint vb = base + (p0 + j) * p.kvdm;
            if (d0 < p.hd) acc0 += e * kv_at(V, v32, vb + d0);
            if (d1 < p.hd) acc1 += e * kv_at(V, v32, vb + d1);
        }
        m = mx;
        barrier();
    }
    F32s O = F32s(p.o);
    uint ob = t * p.nh * p.hd + h * p.hd;
    if (d0 < p.hd) O.v[ob + d0] = acc0 / l;
    if (d1 < p.hd) O.v[ob + d1] = acc1 / l;
}
