/* backend_cuda.cu — the CUDA backend's device, buffers and upload, and its row of the backend
 * table: the LFM2 forward on one CUDA device, whose kernels forward.cu queues (the same blocks as
 * cpu/forward.c; the state both files share is cuda_model.h's). The GGUF's tensor data is
 * uploaded once, as stored; a weight's device address is its offset in the file. Activations stay
 * float; every batch is one pass of kernels on one stream, ending with the logits copied into the
 * sessions' host buffers. Single-token decode (the latency case) is captured once in a CUDA graph
 * and replayed. Here too: the checks at open (core/gpu_shapes.c's, with this backend's types),
 * the sessions' KV cache and conv state, the forward's scratch, the per-stage profile. */
extern "C" {
#include "core/forward.h"
#include "core/gpu_shapes.h"
#include "core/model.h"
#include "core/session.h"
}
#include "backend_cuda.h"
#include "blas_moe.h"
#include "cuda_blas.h"
#include "cuda_kernels.h"
#include "cuda_model.h"
#include "cuda_math.cuh"
#include "cuda_sample.h"

#include <cuda_runtime.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- state ------------------------------------------------------------------------------- */

/* The most tokens a forward takes (lfm2c_backend.ubatch): more than the CPU's, so that a prefill or
 * a large batch gives each of an MoE layer's experts several full column tiles of the GEMM, not one
 * or two partly filled ones, and the dense products more tiles to spread over the SMs. */
enum { CU_UBATCH = 2048 };

/* ---- profile: the device time of each stage of the forward, by name ------------------------- */

/* With LFM2C_CUDA_PROFILE=1 every forward runs as plain launches with an event after each
 * stage; after the forward, the times between events are added up by stage name. */
enum { PROF_EVENTS = 2048, PROF_NAMES = 32 };
struct cu_prof {
    cudaEvent_t ev[PROF_EVENTS];
    const char *tag[PROF_EVENTS];   /* the stage that ends at event i */
    int n;
    const char *name[PROF_NAMES];
    double ms[PROF_NAMES];
    long calls[PROF_NAMES];
    int n_names;
    long forwards, tokens;
};

void cu_prof_mark(cu_model *cm, const char *tag) {
    cu_prof *p = cm->prof;
    if (!p || p->n >= PROF_EVENTS) return;
    p->tag[p->n] = tag;
    cudaEventRecord(p->ev[p->n++], cm->q.st);
    cu_q_other(&cm->q);
}

/* after the stream's work is done: the stages' times into the totals */
static void prof_collect(cu_model *cm, int T) {
    cu_prof *p = cm->prof;
    if (!p || p->n < 2) return;
    for (int i = 1; i < p->n; i++) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, p->ev[i - 1], p->ev[i]) != cudaSuccess) continue;
        int k = 0;
        while (k < p->n_names && strcmp(p->name[k], p->tag[i])) k++;
        if (k == p->n_names) {
            if (k == PROF_NAMES) continue;
            p->name[p->n_names++] = p->tag[i];
        }
        p->ms[k] += ms;
        p->calls[k]++;
    }
    p->forwards++;
    p->tokens += T;
    p->n = 0;
}

static void prof_free(cu_model *cm) {
    if (!cm->prof) return;
    for (int i = 0; i < PROF_EVENTS; i++) cudaEventDestroy(cm->prof->ev[i]);
    free(cm->prof);
    cm->prof = nullptr;
}

static void prof_init(cu_model *cm) {
    const char *e = getenv("LFM2C_CUDA_PROFILE");
    if (!e || !strcmp(e, "0")) return;
    cm->prof = (cu_prof *)calloc(1, sizeof *cm->prof);
    if (!cm->prof) return;
    for (int i = 0; i < PROF_EVENTS; i++)
        if (cudaEventCreate(&cm->prof->ev[i]) != cudaSuccess) {
            for (int j = 0; j < i; j++) cudaEventDestroy(cm->prof->ev[j]);
            free(cm->prof);
            cm->prof = nullptr;
            cudaGetLastError();
            return;
        }
    cm->use_graph = false;   /* events between the stages: plain launches */
}

extern "C" const char *cuda_backend_note(const lfm2c_model *m) {
    const cu_model *cm = m && m->backend == &backend_cuda ? (const cu_model *)m->backend_state : nullptr;
    return cm && cm->note[0] ? cm->note : nullptr;
}

