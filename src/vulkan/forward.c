/* forward.c — the Vulkan backend's model pass (spec section 2): the dispatches of one forward
 * recorded into the model's command buffer, in the blocks and order of the CPU's
 * cpu/forward.c: conv_block, attention_block, dense_ffn, moe_ffn, then the layer loop
 * (vk_record). Each block records its shaders (src/vulkan/NAME.comp) over the scratch buffers
 * by device address; the weight products are mm (a GEMV for few columns, a tiled GEMM from
 * vm->tile_min columns, MoE products grouped by expert: docs/VULKAN.md). The device, buffers,
 * upload, the batch table and the submission are backend_vulkan.c's. */
#include "vulkan/vk_model.h"
#include "core/model.h"

#include <stdint.h>

/* mm_pc.glsl's push constants */
typedef struct {
    uint64_t w, x, y, sel, cnt, list;
    uint32_t type, n, rows, row_bytes, expert_stride, ncols, ldx, ldy, xdiv, group, mode, col0, list_stride;
} pc_matmul;

enum { MM_DENSE, MM_PAIRS, MM_GROUPED }; /* mm_pc.glsl's modes */

/* y[col][r] = W_e[r] · x[col / xdiv]. MM_DENSE: ncols columns, e = 0. MM_PAIRS: ncols (token,
 * slot) pairs, e = sel[col]. MM_GROUPED: per expert the pairs of s->list (at most T each). The
 * GEMV (subgroup reduction where the device has it) for few columns, the tiled GEMM from
 * vm->tile_min columns (an expert's: T). */
static void mm(vk_model *vm, const tensor *t, uint64_t x, int ldx, int ncols, int xdiv, int mode, int T, uint64_t y) {
    const vk_scratch *s = &vm->s;
    const bool tile = mode == MM_GROUPED ? T >= vm->tile_min : mode == MM_DENSE && ncols >= vm->tile_min;
    const uint32_t group = tile ? 64 : mode == MM_PAIRS ? 1 : 8, rows_per = tile ? 64 : 4;
    const uint32_t width = mode == MM_GROUPED ? (uint32_t)T : (uint32_t)ncols; /* columns per expert at most */
    pc_matmul pc = {vk_weight_addr(vm, t),
                    x,
                    y,
                    mode == MM_PAIRS ? s->sel.addr : 0,
                    s->cnt.addr,
                    s->list.addr,
                    t->type,
                    (uint32_t)t->ne[0],
                    (uint32_t)t->ne[1],
                    (uint32_t)t->row_bytes,
                    (uint32_t)(t->row_bytes * (uint64_t)t->ne[1]),
                    (uint32_t)ncols,
                    (uint32_t)ldx,
                    (uint32_t)t->ne[1],
                    (uint32_t)xdiv,
                    group,
                    (uint32_t)mode,
                    0,
                    (uint32_t)T};
    const int sh = tile ? SH_matmul_tile : vm->subgroup ? SH_matmul_sg : SH_matmul;
    const uint32_t gx = (uint32_t)((t->ne[1] + rows_per - 1) / rows_per), groups = (width + group - 1) / group;
    const uint32_t gz = mode == MM_GROUPED ? (uint32_t)t->ne[2] : 1;
    for (uint32_t g0 = 0; g0 < groups; g0 += vm->max_groups[1]) { /* wide batches: several dispatches */
        pc.col0 = g0 * group;
        uint32_t gy = groups - g0 < vm->max_groups[1] ? groups - g0 : vm->max_groups[1];
        vk_dispatch3(vm, sh, &pc, sizeof pc, gx, gy, gz);
    }
}

static void dense(vk_model *vm, const tensor *t, uint64_t x, int T, uint64_t y) {
    mm(vm, t, x, (int)t->ne[0], T, 1, MM_DENSE, T, y);
}

typedef struct {
    uint64_t x, delta, w, y, map;
    uint32_t H, has_delta, has_map;
    float eps;
} pc_norm;

static void add_rmsnorm(vk_model *vm, const lfm2c_model *m, uint64_t delta, const tensor *w, uint64_t y, int rows,
                        uint64_t map) {
    pc_norm pc = {vm->s.x.addr, delta,    vk_weight_addr(vm, w), y, map, (uint32_t)m->info.n_embd,
                  delta != 0,   map != 0, m->info.norm_eps};
    vk_dispatch(vm, SH_rmsnorm, &pc, sizeof pc, (uint32_t)rows, 1);
}

