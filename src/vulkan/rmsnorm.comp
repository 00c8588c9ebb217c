// rmsnorm.comp — per row i: x[src] += delta[src] (when has_delta), then
// y[i] = x[src] * w / sqrt(mean(x[src]^2) + eps); src = map[i] when has_map, else i.
#version 450
#include "common.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform P { uvec2 x, delta, w, y, map; uint H, has_delta, has_map; float eps; } p;
shared float red[256];

void main() {
    uint i = gl_WorkGroupID.x, lid = gl_LocalInvocationID.x;
    uint src = p.has_map != 0u ? uint(I32s(p.map).v[i]) : i;
    F32s X = F32s(p.x), D = F32s(p.delta), W = F32s(p.w), Y = F32s(p.y);
    float ss = 0.0;
    for (uint c = lid; c < p.H; c += 256u) {
        float v = X.v[src * p.H + c];
        if (p.has_delta != 0u) {
            v += D.v[src * p.H + c];
            X.v[src * p.H + c] = v;
        }
        ss += v * v;
    }
    red[lid] = ss;
    barrier();
    for (uint s = 128u; s > 0u; s >>= 1) {
        if (lid < s) red[lid] += red[lid + s];
        barrier();
    }
    float scale = 1.0 / sqrt(red[0] / float(p.H) + p.eps);
    for (uint c = lid; c < p.H; c += 256u) Y.v[i * p.H + c] = X.v[src * p.H + c] * scale * W.v[c];
}