extern "C" int cuda_profile_text(const lfm2c_model *m, char *buf, size_t n) {
    const cu_model *cm = m && m->backend == &backend_cuda ? (const cu_model *)m->backend_state : nullptr;
    if (!cm || !cm->prof || !n) return -1;
    const cu_prof *p = cm->prof;
    double total = 0;
    for (int k = 0; k < p->n_names; k++) total += p->ms[k];
    size_t o = 0;
    o += snprintf(buf + o, n - o, "CUDA profile: %ld forwards, %ld tokens, %.3f ms of device time\n", p->forwards,
                  p->tokens, total);
    o += snprintf(buf + o, o < n ? n - o : 0, "%-16s %8s %12s %14s %7s\n", "stage", "calls", "total ms",
                  "ms / forward", "share");
    for (int k = 0; k < p->n_names && o < n; k++)
        o += snprintf(buf + o, n - o, "%-16s %8ld %12.3f %14.4f %6.1f%%\n", p->name[k], p->calls[k], p->ms[k],
                      p->forwards ? p->ms[k] / p->forwards : 0.0, total > 0 ? 100 * p->ms[k] / total : 0.0);
    return 0;
}

struct cu_session {
    void *k, *v;    /* [n_attn][cap][kv_dim_max] of half bits or floats (cu_model.kv) */
    float *conv;    /* [n_conv][2][n_embd] */
    int cap;
};

static int seterr(lfm2c_error *err, int code, const char *fmt, ...) {
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int cuda_fail(lfm2c_error *err, cudaError_t e, const char *what) {
    return seterr(err, e == cudaErrorMemoryAllocation ? LFM2C_ENOMEM : LFM2C_EIO, "CUDA: %s: %s", what,
                  cudaGetErrorString(e));
}

extern "C" int cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();   /* clear the sticky "no device" error */
        return 0;
    }
    return n;
}

/* The name of the GPU a model opened on CUDA runs on (cudaGetDeviceProperties); "" when unknown. */
extern "C" void cuda_device_name(const lfm2c_model *m, char *name, size_t cap) {
    cudaDeviceProp p;
    if (!cap) return;
    name[0] = 0;
    if (cudaGetDeviceProperties(&p, ((const cu_model *)m->backend_state)->dev) == cudaSuccess)
        snprintf(name, cap, "%s", p.name);
    else cudaGetLastError();
}

/* ---- model ------------------------------------------------------------------------------- */

/* the weight types kernels_mm.cu's products take: the rows of the type table with the CUDA bit */
static int check_model(const lfm2c_model *m, lfm2c_error *err) {
    gpu_rules r = {};
    r.name = "CUDA";
    r.run = backend_cuda.types;
    return gpu_check_model(m, &r, err);
}

static void free_weights(cu_model *cm) {
    for (int i = 0; i < cm->n_reg; i++) cudaFree(cm->reg[i].dev);
    free(cm->reg);
    cm->reg = nullptr;
    cm->n_reg = 0;
}

/* Uploads the data section of every file of the model (the first part and, for a split model,
 * the others: their tensors point into their own mappings), then checks that every tensor has
 * a device address. */
static int upload_weights(const lfm2c_model *m, cu_model *cm, lfm2c_error *err) {
    const gguf_file *g = m->gguf;
    cm->reg = (cu_region *)calloc((size_t)g->n_parts + 1, sizeof *cm->reg);
    if (!cm->reg) return seterr(err, LFM2C_ENOMEM, "out of memory");
    for (uint32_t i = 0; i <= g->n_parts; i++) {
        const gguf_file *f = i ? g->parts[i - 1] : g;
        cu_region *r = &cm->reg[cm->n_reg++];
        r->host = f->map + f->data_offset;
        r->bytes = f->size - f->data_offset;
        cudaError_t e = cudaMalloc((void **)&r->dev, r->bytes ? r->bytes : 1);
        if (e == cudaSuccess) e = cudaMemcpy(r->dev, r->host, r->bytes, cudaMemcpyHostToDevice);
        if (e != cudaSuccess) return cuda_fail(err, e, "uploading the weights");
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        tensor t = {};
        t.data = g->tensors[i].data;
        if (t.data && g->tensors[i].nbytes && !dev_ptr(cm, &t))
            return seterr(err, LFM2C_EUNSUPPORTED, "CUDA backend: tensor '%s' is outside the model's files",
                          g->tensors[i].name);
    }
    return 0;
}

