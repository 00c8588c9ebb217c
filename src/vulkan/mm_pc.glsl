// mm_pc.glsl — what the weight-product shaders (matmul.comp, matmul_sg.comp, matmul_tile.comp)
// share: their push constants and which columns a workgroup takes. Column col of the product is
// y[col][r] = W_e[r] · x[col / xdiv] (x's rows ldx apart, y's ldy apart). mode 0: dense (e = 0,
// columns col0 + the workgroup's y index * group ...); mode 1: MoE pairs (one column a group, its
// expert sel[col]); mode 2: MoE grouped by expert (workgroup z = expert e, its columns the
// e-th list: list[e * list_stride + i] for i < list count[e], made by moe_group.comp), so an
// expert's weights are read once for all the tokens routed to it.
layout(push_constant) uniform P {
    uvec2 w, x, y, sel;
    uvec2 cnt, list;
    uint type, n, rows, row_bytes;
    uint expert_stride, ncols, ldx, ldy;
    uint xdiv, group, mode, col0;
    uint list_stride;
} p;

// the expert of this workgroup's columns and how many of them there are from c0 (0: none)
uint mm_expert(uint c0) {
    if (p.mode == 1u) return uint(I32s(p.sel).v[c0]);
    return p.mode == 2u ? gl_WorkGroupID.z : 0u;
}
uint mm_count(uint c0, uint width) {
    uint total = p.mode == 2u ? uint(I32s(p.cnt).v[gl_WorkGroupID.z]) : p.ncols;
    return c0 < total ? min(width, total - c0) : 0u;
}
// the product's column index of the workgroup's i-th column (c0 + i its place in the list)
uint mm_col(uint c0i) {
    return p.mode == 2u ? uint(I32s(p.list).v[gl_WorkGroupID.z * p.list_stride + c0i]) : c0i;
}
