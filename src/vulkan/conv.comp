// conv.comp — the gated short conv of every (token, channel) at once (spec 2.3): u = B * X;
// out = C * (w0 u_{t-2} + w1 u_{t-1} + w2 u_t), the earlier u's from the batch (prev1 links)
// or from the sequence's saved state [u_{-2} | u_{-1}]. z rows: B | C | X.
#version 450
#include "common.glsl"
#include "tok.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform P { uvec2 z, w, toks, o; uint T, H, conv_index; } p;

float u_of(F32s Z, uint t, uint c) { return Z.v[t * 3u * p.H + c] * Z.v[t * 3u * p.H + 2u * p.H + c]; }

void main() {
    uint idx = flat_index();
    if (idx >= p.T * p.H) return;
    uint t = idx / p.H, c = idx % p.H;
    I32s TB = I32s(p.toks);
    F32s Z = F32s(p.z), W = F32s(p.w);
    F32s st = F32s(tok_addr(TB, t, 2u));
    uint sb = p.conv_index * 2u * p.H;
    int p1 = tok_prev1(TB, t), p2 = p1 >= 0 ? tok_prev1(TB, uint(p1)) : -1;
    float u0 = u_of(Z, t, c);
    float u1 = p1 >= 0 ? u_of(Z, uint(p1), c) : st.v[sb + p.H + c];
    float u2 = p2 >= 0 ? u_of(Z, uint(p2), c) : p1 >= 0 ? st.v[sb + p.H + c] : st.v[sb + c];
    float C = Z.v[t * 3u * p.H + p.H + c];
    F32s(p.o).v[idx] = C * (W.v[3u * c] * u2 + W.v[3u * c + 1u] * u1 + W.v[3u * c + 2u] * u0);
}