/* LFM2C_CUDA_FUSE: "1" or "all" every fusion, else a comma list of norm, route, conv ("0", unset:
 * none). Each moves kernels of a single-token step into the last block of the product before. */
static int fin_parse(const char *v) {
    if (!v) return 0;
    if (!strcmp(v, "1") || !strcmp(v, "all")) return FIN_NORM | FIN_ROUTE | FIN_CONV;
    int f = 0;
    for (const char *p = v; *p;) {
        const size_t n = strcspn(p, ",");
        if (n == 4 && !strncmp(p, "norm", 4)) f |= FIN_NORM;
        if (n == 5 && !strncmp(p, "route", 5)) f |= FIN_ROUTE;
        if (n == 4 && !strncmp(p, "conv", 4)) f |= FIN_CONV;
        p += n + (p[n] == ',');
    }
    return f;
}

static int cuda_model_init(lfm2c_model *m, const lfm2c_model_params *, lfm2c_error *err) {
    if (cuda_device_count() <= 0)
        return seterr(err, LFM2C_EUNSUPPORTED, "no CUDA device found");
    if (check_model(m, err)) return -1;
    cu_model *cm = (cu_model *)calloc(1, sizeof *cm);
    if (!cm) return seterr(err, LFM2C_ENOMEM, "out of memory");
    cudaError_t e;
    const char *dev_env = getenv("LFM2C_CUDA_DEVICE");
    cm->dev = dev_env ? atoi(dev_env) : 0;
    if ((e = cudaSetDevice(cm->dev)) != cudaSuccess || (e = cudaStreamCreate(&cm->q.st)) != cudaSuccess) {
        free(cm);
        return cuda_fail(err, e, "device setup");
    }
    cm->kv = (m->type_k == LFM2C_KV_F16 ? CU_KV_K16 : 0) | (m->type_v == LFM2C_KV_F16 ? CU_KV_V16 : 0);
    const char *be = getenv("LFM2C_CUDA_BLAS"), *bf = getenv("LFM2C_CUDA_BF16"); /* untimed: off by default */
    const bool bf16 = bf && strcmp(bf, "0");
    if (upload_weights(m, cm, err) ||
        cu_blas_open(m, bf16 || (be && strcmp(be, "0")), &cm->blas, cm->note, sizeof cm->note, err)) {
        free_weights(cm);
        cudaStreamDestroy(cm->q.st);
        free(cm);
        return -1;
    }
    cm->wd = gpu_widths_of(m);
    const char *ge = getenv("LFM2C_CUDA_GRAPH"), *gb = getenv("LFM2C_CUDA_GRAPH_BUCKETS");
    cm->use_graph = !(ge && !strcmp(ge, "0"));
    cm->use_buckets = gb && strcmp(gb, "0"); /* untimed: off until gpu_check.sh has timed it */
    const char *te = getenv("LFM2C_CUDA_TC");
    cm->use_tc = !(te && !strcmp(te, "0"));
    cm->use_kq_mma = cm->use_tc && !(te && !strcmp(te, "wmma"));
    cm->use_x_lo = !(te && !strcmp(te, "half"));
    cm->use_kq_reg = cm->use_kq_mma && !(te && !strcmp(te, "mma")); /* faster: bench/GPU.md */
    const char *gl = getenv("LFM2C_CUDA_GLU");
    cm->use_glu = !(gl && !strcmp(gl, "0"));
    cm->use_fin = fin_parse(getenv("LFM2C_CUDA_FUSE")); /* all three slower on an H100: bench/GPU.md */
    const char *me = getenv("LFM2C_CUDA_MOE"); /* untimed: off until gpu_check.sh's throughput stage */
    cm->moe = me && !strcmp(me, "grouped")                 ? CU_MOE_GROUPED
              : (me && !strcmp(me, "cublas")) || (bf16 && !me) ? CU_MOE_CUBLAS
                                                               : CU_MOE_KERNELS;
    cm->bf16_cols = cu_bf16_cols();
    const size_t nl = strlen(cm->note); /* (after the dense copies' note, if any) */
    if (nl) snprintf(cm->note + nl, sizeof cm->note - nl, "; ");
    if (cm->moe == CU_MOE_CUBLAS && cu_moe_blas_open(m, cm, &cm->moe_blas, cm->note + strlen(cm->note),
                                                     sizeof cm->note - strlen(cm->note), err)) {
        cu_blas_free(cm->blas);
        free_weights(cm);
        cudaStreamDestroy(cm->q.st);
        free(cm);
        return -1;
    }
    if (cm->moe == CU_MOE_CUBLAS && !cm->moe_blas) cm->moe = CU_MOE_KERNELS; /* the plan said no: cm->note */
    if (nl && cm->note[nl + 2] == 0) cm->note[nl] = 0;                         /* no second note: no "; " */
    const char *ae = getenv("LFM2C_CUDA_ATTN"); /* untimed: off until gpu_check.sh's throughput stage */
    cm->use_gqa = ae && !strcmp(ae, "gqa");
    const char *se = getenv("LFM2C_CUDA_SAMPLE"); /* off until timed on a GPU (docs/CUDA.md) */
    if (se && strcmp(se, "0")) cm->smp = cu_sampler_new();
    if (cudaEventCreate(&cm->pass[0]) != cudaSuccess || cudaEventCreate(&cm->pass[1]) != cudaSuccess) {
        cudaGetLastError();
        cm->pass[0] = cm->pass[1] = nullptr;
    }
    prof_init(cm);
    /* kernels that overlap the one before them: Hopper and later, not while profiling (the
     * stages' events between them) */
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, cm->dev) != cudaSuccess) cudaGetLastError();
    const char *pe = getenv("LFM2C_CUDA_PDL");
    cm->q.pdl = major >= 9 && !(pe && !strcmp(pe, "0")) && !cm->prof;
    m->backend_state = cm;
    return 0;
}

