/* mem_plan.c — the GPU memory planner (mem_plan.h): what a model's parts take on a card, and
 * what of the optional copies fits. Pure arithmetic on shapes: no device is asked here (the CUDA
 * backend and `lfm2c info --device cuda` pass the card's free memory in). The scratch is an
 * estimate of the CUDA forward's buffers at the request's ubatch (backend_cuda.cu scratch_reserve:
 * the activations, the MoE pairs' rows, the logits of every slot and the device sampler's work
 * rows); the reserve covers the CUDA context, cuBLAS workspaces and fragmentation. */
#include "core/mem_plan.h"

#include "base/error.h"
#include "core/backend.h"
#include "core/gpu_shapes.h"
#include "core/model.h"
#include "core/session.h"
#include "formats/kv_layout.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* kept free: 1 GiB and 2% of the card; the scratch of lfm2c_memory_plan: a step of 8,192 tokens
 * (issue 71's token budget on a large card) */
enum { RESERVE_FIXED_MB = 1024, RESERVE_PERCENT = 2, PLAN_UBATCH = 8192 };

static uint64_t params_of(const tensor *t) {
    return t->data ? (uint64_t)t->ne[0] * (uint64_t)t->ne[1] * (uint64_t)(t->ne[2] > 0 ? t->ne[2] : 1) : 0;
}

void mem_shapes_of(const lfm2c_model *m, mem_shapes *sh) {
    const lfm2c_model_info *in = &m->info;
    memset(sh, 0, sizeof *sh);
    sh->n_embd = in->n_embd, sh->n_vocab = in->n_vocab, sh->n_layer = in->n_layer;
    sh->n_attn = m->n_attn, sh->n_conv = m->n_conv, sh->head_dim = in->head_dim;
    sh->n_head = in->n_head, sh->n_head_kv = in->n_head_kv_max;
    sh->n_expert = in->n_expert, sh->n_expert_used = in->n_expert_used, sh->expert_ff = in->n_ff_exp;
    sh->ff_max = in->n_ff;
    sh->weight_bytes = in->weight_bytes;
    for (int l = 0; l < in->n_layer; l++) {
        const layer *L = &m->layers[l];
        const tensor *dense[] = {&L->conv_in, &L->conv_out, &L->wq,     &L->wk,       &L->wv,
                                 &L->wo,      &L->ffn_gate, &L->ffn_up, &L->ffn_down, &L->router};
        for (size_t i = 0; i < sizeof dense / sizeof *dense; i++) sh->dense_params += params_of(dense[i]);
        sh->expert_params += params_of(&L->gate_exps) + params_of(&L->up_exps) + params_of(&L->down_exps);
        if (L->ffn_gate.data && L->ffn_gate.ne[1] > sh->ff_max) sh->ff_max = (int)L->ffn_gate.ne[1];
    }
    sh->dense_params += m->output.data ? params_of(&m->output) : params_of(&m->tok_embd);
}

uint64_t mem_kv_per_token(const mem_shapes *sh, int kv_type) {
    const uint64_t elem = kv_type == LFM2C_KV_F32 ? 4 : 2;
    return (uint64_t)sh->n_attn * 2 * (uint64_t)sh->n_head_kv * (uint64_t)sh->head_dim * elem;
}

/* bytes the CUDA forward's scratch takes per token of a forward */
static uint64_t scratch_per_token(const mem_shapes *sh) {
    const uint64_t H = (uint64_t)sh->n_embd, nq = (uint64_t)sh->n_head * sh->head_dim;
    const uint64_t big = (uint64_t)gpu_big_width((int64_t)H, (int64_t)nq, sh->ff_max);
    const uint64_t hid = (uint64_t)gpu_hid_width((int64_t)H, (int64_t)nq, (int64_t)sh->n_head_kv * sh->head_dim);
    const uint64_t k = (uint64_t)sh->n_expert_used;
    const uint64_t moe = (uint64_t)sh->n_expert + 2 * k + k * (2 * (uint64_t)sh->expert_ff + H);
    /* floats: x a out, big big2, hid, rope, the MoE rows; x as halves for the GEMMs (~1 float) */
    return 4 * (3 * H + 2 * big + hid + (uint64_t)sh->head_dim + moe + big);
}

/* bytes each slot adds besides its KV: its conv state, its logits row and the sampler's work row */
static uint64_t per_slot_extra(const mem_shapes *sh) {
    return (uint64_t)sh->n_conv * 2 * sh->n_embd * 4 + 2 * (uint64_t)sh->n_vocab * 4;
}

bool mem_plan_make(const mem_shapes *sh, const mem_request *rq, mem_plan *p) {
    memset(p, 0, sizeof *p);
    uint64_t card = rq->free_bytes;
    if (rq->cap_bytes && rq->cap_bytes < card) card = rq->cap_bytes;
    p->reserve = ((uint64_t)RESERVE_FIXED_MB << 20) + card / 100 * RESERVE_PERCENT;
    p->budget = card > p->reserve ? card - p->reserve : 0;
    const uint64_t slots = rq->slots > 0 ? (uint64_t)rq->slots : 0, ctx = rq->ctx > 0 ? (uint64_t)rq->ctx : 0;
    p->weights = sh->weight_bytes;
    p->scratch =
        scratch_per_token(sh) * (uint64_t)(rq->ubatch > 0 ? rq->ubatch : 2048) + slots * 2 * (uint64_t)sh->n_vocab * 4;
    p->conv = slots * (uint64_t)sh->n_conv * 2 * sh->n_embd * 4;
    p->kv_type = rq->kv_type == LFM2C_KV_F32 ? LFM2C_KV_F32 : LFM2C_KV_F16;
    p->kv = slots * ctx * mem_kv_per_token(sh, p->kv_type);
    if (p->kv_type != LFM2C_KV_F16 && p->weights + p->scratch + p->conv + p->kv > p->budget) {
        p->kv_type = LFM2C_KV_F16; /* the type asked for does not fit: half of it */
        p->kv = slots * ctx * mem_kv_per_token(sh, p->kv_type);
    }
    p->total = p->weights + p->scratch + p->conv + p->kv;
    const uint64_t fixed = p->weights + (p->scratch - slots * 2 * (uint64_t)sh->n_vocab * 4);
    const uint64_t per_slot = ctx * mem_kv_per_token(sh, p->kv_type) + per_slot_extra(sh);
    p->max_slots = p->budget > fixed ? (int)((p->budget - fixed) / (per_slot ? per_slot : 1)) : 0;
    p->fits = p->total <= p->budget;
    if (!p->fits) return false;
    const uint64_t dense = 2 * sh->dense_params, experts = 2 * sh->expert_params;
    if (dense && p->total + dense <= p->budget) {
        p->bf16_dense = true;
        p->dense_bf16 = dense;
        p->total += dense;
    }
    if (experts && p->bf16_dense && p->total + experts <= p->budget) {
        p->bf16_experts = true;
        p->experts_bf16 = experts;
        p->total += experts;
    }
    return true;
}

static double gib(uint64_t b) { return (double)b / (double)(1ull << 30); }

int mem_plan_text(const mem_plan *p, const mem_request *rq, char *buf, size_t cap) {
    return snprintf(buf, cap,
                    "memory plan: %d slots x %d positions, budget %.2f GiB (%.2f GiB kept free)%s\n"
                    "  weights as stored  %8.2f GiB\n"
                    "  KV cache (%s)     %8.2f GiB\n"
                    "  conv states        %8.2f GiB\n"
                    "  scratch + logits   %8.2f GiB\n"
                    "  BF16 non-expert    %8.2f GiB  %s\n"
                    "  BF16 experts       %8.2f GiB  %s\n"
                    "  total              %8.2f GiB: %s (at most %d slots of %d)\n",
                    rq->slots, rq->ctx, gib(p->budget), gib(p->reserve), rq->cap_bytes ? " under the cap" : "",
                    gib(p->weights), p->kv_type == LFM2C_KV_F32 ? "f32" : "f16", gib(p->kv), gib(p->conv),
                    gib(p->scratch), gib(p->bf16_dense ? p->dense_bf16 : 0), p->bf16_dense ? "yes" : "no",
                    gib(p->bf16_experts ? p->experts_bf16 : 0), p->bf16_experts ? "yes" : "no", gib(p->total),
                    p->fits ? "fits" : "does not fit", p->max_slots, rq->ctx);
}

int lfm2c_memory_plan(const lfm2c_model *m, uint64_t free_bytes, uint64_t cap_bytes, int n_slots, int n_ctx, char *buf,
                      size_t cap, lfm2c_error *err) {
    if (!m || !buf || n_slots < 1 || n_ctx < 1) {
        if (err) err->code = LFM2C_EINVAL, snprintf(err->msg, sizeof err->msg, "memory plan: no model, or no slots");
        return -1;
    }
#ifdef LFM2C_HAVE_CUDA
    uint64_t total = 0;
    if (!free_bytes && cuda_mem_info(&free_bytes, &total)) free_bytes = 0;
#endif
    if (!free_bytes) {
        if (err)
            err->code = LFM2C_EUNSUPPORTED,
            snprintf(err->msg, sizeof err->msg, "memory plan: no CUDA device to ask (give the card's memory)");
        return -1;
    }
    mem_shapes sh;
    mem_shapes_of(m, &sh);
    mem_request rq = {free_bytes,
                      cap_bytes,
                      n_slots,
                      n_ctx,
                      m->type_k == LFM2C_KV_F32 && m->type_v == LFM2C_KV_F32 ? LFM2C_KV_F32 : LFM2C_KV_F16,
                      PLAN_UBATCH};
    mem_plan p;
    mem_plan_make(&sh, &rq, &p);
    return mem_plan_text(&p, &rq, buf, cap);
}

uint64_t lfm2c_parse_size(const char *s) {
    if (!s || !*s) return 0;
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v > 0)) return 0;
    double mul = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K': mul = 1024.0, end++; break;
    case 'M': mul = 1024.0 * 1024, end++; break;
    case 'G': mul = 1024.0 * 1024 * 1024, end++; break;
    case 'T': mul = 1024.0 * 1024 * 1024 * 1024, end++; break;
    default: break;
    }
    if (mul > 1 && (*end == 'B' || *end == 'b')) end++;
    else if (mul == 1 && (*end == 'B' || *end == 'b')) end++;
    if (*end) return 0;
    v *= mul;
    return v < 1.8e19 ? (uint64_t)v : 0;
}

