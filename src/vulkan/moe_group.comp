// moe_group.comp — the MoE pairs gathered by expert (route.comp wrote sel: pair t*k + j is slot
// j of token t, its expert sel[t*k + j]): cnt[e] = how many pairs chose expert e, list[e * T ..]
// those pairs in order. One invocation per expert; each scans every pair (T*k of them).
#version 450
#include "common.glsl"
layout(local_size_x = 64) in;
layout(push_constant) uniform P { uvec2 sel, cnt, list; uint pairs, E, stride; } p;

void main() {
    uint e = gl_GlobalInvocationID.x;
    if (e >= p.E) return;
    I32s S = I32s(p.sel), L = I32s(p.list);
    uint n = 0u;
    for (uint i = 0u; i < p.pairs; i++)
        if (uint(S.v[i]) == e) L.v[e * p.stride + n++] = int(i);
    I32s(p.cnt).v[e] = int(n);
}
