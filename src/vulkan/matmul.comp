// matmul.comp — y[col][r] = W_e[r] · x[col / xdiv] for every row r and column col, one weight
// type per call (the row's blocks dequantized as stored, dot products in float).
// A workgroup takes 4 rows (32 lanes each) x one group of up to 8 columns, so each weight is
// dequantized once for the whole group: decode (1 column), dense prefill (groups of 8 tokens),
// MoE (one (token, slot) pair per group, its expert from sel[col]).
#version 450
#include "common.glsl"
layout(local_size_x = 128) in;
layout(push_constant) uniform P {
    uvec2 w, x, y, sel;
    uint type, n, rows, row_bytes;
    uint expert_stride, ncols, ldx, ldy;
    uint xdiv, group, has_sel, col0;
} p;
shared float red[8 * 128];

void main() {
    uint lid = gl_LocalInvocationID.x, lane = lid & 31u;
    uint r = gl_WorkGroupID.x * 4u + (lid >> 5);
    uint c0 = p.col0 + gl_WorkGroupID.y * p.group;
    uint nc = min(p.group, p.ncols - c0);
    float acc[8] = float[8](0, 0, 0, 0, 0, 0, 0, 0);
    if (r < p.rows) {
        uint e = p.has_sel != 0u ? uint(I32s(p.sel).v[c0]) : 0u;
        U32s W = U32s(p.w);
        F32s X = F32s(p.x);
        uint row = e * p.expert_stride + r * p.row_bytes;
        for (uint k0 = 8u * lane; k0 < p.n; k0 += 256u) {
            float wv[8];
            dequant8(p.type, W, row, k0, wv);
            for (uint c = 0u; c < nc; c++) {
                uint xb = ((c0 + c) / p.xdiv) * p.ldx + k0;
                float s = 0.0;
                for (uint i = 0u; i < 8u; i++) s += wv[i] * X.v[xb + i];
                acc[c] += s;
            }
        }
    }
    for (uint c = 0u; c < 8u; c++) red[c * 128u + lid] = acc[c];
    barrier();
    for (uint s = 16u; s > 0u; s >>= 1) {
        if (lane < s)
            for (uint c = 0u; c < nc; c++) red[c * 128u + lid] += red[c * 128u + lid + s];
        barrier();
    }
    if (lane == 0u && r < p.rows) {
        F32s Y = F32s(p.y);
        for (uint c = 0u; c < nc; c++) Y.v[(c0 + c) * p.ldy + r] = red[c * 128u + lid];
    }
}