static void scratch_free(cu_scratch *s) {
    float *fs[] = {s->x, s->a, s->out, s->big, s->big2, s->hid, s->rope, s->router, s->wsel, s->G, s->U, s->D, s->wpos};
    for (size_t i = 0; i < sizeof fs / sizeof *fs; i++) cudaFree(fs[i]);
    cudaFree(s->logits);
    cudaFree(s->attn_part);
    cudaFree(s->xh);
    cudaFree(s->xl);
    cudaFree(s->xs);
    cudaFree(s->ints);
    cudaFree(s->table);
    cudaFreeHost(s->host_table);
    cudaFreeHost(s->host_logits);
    free(s->host_seq);
    free(s->host_pos);
    free(s->host_prev);
    memset(s, 0, sizeof *s);
}

static void cuda_model_free(lfm2c_model *m) {
    cu_model *cm = (cu_model *)m->backend_state;
    if (!cm) return;
    cudaStreamSynchronize(cm->q.st);
    for (int i = 0; i < 8; i++)
        if (cm->graph[i]) cudaGraphExecDestroy(cm->graph[i]);
    cudaFree(cm->pad_k), cudaFree(cm->pad_v), cudaFree(cm->pad_conv);
    scratch_free(&cm->s);
    free_weights(cm);
    prof_free(cm);
    cu_sampler_free(cm->smp);
    cu_blas_free(cm->blas);
    cu_moe_blas_free(cm->moe_blas);
    for (int i = 0; i < 2; i++)
        if (cm->pass[i]) cudaEventDestroy(cm->pass[i]);
    cudaStreamDestroy(cm->q.st);
    free(cm);
    m->backend_state = nullptr;
}

static size_t table_bytes_for(int cap) { return sizeof(cu_tok) * (size_t)cap + sizeof(int) * 2 * (size_t)cap; }

