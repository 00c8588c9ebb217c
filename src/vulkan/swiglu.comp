// swiglu.comp — g = silu(g) * u, elementwise over n values.
#version 450
#include "common.glsl"
#include "tok.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform P { uvec2 g, u; uint n; } p;

void main() {
    uint i = flat_index();
    if (i >= p.n) return;
    F32s G = F32s(p.g);
    float x = G.v[i];
    G.v[i] = x / (1.0 + exp(-x)) * F32s(p.u).v[i];
}
