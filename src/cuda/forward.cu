/* forward.cu — the CUDA backend's model pass (spec section 2): the kernels of one forward queued
 * on the model's stream, in the blocks and order of the CPU's cpu/forward.c: conv_block,
 * attention_block, dense_ffn, moe_ffn, then the layer loop (cu_enqueue). Each block queues its
 * products (kernels_mm.cu's cu_matmul: a GEMV for a few columns, a GEMM on the tensor cores above,
 * MoE products over the routing plan's tiles) and kernels over the scratch rows; the residual add
 * and the next norm follow each block (after an MoE layer they also combine the experts'
 * outputs). A decode step may move those into the last block of the product before (FIN_*,
 * LFM2C_CUDA_FUSE). The device, buffers, upload, the batch table, the graph capture and the
 * profile are backend_cuda.cu's; the state both files share is cuda_model.h's. */
#include "blas_moe.h"
#include "cuda_blas.h"
#include "cuda_model.h"
#include "cuda_sample.h"

/* ---- matrix products ------------------------------------------------------------------------ */

/* where the K-quant GEMMs may split x into halves once (mm_args.xh) */
static void kq_room(cu_model *cm, mm_args *a) {
    a->x_lo = cm->use_x_lo;
    a->kq_reg = cm->use_kq_reg;
    a->xh = cm->s.xh;
    a->xl = cm->s.xl;
    a->xs = cm->s.xs;
    a->xq_cap = cm->s.xq_cap;
}

/* y = W x for T tokens (a dense matrix) */
static mm_args dense_args(cu_model *cm, const tensor *w, const float *x, int T, float *y) {
    mm_args a = {};
    a.w = dev_ptr(cm, w);
    a.type = w->type;
    a.n = (int)w->ne[0];
    a.rows = (int)w->ne[1];
    a.row_bytes = w->row_bytes;
    a.x = x;
    a.ldx = a.n;
    a.y = y;
    a.ldy = a.rows;
    a.ncols = T;
    a.tc = cm->use_tc;
    a.kq_mma = cm->use_kq_mma;
    kq_room(cm, &a);
    return a;
}

/* y = W x, then what fin asks of the product's last block (fin.done NULL: nothing). A matrix of
 * at most CU_GEMV_MAX_ROWS rows (the MoE router) takes the GEMV for any number of tokens: the GEMM
 * would give it one row tile, a block per 32 tokens, on a GPU of a hundred and more SMs. With
 * LFM2C_CUDA_BLAS=1 (or LFM2C_CUDA_BF16=1), cu_bf16_cols() columns or more over a weight with a
 * BF16 copy: cuBLASLt. */
static void matmul_fin(cu_model *cm, const tensor *w, const float *x, int T, float *y, const cu_fin &fin) {
    if (!fin.done && cu_blas_matmul(cm->blas, &cm->q, w, x, T, y)) return;
    mm_args a = dense_args(cm, w, x, T, y);
    a.fin = fin;
    cu_matmul(&cm->q, &a, T <= CU_GEMV_COLS || a.rows <= CU_GEMV_MAX_ROWS);
}

static void matmul(cu_model *cm, const tensor *w, const float *x, int T, float *y) {
    matmul_fin(cm, w, x, T, y, cu_fin{});
}

/* gate and up can run as one launch with the SwiGLU (mm_args.w_up): the same type and shape */
static bool glu_ok(const cu_model *cm, const tensor *gate, const tensor *up) {
    return cm->use_glu && gate->type == up->type && gate->row_bytes == up->row_bytes && gate->ne[0] == up->ne[0] &&
           gate->ne[1] == up->ne[1] && gate->ne[2] == up->ne[2];
}

/* y = silu(gate x) * (up x) for one token: one launch where glu_ok, else two and the SwiGLU
 * (up's product into y2). */
static void matmul_glu(cu_model *cm, const tensor *gate, const tensor *up, const float *x, int T, float *y,
                       float *y2) {
    mm_args a = dense_args(cm, gate, x, T, y);
    if (glu_ok(cm, gate, up) && cu_mm_one_column(&a, T <= CU_GEMV_COLS)) {
        a.w_up = dev_ptr(cm, up);
        cu_matmul(&cm->q, &a, true);
        return;
    }
    matmul(cm, gate, x, T, y);
    matmul(cm, up, x, T, y2);
    cu_swiglu(&cm->q, y, y2, (size_t)T * gate->ne[1]);
}

