// embed.comp — x[t] = row `token` of the embedding, dequantized (one workgroup per token).
#version 450
#include "common.glsl"
#include "tok.glsl"
layout(local_size_x = 64) in;
layout(push_constant) uniform P { uvec2 w, toks, x; uint type, row_bytes, H; } p;

void main() {
    uint t = gl_WorkGroupID.x;
    uint row = uint(tok_token(I32s(p.toks), t)) * p.row_bytes;
    F32s X = F32s(p.x);
    for (uint k0 = 8u * gl_LocalInvocationID.x; k0 < p.H; k0 += 512u) {
        float v[8];
        dequant8(p.type, U32s(p.w), row, k0, v);
        for (uint i = 0u; i < 8u; i++) X.v[t * p.H + k0 + i] = v[i];
    }
}
