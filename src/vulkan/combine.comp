// combine.comp — out[t][c] = sum over the token's k slots, in slot order, of weight * expert output.
#version 450
#include "common.glsl"
#include "tok.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform P { uvec2 d, wsel, o; uint T, k, H; } p;

void main() {
    uint idx = flat_index();
    if (idx >= p.T * p.H) return;
    uint t = idx / p.H, c = idx % p.H;
    F32s D = F32s(p.d), W = F32s(p.wsel);
    float s = 0.0;
    for (uint j = 0u; j < p.k; j++) s += W.v[t * p.k + j] * D.v[(t * p.k + j) * p.H + c];
    F32s(p.o).v[idx] = s;
}
