// route.comp — MoE routing of each token (spec 2.6, forward.c's moe_route): sigmoid scores;
// the expert bias only ranks; the k best (ties to the lower id) weighted by their scores
// renormalised to sum 1. Pair t*k + j is slot j of token t: sel = its expert, wsel its weight.
#version 450
#include "common.glsl"
layout(local_size_x = 64) in;
layout(push_constant) uniform P { uvec2 logits, bias, sel, wsel; uint T, E, k, has_bias; } p;

float sigm(float x) { return 1.0 / (1.0 + exp(-x)); }

void main() {
    uint t = gl_GlobalInvocationID.x;
    if (t >= p.T) return;
    F32s L = F32s(p.logits), B = F32s(p.bias), W = F32s(p.wsel);
    I32s S = I32s(p.sel);
    float sum = 0.0;
    for (uint j = 0u; j < p.k; j++) {
        int best = -1;
        float bv = 0.0;
        for (uint e = 0u; e < p.E; e++) {
            bool taken = false;
            for (uint i = 0u; i < j; i++) taken = taken || S.v[t * p.k + i] == int(e);
            if (taken) continue;
            float v = sigm(L.v[t * p.E + e]) + (p.has_bias != 0u ? B.v[e] : 0.0);
            if (best < 0 || v > bv) { best = int(e); bv = v; }
        }
        S.v[t * p.k + j] = best;
        float s = sigm(L.v[t * p.E + uint(best)]);
        W.v[t * p.k + j] = s;
        sum += s;
    }
    sum = max(sum, 6.103515625e-5);
    for (uint j = 0u; j < p.k; j++) W.v[t * p.k + j] /= sum;
}