static int scratch_reserve(cu_model *cm, const lfm2c_model_info *in, int T, lfm2c_error *err) {
    cu_scratch *s = &cm->s;
    if (T <= s->cap) return 0;
    cudaStreamSynchronize(cm->q.st);
    scratch_free(s);
    int cap = 16;
    while (cap < T) cap *= 2;
    size_t H = in->n_embd, k = in->n_expert_used, E = in->n_expert, Fe = cm->wd.ff_exp;
    size_t c = (size_t)cap;
    struct { float **p; size_t n; } want[] = {
        {&s->x, c * H}, {&s->a, c * H}, {&s->out, c * H}, {&s->big, c * cm->wd.big}, {&s->big2, c * cm->wd.big},
        {&s->hid, c * cm->wd.hid}, {&s->rope, c * in->head_dim},
        {&s->router, c * (E ? E : 1)}, {&s->wsel, c * (k ? k : 1)}, {&s->G, c * k * Fe + 1},
        {&s->U, c * k * Fe + 1}, {&s->D, c * k * H + 1}, {&s->wpos, c * (k ? k : 1)},
    };
    cudaError_t e = cudaSuccess;
    for (size_t i = 0; i < sizeof want / sizeof *want && e == cudaSuccess; i++)
        e = cudaMalloc((void **)want[i].p, sizeof(float) * want[i].n);
    /* the widest x row a product reads, per token: a row of big, hid or the token's k experts' hidden rows */
    size_t xw = H > (size_t)cm->wd.big ? H : (size_t)cm->wd.big;
    if ((size_t)cm->wd.hid > xw) xw = cm->wd.hid;
    if (k * Fe > xw) xw = k * Fe;
    if (e == cudaSuccess) e = cu_blas_reserve(cm->blas, c * xw); /* x in BF16 for cuBLASLt */
    if (e == cudaSuccess && cm->use_gqa)
        e = cudaMalloc((void **)&s->attn_part, sizeof(float) * cu_attention_gqa_part(in->n_head, in->head_dim));
    if (cm->use_kq_mma && e == cudaSuccess) {
        s->xq_cap = c * xw;
        e = cudaMalloc((void **)&s->xh, sizeof(uint32_t) * (s->xq_cap / 2));
        if (e == cudaSuccess) e = cudaMalloc((void **)&s->xl, sizeof(uint32_t) * (s->xq_cap / 2));
        if (e == cudaSuccess) e = cudaMalloc((void **)&s->xs, sizeof(float) * (s->xq_cap / 32));
    }
    s->table_bytes = table_bytes_for(cap);
    if (e == cudaSuccess) e = cudaMalloc((void **)&s->ints, sizeof(int) * ints_for(in, cap).total);
    if (e == cudaSuccess) e = cudaMalloc(&s->table, s->table_bytes);
    if (e == cudaSuccess) e = cudaMallocHost(&s->host_table, s->table_bytes);
    if (e != cudaSuccess) {
        scratch_free(s);
        return cuda_fail(err, e, "allocating the forward buffers");
    }
    s->host_seq = (const void **)malloc(sizeof(void *) * c);
    s->host_pos = (int *)malloc(sizeof(int) * c);
    s->host_prev = (int *)malloc(sizeof(int) * c);
    if (!s->host_seq || !s->host_pos || !s->host_prev) {
        scratch_free(s);
        return seterr(err, LFM2C_ENOMEM, "out of memory");
    }
    s->cap = cap;
    cm->generation++;
    return 0;
}

/* s->logits and its pinned host copy for n rows (the tokens of a forward with logits), grown to
 * a power of two and kept */
static int logits_reserve(cu_model *cm, const lfm2c_model_info *in, int n, lfm2c_error *err) {
    cu_scratch *s = &cm->s;
    if (n <= s->logits_rows) return 0;
    cudaStreamSynchronize(cm->q.st);
    cudaFree(s->logits);
    cudaFreeHost(s->host_logits);
    s->logits = nullptr;
    s->host_logits = nullptr;
    s->logits_rows = 0;
    int rows = 16;
    while (rows < n) rows *= 2;
    const size_t bytes = sizeof(float) * (size_t)rows * in->n_vocab;
    cudaError_t e = cudaMalloc((void **)&s->logits, bytes);
    if (e == cudaSuccess) e = cudaMallocHost((void **)&s->host_logits, bytes);
    if (e != cudaSuccess) {
        cudaFree(s->logits);
        cudaFreeHost(s->host_logits);
        s->logits = nullptr;
        s->host_logits = nullptr;
        return cuda_fail(err, e, "allocating the logits");
    }
    s->logits_rows = rows;
    cm->generation++; /* graphs hold the logits' pointer */
    return 0;
}

/* ---- sessions ----------------------------------------------------------------------------- */

