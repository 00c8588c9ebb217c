// tok.glsl — one token of a batch as the shaders see it: TOKW ints per token in the batch
// table (backend_vulkan.c fills it): token, pos, prev1 (batch index of the same sequence's
// previous token, or -1), kv_cap, then the addresses of the session's K cache, V cache and
// conv state as (low, high) word pairs.
const uint TOKW = 12u;
int tok_token(I32s tb, uint t) { return tb.v[t * TOKW]; }
int tok_pos(I32s tb, uint t) { return tb.v[t * TOKW + 1u]; }
int tok_prev1(I32s tb, uint t) { return tb.v[t * TOKW + 2u]; }
uint tok_cap(I32s tb, uint t) { return uint(tb.v[t * TOKW + 3u]); }
uvec2 tok_addr(I32s tb, uint t, uint which) {   // 0: K, 1: V, 2: conv
    return uvec2(uint(tb.v[t * TOKW + 4u + 2u * which]), uint(tb.v[t * TOKW + 5u + 2u * which]));
}
// index of a 1-D element from a 2-D grid of 256-wide workgroups (the grid's x is capped)
uint flat_index() { return (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * 256u + gl_LocalInvocationID.x; }
