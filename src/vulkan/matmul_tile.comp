// matmul_tile.comp — the tiled GEMM for products over many columns (prefill, wide batches, MoE
// experts with many tokens): the same product and column modes as the GEMV (mm_pc.glsl), a
// workgroup computing a 64-row x 64-column tile. Per step of 32 along the row, the 256 threads
// dequantize the 64 x 32 weights once into shared memory (one dequant8 each) beside the 64
// columns' 32 activations, then each thread accumulates a 4 x 4 block of the tile. Every
// weight is thus read once per 64 columns (the GEMV: once per 8). Sums run along the row in
// order (not the GEMV's order: the results agree to rounding, not bit for bit).
#version 450
#include "common.glsl"
#include "mm_pc.glsl"
layout(local_size_x = 256) in;
const uint BM = 64u, BN = 64u, BK = 32u;
shared float Ws[BK][BM + 1u];
shared float Xs[BK][BN + 1u];

void main() {
    uint tid = gl_LocalInvocationID.x, tx = tid & 15u, ty = tid >> 4;
    uint r0 = gl_WorkGroupID.x * BM;
    uint c0 = p.col0 + gl_WorkGroupID.y * BN;
    uint nc = mm_count(c0, BN);
    if (nc == 0u) return;   // the whole workgroup: an expert with fewer columns
    uint e = p.mode == 2u ? gl_WorkGroupID.z : 0u;
    U32s W = U32s(p.w);
    F32s X = F32s(p.x);
    // what this thread loads: row / column lr of the tile, 8 values from lk along the row
    uint lr = tid >> 2, lk = (tid & 3u) * 8u;
    bool row_ok = r0 + lr < p.rows, col_ok = lr < nc;
    uint row = e * p.expert_stride + (r0 + lr) * p.row_bytes;
    uint xrow = col_ok ? (mm_col(c0 + lr) / p.xdiv) * p.ldx : 0u;
    float acc[4][4];
    for (uint i = 0u; i < 4u; i++)
        for (uint j = 0u; j < 4u; j++) acc[i][j] = 0.0;
    for (uint k0 = 0u; k0 < p.n; k0 += BK) {
        float wv[8];
        uint k = k0 + lk;
        if (row_ok && k < p.n) dequant8(p.type, W, row, k, wv);
        else for (uint i = 0u; i < 8u; i++) wv[i] = 0.0;
        for (uint i = 0u; i < 8u; i++) Ws[lk + i][lr] = wv[i];
        for (uint i = 0u; i < 8u; i++) Xs[lk + i][lr] = col_ok && k < p.n ? X.v[xrow + k + i] : 0.0;
        barrier();
        for (uint kk = 0u; kk < BK; kk++) {
            float a[4], b[4];
            for (uint i = 0u; i < 4u; i++) a[i] = Ws[kk][ty + 16u * i];
            for (uint j = 0u; j < 4u; j++) b[j] = Xs[kk][tx + 16u * j];
            for (uint i = 0u; i < 4u; i++)
                for (uint j = 0u; j < 4u; j++) acc[i][j] += a[i] * b[j];
        }
        barrier();
    }
    F32s Y = F32s(p.y);
    for (uint j = 0u; j < 4u; j++) {
        uint c = tx + 16u * j;
        if (c >= nc) continue;
        uint col = mm_col(c0 + c);
        for (uint i = 0u; i < 4u; i++) {
            uint r = r0 + ty + 16u * i;
            if (r < p.rows) Y.v[col * p.ldy + r] = acc[i][j];
        }
    }
}