static int cuda_session_init(lfm2c_session *s, lfm2c_error *err) {
    lfm2c_model *m = s->model;
    cu_session *cs = (cu_session *)calloc(1, sizeof *cs);
    if (!cs) return seterr(err, LFM2C_ENOMEM, "out of memory");
    cudaSetDevice(((cu_model *)m->backend_state)->dev);
    size_t bytes = sizeof(float) * ((size_t)m->n_conv * 2 * m->info.n_embd + 1);
    cudaError_t e = cudaMalloc((void **)&cs->conv, bytes);
    if (e == cudaSuccess) e = cudaMemset(cs->conv, 0, bytes);
    if (e != cudaSuccess) {
        cudaFree(cs->conv);
        free(cs);
        return cuda_fail(err, e, "allocating the conv state");
    }
    s->backend_state = cs;
    return 0;
}

static void cuda_session_free(lfm2c_session *s) {
    cu_session *cs = (cu_session *)s->backend_state;
    if (!cs) return;
    cudaStreamSynchronize(((cu_model *)s->model->backend_state)->q.st);
    cudaFree(cs->k);
    cudaFree(cs->v);
    cudaFree(cs->conv);
    free(cs);
    s->backend_state = nullptr;
}

static int cuda_session_reserve(lfm2c_session *s, int cap, lfm2c_error *err) {
    cu_session *cs = (cu_session *)s->backend_state;
    cu_model *cm = (cu_model *)s->model->backend_state;
    if (cap <= cs->cap) return 0;
    int na = s->model->n_attn;
    if (!na) { cs->cap = cap; return 0; }
    /* a position's row of K and of V: half bits or floats */
    const size_t rk = (cm->kv & CU_KV_K16 ? 2 : 4) * (size_t)cm->wd.kv_dim;
    const size_t rv = (cm->kv & CU_KV_V16 ? 2 : 4) * (size_t)cm->wd.kv_dim;
    void *nk = nullptr, *nv = nullptr;
    cudaSetDevice(cm->dev);
    cudaStreamSynchronize(cm->q.st);
    cudaError_t e = cudaMalloc(&nk, rk * cap * na);
    if (e == cudaSuccess) e = cudaMalloc(&nv, rv * cap * na);
    for (int l = 0; l < na && e == cudaSuccess && cs->cap; l++) {   /* old positions keep their place */
        e = cudaMemcpy((char *)nk + rk * cap * l, (char *)cs->k + rk * cs->cap * l, rk * cs->cap,
                       cudaMemcpyDeviceToDevice);
        if (e == cudaSuccess)
            e = cudaMemcpy((char *)nv + rv * cap * l, (char *)cs->v + rv * cs->cap * l, rv * cs->cap,
                           cudaMemcpyDeviceToDevice);
    }
    if (e != cudaSuccess) {
        cudaFree(nk);
        cudaFree(nv);
        return cuda_fail(err, e, "growing the KV cache");
    }
    cudaFree(cs->k);
    cudaFree(cs->v);
    cs->k = nk;
    cs->v = nv;
    cs->cap = cap;
    return 0;
}

static size_t conv_bytes(const lfm2c_session *s) {
    return sizeof(float) * (size_t)s->model->n_conv * 2 * s->model->info.n_embd;
}

static void cuda_session_pull_conv(lfm2c_session *s) {
    cu_session *cs = (cu_session *)s->backend_state;
    if (cs) cudaMemcpy(s->conv, cs->conv, conv_bytes(s), cudaMemcpyDeviceToHost);
}

static void cuda_session_push_conv(lfm2c_session *s) {
    cu_session *cs = (cu_session *)s->backend_state;
    if (cs) cudaMemcpy(cs->conv, s->conv, conv_bytes(s), cudaMemcpyHostToDevice);
}

/* ---- forward ------------------------------------------------------------------------------- */

/* Fills the pinned batch table: tokens, previous-token links, the last token of each sequence,
 * the tokens whose logits are wanted. Returns n_seq; *n_out set. */
