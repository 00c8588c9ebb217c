// matmul.glsl — the GEMV body of matmul.comp (shared-memory reduction) and matmul_sg.comp
// (subgroupAdd, where the device has subgroup arithmetic): y[col][r] = W_e[r] · x[col / xdiv],
// one weight type per call (the row's blocks dequantized as stored, dot products in float).
// A workgroup takes 4 rows (32 lanes each) x one group of up to 8 columns, so each weight is
// dequantized once for the whole group: decode (1 column), small batches (groups of 8 tokens),
// MoE (mm_pc.glsl's modes). Each column's sum is formed in the same order whatever the group,
// so a batch's columns equal one-by-one's bit for bit.
#include "common.glsl"
#include "mm_pc.glsl"
layout(local_size_x = 128) in;
shared float red[8 * 128];

void main() {
    uint lid = gl_LocalInvocationID.x, lane = lid & 31u;
    uint r = gl_WorkGroupID.x * 4u + (lid >> 5);
    uint c0 = p.col0 + gl_WorkGroupID.y * p.group;
    uint nc = mm_count(c0, p.group);
    if (nc == 0u) return;   // the whole workgroup: an expert with fewer columns
    float acc[8] = float[8](0, 0, 0, 0, 0, 0, 0, 0);
    uint cols[8];
    for (uint c = 0u; c < nc; c++) cols[c] = mm_col(c0 + c);
    if (r < p.rows) {
        uint e = mm_expert(c0);
        U32s W = U32s(p.w);
        F32s X = F32s(p.x);
        uint row = e * p.expert_stride + r * p.row_bytes;
        for (uint k0 = 8u * lane; k0 < p.n; k0 += 256u) {
            float wv[8];
            dequant8(p.type, W, row, k0, wv);
            for (uint c = 0u; c < nc; c++) {
                uint xb = (cols[c] / p.xdiv) * p.ldx + k0;
                float s = 0.0;
                for (uint i = 0u; i < 8u; i++) s += wv[i] * X.v[xb + i];
                acc[c] += s;
            }
        }
    }
#ifdef MM_SUBGROUP
    // each subgroup (S lanes, S dividing 32: the host checks) sums its lanes; lane 0 of the row
    // adds the 32 / S partial sums in order
    uint S = gl_SubgroupSize;
    for (uint c = 0u; c < nc; c++) red[c * 128u + lid] = subgroupAdd(acc[c]);
    barrier();
    if (lane == 0u && r < p.rows) {
        F32s Y = F32s(p.y);
        for (uint c = 0u; c < nc; c++) {
            float s = 0.0;
            for (uint j = 0u; j < 32u; j += S) s += red[c * 128u + lid + j];
            Y.v[cols[c] * p.ldy + r] = s;
        }
    }
#else
    for (uint c = 0u; c < 8u; c++) red[c * 128u + lid] = acc[c];
    barrier();
    for (uint s = 16u; s > 0u; s >>= 1) {
        if (lane < s)
            for (uint c = 0u; c < nc; c++) red[c * 128u + lid] += red[c * 128u + lid + s];
        barrier();
    }
    if (lane == 0u && r < p.rows) {
        F32s Y = F32s(p.y);
        for (uint c = 0u; c < nc; c++) Y.v[cols[c] * p.ldy + r] = red[c * 128u + lid];
    }
#endif
}
