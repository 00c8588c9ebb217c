// conv_state.comp — the saved conv state of each sequence of the batch after it: its last two
// u's (the older one may still be in the state). Runs after conv.comp has read the old state.
#version 450
#include "common.glsl"
#include "tok.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform P { uvec2 z, toks, seq_last; uint n_seq, H, conv_index; } p;

float u_of(F32s Z, uint t, uint c) { return Z.v[t * 3u * p.H + c] * Z.v[t * 3u * p.H + 2u * p.H + c]; }

void main() {
    uint idx = flat_index();
    if (idx >= p.n_seq * p.H) return;
    uint t = uint(I32s(p.seq_last).v[idx / p.H]), c = idx % p.H;
    I32s TB = I32s(p.toks);
    F32s Z = F32s(p.z), st = F32s(tok_addr(TB, t, 2u));
    uint sb = p.conv_index * 2u * p.H;
    int p1 = tok_prev1(TB, t);
    float older = p1 >= 0 ? u_of(Z, uint(p1), c) : st.v[sb + p.H + c];
    st.v[sb + c] = older;
    st.v[sb + p.H + c] = u_of(Z, t, c);
}