/* ---- one forward ---------------------------------------------------------------------------- */

/* What every block of one forward reads: the batch (T tokens of n_seq sequences, n_out rows of
 * logits; the table's parts on the device) and which of a decode step's fusions are on. */
struct cu_pass {
    lfm2c_model *m;
    cu_model *cm;
    int T, n_seq, n_out;
    const cu_tok *toks;
    const int *seq_last, *out_tok; /* the table's: each sequence's last token, the rows with logits */
    int *inv;                      /* the MoE plan's pair -> column map (the combine's) */
    bool fuse, route_fuse, conv_fuse;
    bool moe_grouped; /* LFM2C_CUDA_MOE=grouped and a batch past the GEMVs: the epilogues (moe_ffn) */
};

/* A decode step's add + norm after a product (x += its output, or the experts' combined; out =
 * rmsnorm(x) * w) in that product's last block: a one-token forward whose token's logits are
 * wanted (the output norm's row map is then that token). Otherwise done stays NULL and the
 * caller launches the add + norm itself. */
static cu_fin fin_for(const cu_pass *p, bool fuse, const float *w, const float *wsel, const int *inv) {
    cu_fin f = {};
    if (!fuse) return f;
    f.done = p->cm->s.ints + ints_for(&p->m->info, p->cm->s.cap).done;
    f.x = p->cm->s.x;
    f.w = w;
    f.out = p->cm->s.a;
    f.H = p->m->info.n_embd;
    f.eps = p->m->info.norm_eps;
    f.wsel = wsel;
    f.inv = inv;
    f.k = p->m->info.n_expert_used;
    return f;
}

/* the gated short conv: in-projection, the conv over each sequence's last tokens (its state kept
 * up to date), out-projection into s->out (with the add + ffn norm where fused) */
static void conv_block(const cu_pass *p, const layer *L, const float *ffn_norm) {
    cu_model *cm = p->cm;
    cu_scratch *s = &cm->s;
    const int T = p->T, H = p->m->info.n_embd;
    const float *conv_w = (const float *)dev_ptr(cm, &L->conv_w);
    if (p->conv_fuse) { /* the conv in the in-projection's last block */
        cu_fin cf = fin_for(p, true, nullptr, nullptr, nullptr);
        cf.conv_o = s->hid;
        cf.conv_w = conv_w;
        cf.toks = p->toks;
        cf.conv_index = L->conv_index;
        matmul_fin(cm, &L->conv_in, s->a, T, s->big, cf);
        prof_mark(cm, "conv in proj+conv");
    } else {
        matmul(cm, &L->conv_in, s->a, T, s->big);
        prof_mark(cm, "conv in proj");
        cu_conv(&cm->q, s->big, conv_w, p->toks, T, H, L->conv_index, s->hid,
                p->n_seq == T); /* a token per sequence: each token's thread also updates the state */
        if (p->n_seq != T) cu_conv_state(&cm->q, s->big, p->toks, p->seq_last, p->n_seq, H, L->conv_index);
        prof_mark(cm, "conv");
    }
    matmul_fin(cm, &L->conv_out, s->hid, T, s->out, fin_for(p, p->fuse, ffn_norm, nullptr, nullptr));
    prof_mark(cm, "conv out proj");
}

/* grouped-query attention: q, k, v; their norms and rotation, k and v into the sessions' caches;
 * attention over each token's sequence; the out-projection into s->out (add + norm where fused) */