/* ---- host memory (lfm2c_memory_estimate) -------------------------------------------------------
 * What a model and its sessions hold in host memory, part by part, as the code allocates it: the
 * file (mapped or copied whole), per sequence the KV arrays at n_ctx positions (kv_layout.h:
 * whole K blocks, V rows to match), the conv columns, the token history and the checkpoints
 * (checkpoint.c: a conv state each, a logits row for the newest ckpt_logits), the backend's
 * forward buffers for one pass (its scratch_bytes) and the logits rows. The rest is estimated:
 * OTHER_FIXED for the process (what `lfm2c --version` holds resident: the C library, the CLI's
 * shared libraries, the threads) and OTHER_PER_TOKEN bytes a vocabulary entry for the tokenizer's
 * tables (measured: 10.6 MB more for a vocabulary of 65,536); docs/USAGE.md has the figures
 * against measured RSS. */
enum { OTHER_FIXED = 10 << 20, OTHER_PER_TOKEN = 160 };

lfm2c_memory_request lfm2c_memory_default_request(const lfm2c_model *m) {
    if (!m) return (lfm2c_memory_request){0};
    const int train = m->info.n_ctx_train;
    return (lfm2c_memory_request){.n_ctx = train > 0 && train < 4096 ? train : 4096,
                                  .n_seq = 1,
                                  .n_batch = SESSION_UBATCH,
                                  .type_k = m->type_k,
                                  .type_v = m->type_v,
                                  .ckpt_max = CKPT_MAX_DEFAULT,
                                  .ckpt_logits = CKPT_LOGITS_DEFAULT,
                                  .logits_rows = 1};
}