static void conv_block(vk_model *vm, const lfm2c_model *m, const layer *L, int T, int n_seq) {
    const uint32_t H = (uint32_t)m->info.n_embd;
    vk_scratch *s = &vm->s;
    dense(vm, &L->conv_in, s->a.addr, T, s->big.addr);
    struct {
        uint64_t z, w, toks, o;
        uint32_t T, H, conv_index;
    } pc = {s->big.addr, vk_weight_addr(vm, &L->conv_w), s->batch.addr, s->hid.addr, (uint32_t)T,
            H,           (uint32_t)L->conv_index};
    vk_dispatch_1d(vm, SH_conv, &pc, sizeof pc, (size_t)T * H);
    struct {
        uint64_t z, toks, seq_last;
        uint32_t n_seq, H, conv_index;
    } ps = {s->big.addr, s->batch.addr,          s->batch.addr + 4ull * batch_seq_last(s->cap), (uint32_t)n_seq,
            H,           (uint32_t)L->conv_index};
    vk_dispatch_1d(vm, SH_conv_state, &ps, sizeof ps, (size_t)n_seq * H);
    dense(vm, &L->conv_out, s->hid.addr, T, s->out.addr);
}

static void attention_block(vk_model *vm, const lfm2c_model *m, const layer *L, int T) {
    const lfm2c_model_info *in = &m->info;
    const int nh = in->n_head, hd = in->head_dim, nkv = L->n_head_kv, kvd = nkv * hd;
    vk_scratch *s = &vm->s;
    const uint64_t q = s->big.addr, k = s->hid.addr, v = s->hid.addr + 4ull * T * kvd;
    dense(vm, &L->wq, s->a.addr, T, q);
    dense(vm, &L->wk, s->a.addr, T, k);
    dense(vm, &L->wv, s->a.addr, T, v);
    struct {
        uint64_t q, k, v, qn, kn, rope, toks;
        uint32_t nh, nkv, hd, attn_index, kvdm;
        float eps;
        uint32_t kv;
    } pq = {q,
            k,
            v,
            vk_weight_addr(vm, &L->q_norm),
            vk_weight_addr(vm, &L->k_norm),
            s->batch.addr + 4ull * batch_rope(s->cap),
            s->batch.addr,
            (uint32_t)nh,
            (uint32_t)nkv,
            (uint32_t)hd,
            (uint32_t)L->attn_index,
            (uint32_t)vm->wd.kv_dim,
            in->norm_eps,
            kv_f32_bits(m)};
    vk_dispatch(vm, SH_qk, &pq, sizeof pq, (uint32_t)T, (uint32_t)(nh + 2 * nkv));
    struct {
        uint64_t q, toks, o;
        uint32_t nh, nkv, hd, attn_index, kvdm, kv;
    } pa = {q,
            s->batch.addr,
            s->big2.addr,
            (uint32_t)nh,
            (uint32_t)nkv,
            (uint32_t)hd,
            (uint32_t)L->attn_index,
            (uint32_t)vm->wd.kv_dim,
            kv_f32_bits(m)};
    vk_dispatch(vm, SH_attention, &pa, sizeof pa, (uint32_t)T, (uint32_t)nh);
    dense(vm, &L->wo, s->big2.addr, T, s->out.addr);
}

/* dense SwiGLU FFN: out = W_down (silu(W_gate a) * W_up a) */
static void dense_ffn(vk_model *vm, const layer *L, int T) {
    vk_scratch *s = &vm->s;
    dense(vm, &L->ffn_gate, s->a.addr, T, s->big.addr);
    dense(vm, &L->ffn_up, s->a.addr, T, s->big2.addr);
    struct {
        uint64_t g, u;
        uint32_t n;
    } ps = {s->big.addr, s->big2.addr, (uint32_t)(T * L->ffn_gate.ne[1])};
    vk_dispatch_1d(vm, SH_swiglu, &ps, sizeof ps, (size_t)T * L->ffn_gate.ne[1]);
    dense(vm, &L->ffn_down, s->big.addr, T, s->out.addr);
}