static void attention_block(const cu_pass *p, const layer *L, const float *ffn_norm) {
    cu_model *cm = p->cm;
    cu_scratch *s = &cm->s;
    const lfm2c_model_info *in = &p->m->info;
    const int T = p->T, hd = in->head_dim, nh = in->n_head, nkv = L->n_head_kv, kvd = nkv * hd;
    float *q = s->big, *k = s->hid, *v = s->hid + (size_t)T * kvd;
    matmul(cm, &L->wq, s->a, T, q);
    matmul(cm, &L->wk, s->a, T, k);
    matmul(cm, &L->wv, s->a, T, v);
    prof_mark(cm, "qkv proj");
    cu_qk_norm_rope_store(&cm->q, q, k, v, (const float *)dev_ptr(cm, &L->q_norm),
                          (const float *)dev_ptr(cm, &L->k_norm), s->rope, p->toks, T, nh, nkv, hd, L->attn_index,
                          cm->wd.kv_dim, in->norm_eps, cm->kv);
    prof_mark(cm, "qk norm+rope");
    if (cm->use_gqa && cu_attention_gqa_ok(nh, nkv, hd))
        cu_attention_gqa(&cm->q, q, p->toks, T, nh, nkv, hd, L->attn_index, cm->wd.kv_dim, s->big2, cm->kv,
                         s->attn_part);
    else cu_attention(&cm->q, q, p->toks, T, nh, nkv, hd, L->attn_index, cm->wd.kv_dim, s->big2, cm->kv);
    prof_mark(cm, "attention");
    matmul_fin(cm, &L->wo, s->big2, T, s->out, fin_for(p, p->fuse, ffn_norm, nullptr, nullptr));
    prof_mark(cm, "o proj");
}

/* dense SwiGLU FFN: out = W_down (silu(W_gate a) * W_up a); nw: the next norm (where fused) */
static void dense_ffn(const cu_pass *p, const layer *L, const float *nw) {
    cu_model *cm = p->cm;
    cu_scratch *s = &cm->s;
    matmul_glu(cm, &L->ffn_gate, &L->ffn_up, s->a, p->T, s->big, s->big2);
    prof_mark(cm, "ffn gate+up+swiglu");
    matmul_fin(cm, &L->ffn_down, s->big, p->T, s->out, fin_for(p, p->fuse, nw, nullptr, nullptr));
    prof_mark(cm, "ffn down");
}

/* The router's product and the routing: each token's k experts and weights (s->wsel), the
 * experts' column tiles and the pairs' scatter, in the int scratch (in the router product's last
 * block where fused). */
static void moe_route(const cu_pass *p, const layer *L, int width) {
    cu_model *cm = p->cm;
    cu_scratch *s = &cm->s;
    const lfm2c_model_info *in = &p->m->info;
    const int E = in->n_expert, k = in->n_expert_used, T = p->T;
    const int_layout il = ints_for(in, s->cap);
    int *I = s->ints;
    const float *bias = L->expert_bias.data ? (const float *)dev_ptr(cm, &L->expert_bias) : nullptr;
    if (p->route_fuse && cu_moe_route1_ok(T, width, E, k)) {
        cu_fin rf = {};
        rf.done = s->ints + il.done;
        rf.route = {bias, E, k, I + il.sel, s->wsel, I + il.te, I + il.tc, I + il.tn, I + il.nt, I + il.col_src, I + il.inv};
        matmul_fin(cm, &L->router, s->a, T, s->router, rf);
        prof_mark(cm, "router+route+plan");
        return;
    }
    matmul(cm, &L->router, s->a, T, s->router);
    prof_mark(cm, "router");
    cu_moe_route(&cm->q, s->router, bias, T, E, k, width, I + il.sel, s->wsel, I + il.count, I + il.start,
                 I + il.fill, I + il.te, I + il.tc, I + il.tn, I + il.nt, I + il.col_src, I + il.inv,
                 p->moe_grouped ? s->wpos : nullptr);
    prof_mark(cm, "route+plan");
}

/* The products of one expert tensor t over the routing plan's tiles of width columns. */
static mm_args expert_args(const cu_pass *p, const tensor *t, int width) {
    cu_model *cm = p->cm;
    const lfm2c_model_info *in = &p->m->info;
    const int_layout il = ints_for(in, cm->s.cap);
    int *I = cm->s.ints;
    const int n_pairs = p->T * in->n_expert_used;
    int max_tiles = (n_pairs + width - 1) / width + in->n_expert;
    if (max_tiles > n_pairs) max_tiles = n_pairs;
    mm_args a = {};
    a.type = t->type;
    a.n = (int)t->ne[0];
    a.rows = (int)t->ne[1];
    a.row_bytes = t->row_bytes;
    a.expert_stride = t->row_bytes * (size_t)t->ne[1];
    a.w = dev_ptr(cm, t);
    a.ncols = n_pairs;
    a.tile_e = I + il.te;
    a.tile_c0 = I + il.tc;
    a.tile_n = I + il.tn;
    a.n_tiles = I + il.nt;
    a.max_tiles = max_tiles;
    a.tile_width = width;
    a.tc = cm->use_tc;
    a.kq_mma = cm->use_kq_mma;
    kq_room(cm, &a);
    a.x_rows = p->T;
    return a;
}