static int build_table(cu_model *cm, const fwd_token *toks, int T, int *n_out) {
    cu_tok *tt = (cu_tok *)cm->s.host_table;
    int *seq_last = (int *)(tt + cm->s.cap), *out_tok = seq_last + cm->s.cap;
    cu_scratch *sc = &cm->s;
    for (int t = 0; t < T; t++) {
        sc->host_seq[t] = toks[t].seq;
        sc->host_pos[t] = toks[t].pos;
    }
    int n_seq = cm_batch_links(sc->host_seq, sc->host_pos, T, sc->host_prev, seq_last), no = 0;
    for (int t = 0; t < T; t++) {
        cu_session *cs = (cu_session *)toks[t].seq->backend_state;
        tt[t] = cu_tok{cs->k, cs->v, cs->conv, toks[t].token, toks[t].pos, sc->host_prev[t], cs->cap};
        if (toks[t].out_row >= 0) out_tok[no++] = t;
    }
    *n_out = no;
    return n_seq;
}

/* One forward's kernels captured as a graph, instantiated; NULL where capture fails. */
static cudaGraphExec_t capture(lfm2c_model *m, cu_model *cm, int T, int n_seq, int n_out) {
    cudaGraph_t gr;
    cudaGraphExec_t ex = nullptr;
    cudaError_t e = cudaStreamBeginCapture(cm->q.st, cudaStreamCaptureModeThreadLocal);
    if (e == cudaSuccess) {
        cu_enqueue(m, cm, T, n_seq, n_out);
        e = cudaStreamEndCapture(cm->q.st, &gr);
    }
    if (e == cudaSuccess) {
        e = cudaGraphInstantiate(&ex, gr, 0);
        cudaGraphDestroy(gr);
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        return nullptr;
    }
    return ex;
}

/* The graph of slot i (B tokens, a sequence and a row of logits each), captured where it is
 * missing or holds scratch pointers of an older generation; NULL (graphs off from now on) where
 * capture fails even without overlapping launches. */
static cudaGraphExec_t graph_for(lfm2c_model *m, cu_model *cm, int i, int B) {
    if (cm->graph[i] && cm->graph_generation[i] == cm->generation) return cm->graph[i];
    if (cm->graph[i]) cudaGraphExecDestroy(cm->graph[i]);
    cm->graph[i] = capture(m, cm, B, B, B);
    if (!cm->graph[i] && cm->q.pdl) { /* a graph of overlapping kernels refused: without the overlap */
        cm->q.pdl = false;
        cm->graph[i] = capture(m, cm, B, B, B);
    }
    if (!cm->graph[i]) cm->use_graph = false; /* capture unsupported here: plain launches from now on */
    cm->graph_generation[i] = cm->generation;
    return cm->graph[i];
}

/* LFM2C_CUDA_GRAPH_BUCKETS: rows T..B-1 of the batch table as pad tokens, each its own sequence
 * in a state of the backend's own (token 0 at position 0: its KV row and conv state written
 * there, read by no one else), with a row of logits that is not copied out. */
static int pad_table(lfm2c_model *m, cu_model *cm, int T, int n_seq, int n_out, int B, lfm2c_error *err) {
    const size_t rk = (cm->kv & CU_KV_K16 ? 2 : 4) * (size_t)cm->wd.kv_dim * (m->n_attn ? m->n_attn : 1);
    const size_t rv = (cm->kv & CU_KV_V16 ? 2 : 4) * (size_t)cm->wd.kv_dim * (m->n_attn ? m->n_attn : 1);
    const size_t rc = (size_t)m->n_conv * 2 * m->info.n_embd + 1;
    if (!cm->pad_conv) {
        cudaError_t e = cudaMalloc(&cm->pad_k, rk * CM_GRAPH_MAX);
        if (e == cudaSuccess) e = cudaMalloc(&cm->pad_v, rv * CM_GRAPH_MAX);
        if (e == cudaSuccess) e = cudaMalloc((void **)&cm->pad_conv, sizeof(float) * rc * CM_GRAPH_MAX);
        if (e == cudaSuccess) e = cudaMemset(cm->pad_conv, 0, sizeof(float) * rc * CM_GRAPH_MAX);
        if (e != cudaSuccess) return cuda_fail(err, e, "allocating the graphs' pad tokens");
    }
    cu_tok *tt = (cu_tok *)cm->s.host_table;
    int *seq_last = (int *)(tt + cm->s.cap), *out_tok = seq_last + cm->s.cap;
    for (int t = T, i = 0; t < B; t++, i++) {
        tt[t] = cu_tok{(char *)cm->pad_k + rk * i, (char *)cm->pad_v + rv * i, cm->pad_conv + rc * i, 0, 0, -1, 1};
        seq_last[n_seq + i] = t;
        out_tok[n_out + i] = t;
    }
    return 0;
}