static void moe_ffn(vk_model *vm, const lfm2c_model *m, const layer *L, int T) {
    const lfm2c_model_info *in = &m->info;
    const int E = in->n_expert, k = in->n_expert_used, H = in->n_embd, Fe = (int)L->gate_exps.ne[1];
    vk_scratch *s = &vm->s;
    dense(vm, &L->router, s->a.addr, T, s->router.addr);
    struct {
        uint64_t logits, bias, sel, wsel;
        uint32_t T, E, k, has_bias;
    } pr = {s->router.addr, vk_weight_addr(vm, &L->expert_bias), s->sel.addr, s->wsel.addr, (uint32_t)T, (uint32_t)E,
            (uint32_t)k,    L->expert_bias.data != NULL};
    vk_dispatch(vm, SH_route, &pr, sizeof pr, (uint32_t)(T + 63) / 64, 1);
    const int pairs = T * k;
    /* grouped by expert once the pairs are as many as the experts (each expert's weights read
     * once for its tokens); fewer pairs (decode): each pair its own column, no empty experts */
    const int mode = pairs >= E ? MM_GROUPED : MM_PAIRS;
    if (mode == MM_GROUPED) {
        struct {
            uint64_t sel, cnt, list;
            uint32_t pairs, E, stride;
        } pg = {s->sel.addr, s->cnt.addr, s->list.addr, (uint32_t)pairs, (uint32_t)E, (uint32_t)T};
        vk_dispatch(vm, SH_moe_group, &pg, sizeof pg, (uint32_t)(E + 63) / 64, 1);
    }
    mm(vm, &L->gate_exps, s->a.addr, H, pairs, k, mode, T, s->G.addr);
    mm(vm, &L->up_exps, s->a.addr, H, pairs, k, mode, T, s->U.addr);
    struct {
        uint64_t g, u;
        uint32_t n;
    } ps = {s->G.addr, s->U.addr, (uint32_t)(pairs * Fe)};
    vk_dispatch_1d(vm, SH_swiglu, &ps, sizeof ps, (size_t)pairs * Fe);
    mm(vm, &L->down_exps, s->G.addr, Fe, pairs, 1, mode, T, s->D.addr);
    struct {
        uint64_t d, wsel, o;
        uint32_t T, k, H;
    } pc = {s->D.addr, s->wsel.addr, s->out.addr, (uint32_t)T, (uint32_t)k, (uint32_t)H};
    vk_dispatch_1d(vm, SH_combine, &pc, sizeof pc, (size_t)T * H);
}

/* The layer loop (vk_model.h): the embedding, each layer's mixer and FFN between the norms,
 * the final norm and the head for the output rows. */
void vk_record(vk_model *vm, const lfm2c_model *m, int T, int n_seq, int n_out, bool emb) {
    const lfm2c_model_info *in = &m->info;
    vk_scratch *s = &vm->s;
    struct {
        uint64_t w, toks, x;
        uint32_t type, row_bytes, H;
    } pe = {vk_weight_addr(vm, &m->tok_embd), s->batch.addr,       s->x.addr, m->tok_embd.type,
            (uint32_t)m->tok_embd.row_bytes,  (uint32_t)in->n_embd};
    vk_dispatch(vm, SH_embed, &pe, sizeof pe, (uint32_t)T, 1);
    add_rmsnorm(vm, m, 0, &m->layers[0].attn_norm, s->a.addr, T, 0);
    for (int l = 0; l < in->n_layer; l++) {
        const layer *L = &m->layers[l];
        if (L->is_attn) attention_block(vm, m, L, T);
        else conv_block(vm, m, L, T, n_seq);
        add_rmsnorm(vm, m, s->out.addr, &L->ffn_norm, s->a.addr, T, 0);
        if (L->is_moe) moe_ffn(vm, m, L, T);
        else dense_ffn(vm, L, T);
        if (l + 1 < in->n_layer) add_rmsnorm(vm, m, s->out.addr, &m->layers[l + 1].attn_norm, s->a.addr, T, 0);
    }
    if (!n_out) return;
    add_rmsnorm(vm, m, s->out.addr, &m->out_norm, s->a.addr, n_out, s->batch.addr + 4ull * batch_out_tok(s->cap));
    if (emb)
        vkCmdCopyBuffer(vm->cb, s->a.buf, s->emb.buf, 1, &(VkBufferCopy){0, 0, (VkDeviceSize)n_out * in->n_embd * 4});
    dense(vm, &m->output, s->a.addr, n_out, s->logits.addr);
}