/* The experts of an MoE layer: their outputs into s->D (a row per pair, in expert order), their
 * weights into s->wsel; the next norm (nw) combines them (cu_moe_combine_add_rmsnorm, or the down
 * product's last block where fused). */
static void moe_ffn(const cu_pass *p, const layer *L, const float *nw) {
    cu_model *cm = p->cm;
    cu_scratch *s = &cm->s;
    const int T = p->T, H = p->m->info.n_embd, Fe = (int)L->gate_exps.ne[1];
    const bool gemv = T <= CU_GEMV_COLS;
    const int width = gemv ? (T == 1 ? 1 : CU_GEMV_COLS) : CU_GEMM_COLS; /* one token: tiles of one column */
    const size_t n_pairs = (size_t)T * p->m->info.n_expert_used;
    moe_route(p, L, width);
    const int_layout il = ints_for(&p->m->info, s->cap);
    if (!gemv && cm->moe == CU_MOE_CUBLAS && T >= cm->bf16_cols &&
        cu_moe_blas_ffn(cm->moe_blas, &cm->q, (int)(L - p->m->layers), s->a, T, p->m->info.n_expert_used,
                        s->ints + il.count, s->ints + il.col_src, s->D)) {
        prof_mark(cm, "experts (cuBLAS grouped)");
        return;
    }
    mm_args a = expert_args(p, &L->gate_exps, width);
    a.x = s->a, a.ldx = H, a.col_src = s->ints + ints_for(&p->m->info, s->cap).col_src, a.ldy = Fe, a.y = s->G;
    if (glu_ok(cm, &L->gate_exps, &L->up_exps) && (cu_mm_one_column(&a, gemv) || (p->moe_grouped && cu_mm_glu_gemm(&a)))) {
        a.w_up = dev_ptr(cm, &L->up_exps); /* gate, up and SwiGLU in one launch */
        cu_matmul(&cm->q, &a, gemv);
        prof_mark(cm, "experts gate+up+swiglu");
    } else {
        cu_matmul(&cm->q, &a, gemv);
        prof_mark(cm, "experts gate");
        mm_args u = expert_args(p, &L->up_exps, width);
        u.x = s->a, u.ldx = H, u.col_src = a.col_src, u.ldy = Fe, u.y = s->U;
        cu_matmul(&cm->q, &u, gemv);
        prof_mark(cm, "experts up");
        cu_swiglu(&cm->q, s->G, s->U, n_pairs * Fe);
        prof_mark(cm, "swiglu");
    }
    mm_args d = expert_args(p, &L->down_exps, width);
    d.x = s->G, d.ldx = Fe, d.y = s->D, d.ldy = H;
    d.fin = fin_for(p, p->fuse, nw, s->wsel, p->inv);
    if (p->moe_grouped) d.y_scale = s->wpos; /* each pair by its router weight: the combine only sums */
    cu_matmul(&cm->q, &d, gemv);
    prof_mark(cm, "experts down");
}

/* The batch table up, the embedding rows, the rotation table, the first layer's norm. */
static void embed(const cu_pass *p) {
    cu_model *cm = p->cm;
    cu_scratch *s = &cm->s;
    const lfm2c_model_info *in = &p->m->info;
    cu_q *cq = &cm->q;
    prof_mark(cm, "start");
    if (s->table_bytes) cudaMemcpyAsync(s->table, s->host_table, s->table_bytes, cudaMemcpyHostToDevice, cq->st);
    if (p->fuse || p->route_fuse || p->conv_fuse) /* the fused kernels' counter: after a failure too */
        cudaMemsetAsync(s->ints + ints_for(in, s->cap).done, 0, sizeof(int), cq->st);
    cu_q_other(cq);
    prof_mark(cm, "table upload");
    const lfm2c_model *m = p->m;
    cu_embed(cq, dev_ptr(cm, &m->tok_embd), m->tok_embd.type, m->tok_embd.row_bytes, in->n_embd, p->toks, p->T, s->x);
    cu_rope_table(cq, p->toks, p->T, in->head_dim, in->rope_theta, s->rope);
    cu_add_rmsnorm(cq, s->x, nullptr, (const float *)dev_ptr(cm, &m->layers[0].attn_norm), s->a, p->T, in->n_embd,
                   in->norm_eps, nullptr);
    prof_mark(cm, "embed+rope+norm");
}