static int cuda_forward(lfm2c_model *m, const fwd_token *toks, int T, lfm2c_error *err) {
    cu_model *cm = (cu_model *)m->backend_state;
    if (T <= 0) return 0;
    cudaSetDevice(cm->dev); /* the current device is per host thread (servers decode elsewhere) */
    const int room = cm->use_buckets && T <= CM_GRAPH_MAX ? cm_graph_bucket(T, T, T) : T; /* for the pads */
    if (scratch_reserve(cm, &m->info, room, err)) return -1;
    int n_out;
    int n_seq = build_table(cm, toks, T, &n_out);
    if (logits_reserve(cm, &m->info, room > n_out ? room : n_out, err)) return -1;
    const int n_smp = cm->smp ? cu_sampler_plan(cm->smp, toks, T, m->info.n_vocab, err) : 0;
    if (n_smp < 0) return -1;
    cudaError_t e = cudaSuccess;
    /* one token with logits, the decode step (or, with buckets, a decode-only step of a few
     * sessions): replay its graph (captured on first use) */
    const int B = !cm->use_graph || n_smp           ? 0
                  : cm->use_buckets                 ? cm_graph_bucket(T, n_seq, n_out)
                  : T == 1 && n_out == 1 ? 1 : 0;
    if (B > T && pad_table(m, cm, T, n_seq, n_out, B, err)) return -1;
    cudaGraphExec_t graph = B ? graph_for(m, cm, cm_graph_slot(B), B) : nullptr;
    if (cm->pass[0]) cudaEventRecord(cm->pass[0], cm->q.st);
    if (graph) e = cudaGraphLaunch(graph, cm->q.st);
    else cu_enqueue(m, cm, T, n_seq, n_out);
    if (cm->pass[1]) cudaEventRecord(cm->pass[1], cm->q.st);
    if (e == cudaSuccess) e = cudaGetLastError();
    /* waited for after an error too: kernels queued before a failed launch may still read the
     * pinned table and the scratch, which the next forward rewrites */
    cudaError_t es = cudaStreamSynchronize(cm->q.st);
    if (e == cudaSuccess) e = es;
    if (e != cudaSuccess) return cuda_fail(err, e, "forward");
    if (cu_blas_status(cm->blas, err)) return -1;
    float ms = 0;
    if (cm->pass[0] && cudaEventElapsedTime(&ms, cm->pass[0], cm->pass[1]) == cudaSuccess) {
        m->prof.device_seconds += 1e-3 * ms;
        m->prof.device_passes++;
    }
    cudaGetLastError();
    prof_collect(cm, T);
    const int V = m->info.n_vocab;
    if (n_smp && cu_sampler_finish(cm->smp, cm->s.logits, V, err)) return -1;
    for (int t = 0, i = 0; t < T; t++) {
        if (toks[t].out_row < 0) continue;
        if (!cu_sampler_took(cm->smp, i)) /* a row sampled on the device stays there */
            memcpy(toks[t].seq->logits + (size_t)toks[t].out_row * V, cm->s.host_logits + (size_t)i * V,
                   sizeof(float) * V);
        i++;
    }
    return 0;
}

/* ---- the backend table entry (backend.h) ---------------------------------------------------- */

extern "C" const lfm2c_backend backend_cuda = {
    "cuda", LFM2C_DEVICE_CUDA,
    cuda_model_init, cuda_model_free,
    cuda_session_init, cuda_session_free,
    cuda_session_reserve,
    nullptr,   /* kv_copy: sessions on the device cannot be copied (yet) */
    cuda_session_pull_conv, cuda_session_push_conv,
    cuda_forward,
    CU_UBATCH,
    /* caps: no LoRA, embeddings, session copy, conv trail, image rows; checkpoints between
     * forwards only; rows sampled on the device with LFM2C_CUDA_SAMPLE=1 (sample_step.cu); no
     * encoders (BACKEND_CAP_ENCODER) yet */
    BACKEND_CAP_SAMPLE,
    GGML_RUN_CUDA,   /* types: the rows of formats/ggml_types.h that have it */
    nullptr, /* encoder */
    nullptr, /* scratch_bytes: its buffers are on the device */
};