static uint64_t file_bytes(const gguf_file *g) {
    uint64_t n = g->size;
    for (uint32_t i = 0; i < g->n_parts; i++) n += g->parts[i]->size;
    return n;
}

int lfm2c_memory_estimate(const lfm2c_model *m, const lfm2c_memory_request *rq, lfm2c_memory_need *need,
                          lfm2c_error *err) {
    if (!m || !rq || !need) return lfm2c_set_error(err, LFM2C_EINVAL, "memory estimate: NULL model or request"), -1;
    const int types_ok = rq->type_k >= LFM2C_KV_F16 && rq->type_k <= LFM2C_KV_Q8_0 && rq->type_v >= LFM2C_KV_F16 &&
                         rq->type_v <= LFM2C_KV_Q8_0;
    if (rq->n_ctx < 1 || rq->n_ctx > (1 << 22) || rq->n_seq < 0 || rq->n_batch < 1 || !types_ok || rq->ckpt_max < 0 ||
        rq->ckpt_logits < 0 || rq->logits_rows < 0) {
        lfm2c_set_error(err, LFM2C_EINVAL, "memory estimate: a size out of range or an unknown KV type");
        return -1;
    }
    if ((rq->type_k == LFM2C_KV_Q8_0 || rq->type_v == LFM2C_KV_Q8_0) && m->info.head_dim % 32) {
        lfm2c_set_error(err, LFM2C_EINVAL,
                        "memory estimate: a q8_0 KV cache needs a head dimension that is a multiple of 32 (this "
                        "model's is %d)",
                        m->info.head_dim);
        return -1;
    }
    const lfm2c_model_info *in = &m->info;
    const uint64_t seqs = (uint64_t)rq->n_seq, V = (uint64_t)in->n_vocab, row = V * sizeof(float);
    const uint64_t conv = (uint64_t)m->n_conv * 2 * (uint64_t)in->n_embd * sizeof(float);
    const int ub = m->backend->ubatch > 0 ? m->backend->ubatch : SESSION_UBATCH;
    int pass = rq->n_batch < ub ? rq->n_batch : ub; /* and never more tokens than the sequences hold */
    if ((int64_t)rq->n_ctx * rq->n_seq < pass) pass = rq->n_ctx * (rq->n_seq > 0 ? rq->n_seq : 1);
    const int rows = rq->logits_rows > 0 ? rq->logits_rows : 1;
    memset(need, 0, sizeof *need);
    need->file = file_bytes(m->gguf);
    need->kv =
        seqs * (uint64_t)m->n_attn * kv_layer_bytes(rq->type_k, rq->type_v, in->n_head_kv_max, in->head_dim, rq->n_ctx);
    const int ck = rq->ckpt_max, cl = rq->ckpt_logits < ck ? rq->ckpt_logits : ck;
    need->state = seqs * (conv + (uint64_t)rq->n_ctx * sizeof(int32_t) + (uint64_t)ck * conv + (uint64_t)cl * row);
    /* the logits of one sequence's consecutive rows go straight to its buffer; a batch of several
     * sequences computes them in scratch */
    const int64_t in_scratch = rq->n_seq > 1 ? (int64_t)rq->n_seq * rows : 0;
    if (m->backend->scratch_bytes)
        need->scratch = m->backend->scratch_bytes(m, pass, in_scratch < pass ? (int)in_scratch : pass);
    need->logits = seqs * (uint64_t)rows * row;
    need->other = OTHER_FIXED + V * OTHER_PER_TOKEN;
    need->total = need->file + need->kv + need->state + need->scratch + need->logits + need->other;
    return 0;
}

uint64_t lfm2c_memory_need_bytes(const lfm2c_model *m, int n_ctx, int n_seq) {
    if (!m) return 0;
    lfm2c_memory_request rq = lfm2c_memory_default_request(m);
    rq.n_ctx = n_ctx, rq.n_seq = n_seq;
    lfm2c_memory_need need;
    return lfm2c_memory_estimate(m, &rq, &need, NULL) ? 0 : need.total - need.file;
}