/* The residual add and the norm w: rows rows (map: the table's rows, for the output norm's
 * rows with logits); after an MoE layer the experts' outputs are combined in it. */
static void add_norm(const cu_pass *p, bool moe, const float *w, int rows, const int *map) {
    cu_model *cm = p->cm;
    cu_scratch *s = &cm->s;
    const lfm2c_model_info *in = &p->m->info;
    if (moe) {
        cu_moe_combine_add_rmsnorm(&cm->q, s->x, s->D, p->moe_grouped ? nullptr : s->wsel, p->inv,
                                   in->n_expert_used, w, s->a, rows, in->n_embd, in->norm_eps, map);
        prof_mark(cm, "combine+add+norm");
    } else {
        cu_add_rmsnorm(&cm->q, s->x, s->out, w, s->a, rows, in->n_embd, in->norm_eps, map);
        prof_mark(cm, "add+norm");
    }
}

/* The output head over the rows with logits, and the logits down (or the device sampler's rows). */
static void head(const cu_pass *p) {
    cu_model *cm = p->cm;
    cu_scratch *s = &cm->s;
    const int V = p->m->info.n_vocab;
    matmul(cm, &p->m->output, s->a, p->n_out, s->logits);
    prof_mark(cm, "output proj");
    if (cu_sampler_active(cm->smp)) /* rows planned to be sampled here (sample_step.cu) */
        cu_sampler_enqueue(cm->smp, &cm->q, s->logits, s->host_logits, p->n_out, V);
    else
        cudaMemcpyAsync(s->host_logits, s->logits, sizeof(float) * (size_t)p->n_out * V, cudaMemcpyDeviceToHost,
                        cm->q.st);
    cu_q_other(&cm->q);
    prof_mark(cm, "logits download");
}

/* The layer loop (cuda_model.h): the embedding, each layer's mixer and FFN between the norms,
 * the final norm and the head for the output rows. A decode step with logits may fuse the add +
 * norms into the products before them (FIN_NORM), the routing (FIN_ROUTE), the conv (FIN_CONV). */
void cu_enqueue(lfm2c_model *m, cu_model *cm, int T, int n_seq, int n_out) {
    const lfm2c_model_info *in = &m->info;
    const cu_tok *toks = (const cu_tok *)cm->s.table;
    const int *seq_last = (const int *)(toks + cm->s.cap);
    const bool one = T == 1 && n_out == 1;
    const cu_pass p = {m,
                       cm,
                       T,
                       n_seq,
                       n_out,
                       toks,
                       seq_last,
                       seq_last + cm->s.cap,
                       cm->s.ints + ints_for(in, cm->s.cap).inv,
                       one && (cm->use_fin & FIN_NORM),
                       one && (cm->use_fin & FIN_ROUTE),
                       one && (cm->use_fin & FIN_CONV),
                       cm->moe == CU_MOE_GROUPED && T > CU_GEMV_COLS};
    embed(&p);
    for (int l = 0; l < in->n_layer; l++) {
        const layer *L = &m->layers[l];
        const float *ffn_norm = (const float *)dev_ptr(cm, &L->ffn_norm);
        if (L->is_attn) attention_block(&p, L, ffn_norm);
        else conv_block(&p, L, ffn_norm);
        if (!p.fuse) add_norm(&p, false, ffn_norm, T, nullptr);
        const bool last = l + 1 == in->n_layer;
        const float *nw = (const float *)dev_ptr(cm, last ? &m->out_norm : &m->layers[l + 1].attn_norm);
        if (L->is_moe) moe_ffn(&p, L, nw);
        else dense_ffn(&p, L, nw);
        if (last && !n_out) return;
        if (!p.fuse) add_norm(&p, L->is_moe, nw, last ? n_out : T, last ? p.out_tok : nullptr);
    }
    head(&p);
}
