/* backend_cuda.cu — the LFM2 forward pass on one CUDA device (spec section 2, same blocks as
 * forward.c). The GGUF's tensor data is uploaded once, as stored; a weight's device address is
 * its offset in the file. Activations stay float; every batch is one pass of kernels on one
 * stream, ending with the logits copied into the sessions' host buffers. Single-token decode
 * (the latency case) is captured once in a CUDA graph and replayed. */
extern "C" {
#include "core/model.h"
#include "core/session.h"
#include "core/forward.h"
}
#include "backend_cuda.h"
#include "cuda_kernels.h"
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

struct cu_scratch {
    int cap;            /* tokens */
    float *x, *a, *out, *big, *big2, *hid, *rope, *logits;
    float *router, *wsel, *G, *U, *D;
    uint32_t *xh, *xl; /* x as halves for the K-quant GEMMs (mm_args.xh): xq_cap / 2 words each */
    float *xs;         /* and its sums of 32: xq_cap / 32 */
    size_t xq_cap;     /* values */
    int *ints;          /* sel | col_src | inv | count | start | fill | tiles (3x) | n_tiles | done */
    void *table;        /* device copy of the batch table */
    void *host_table;   /* pinned */
    float *host_logits; /* pinned */
    const void **host_seq; /* [cap] batch structure, host side */
    int *host_pos, *host_prev;
    size_t table_bytes;
    int logits_rows;    /* rows of logits / host_logits (logits_reserve): the tokens with logits */
};

/* The data section of one GGUF file (a split model has one per part) and its device copy. */
struct cu_region {
    const uint8_t *host;         /* the section in the file's mapping */
    size_t bytes;
    uint8_t *dev;
};

struct cu_model {
    int dev;
    cu_q q; /* the stream, and whether its kernels may overlap (LFM2C_CUDA_PDL=0: never) */
    cu_region *reg;              /* the weights on the device: one region per file of the model */
    int n_reg;
    int kv_dim_max;
    int kv;                      /* CU_KV_*: the KV cache's element types (-ctk / -ctv: f16 or f32) */
    int big_w, hid_w;            /* widths of the scratch rows */
    int max_ff_exp;
    cu_scratch s;
    int generation;              /* bumped when scratch moves: graphs hold its pointers */
    cudaGraphExec_t graph;       /* single-token decode with logits */
    int graph_generation;
    bool use_graph;
    bool use_tc;                 /* GEMMs on the tensor cores (LFM2C_CUDA_TC=0: in float) */
    bool use_kq_mma;             /* K-quant GEMMs over the quants (LFM2C_CUDA_TC=wmma: dequantized) */
    bool use_x_lo;               /* their x as high + low halves (LFM2C_CUDA_TC=half: one half) */
    bool use_kq_reg;             /* Q4_K's GEMM with the weights straight into registers (LFM2C_CUDA_TC=mma: through shared memory) */
    bool use_glu;                /* a token's gate, up and SwiGLU in one launch (LFM2C_CUDA_GLU=0: three) */
    int use_fin;                 /* LFM2C_CUDA_FUSE: which of a decode step's add + norm, routing, conv run in the GEMV before (FIN_*) */
    cudaEvent_t pass[2];         /* each forward's start and end: the device time (lfm2c.h's profile) */
    struct cu_prof *prof;        /* LFM2C_CUDA_PROFILE=1: each stage's time */
    cu_sampler *smp;             /* LFM2C_CUDA_SAMPLE=1: decode_batch_sample's rows sampled here (sample_step.cu) */
};

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

static void prof_mark(cu_model *cm, const char *tag) {
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

/* The device address of a weight: its offset in the data section of the file (part) it lies in. */
static const uint8_t *dev_ptr(const cu_model *cm, const tensor *t) {
    if (!t->data) return nullptr;
    for (int i = 0; i < cm->n_reg; i++) {
        const cu_region *r = &cm->reg[i];
        if (t->data >= r->host && t->data < r->host + r->bytes) return r->dev + (t->data - r->host);
    }
    return nullptr;
}

/* ---- model ------------------------------------------------------------------------------- */

static int check_matrix(const tensor *t, lfm2c_error *err) {
    if (t->data && !cm_type_ok(t->type, t->ne[0]))
        return seterr(err, LFM2C_EUNSUPPORTED, "CUDA backend: tensor '%s' (type %u, %lld wide) is not supported",
                      t->name, t->type, (long long)t->ne[0]);
    return 0;
}

static int check_model(const lfm2c_model *m, lfm2c_error *err) {
    const lfm2c_model_info *in = &m->info;
    for (int t : {m->type_k, m->type_v})
        if (t != LFM2C_KV_F16 && t != LFM2C_KV_F32)
            return seterr(err, LFM2C_EUNSUPPORTED, "CUDA backend: the KV cache is f16 or f32 (-ctk / -ctv), not %s",
                          lfm2c_kv_type_name(t));
    if (in->head_dim > 256 || in->head_dim % 2)
        return seterr(err, LFM2C_EUNSUPPORTED, "CUDA backend: head dimension %d (at most 256)", in->head_dim);
    if (check_matrix(&m->tok_embd, err) || check_matrix(&m->output, err)) return -1;
    for (int l = 0; l < in->n_layer; l++) {
        const layer *L = &m->layers[l];
        const tensor *mats[] = {&L->conv_in, &L->conv_out, &L->wq, &L->wk, &L->wv, &L->wo, &L->ffn_gate,
                                &L->ffn_up, &L->ffn_down, &L->router, &L->gate_exps, &L->up_exps, &L->down_exps};
        for (size_t i = 0; i < sizeof mats / sizeof *mats; i++)
            if (check_matrix(mats[i], err)) return -1;
    }
    return 0;
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
enum { FIN_NORM = 1, FIN_ROUTE = 2, FIN_CONV = 4 };
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
    if (upload_weights(m, cm, err)) {
        free_weights(cm);
        cudaStreamDestroy(cm->q.st);
        free(cm);
        return -1;
    }
    const lfm2c_model_info *in = &m->info;
    int H = in->n_embd, nq = in->n_head * in->head_dim;
    cm->kv_dim_max = in->n_head_kv_max * in->head_dim;
    int w = 3 * H;
    if (nq > w) w = nq;
    for (int l = 0; l < in->n_layer; l++) {   /* widths from the tensors themselves */
        const layer *L = &m->layers[l];
        if (L->ffn_gate.data && L->ffn_gate.ne[1] > w) w = (int)L->ffn_gate.ne[1];
        if (L->gate_exps.data && L->gate_exps.ne[1] > cm->max_ff_exp) cm->max_ff_exp = (int)L->gate_exps.ne[1];
    }
    cm->big_w = w;
    cm->hid_w = nq > H ? nq : H;
    if (2 * cm->kv_dim_max > cm->hid_w) cm->hid_w = 2 * cm->kv_dim_max;
    const char *ge = getenv("LFM2C_CUDA_GRAPH");
    cm->use_graph = !(ge && !strcmp(ge, "0"));
    const char *te = getenv("LFM2C_CUDA_TC");
    cm->use_tc = !(te && !strcmp(te, "0"));
    cm->use_kq_mma = cm->use_tc && !(te && !strcmp(te, "wmma"));
    cm->use_x_lo = !(te && !strcmp(te, "half"));
    cm->use_kq_reg = cm->use_kq_mma && !(te && !strcmp(te, "mma")); /* faster: bench/GPU.md */
    const char *gl = getenv("LFM2C_CUDA_GLU");
    cm->use_glu = !(gl && !strcmp(gl, "0"));
    cm->use_fin = fin_parse(getenv("LFM2C_CUDA_FUSE")); /* all three slower on an H100: bench/GPU.md */
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
    float *fs[] = {s->x, s->a, s->out, s->big, s->big2, s->hid, s->rope, s->router, s->wsel, s->G, s->U, s->D};
    for (size_t i = 0; i < sizeof fs / sizeof *fs; i++) cudaFree(fs[i]);
    cudaFree(s->logits);
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
    if (cm->graph) cudaGraphExecDestroy(cm->graph);
    scratch_free(&cm->s);
    free_weights(cm);
    prof_free(cm);
    cu_sampler_free(cm->smp);
    for (int i = 0; i < 2; i++)
        if (cm->pass[i]) cudaEventDestroy(cm->pass[i]);
    cudaStreamDestroy(cm->q.st);
    free(cm);
    m->backend_state = nullptr;
}

/* int scratch layout for cap tokens */
struct int_layout { size_t sel, col_src, inv, count, start, fill, te, tc, tn, nt, done, total; };

static int_layout ints_for(const lfm2c_model_info *in, int cap) {
    int_layout L;
    size_t pairs = (size_t)cap * (in->n_expert_used ? in->n_expert_used : 1);
    size_t E = in->n_expert ? in->n_expert : 1, tiles = pairs + E;
    L.sel = 0;
    L.col_src = L.sel + pairs;
    L.inv = L.col_src + pairs;
    L.count = L.inv + pairs;
    L.start = L.count + E;
    L.fill = L.start + E + 1;
    L.te = L.fill + E;
    L.tc = L.te + tiles;
    L.tn = L.tc + tiles;
    L.nt = L.tn + tiles;
    L.done = L.nt + 1;
    L.total = L.done + 1;
    return L;
}

static size_t table_bytes_for(int cap) { return sizeof(cu_tok) * (size_t)cap + sizeof(int) * 2 * (size_t)cap; }

static int scratch_reserve(cu_model *cm, const lfm2c_model_info *in, int T, lfm2c_error *err) {
    cu_scratch *s = &cm->s;
    if (T <= s->cap) return 0;
    cudaStreamSynchronize(cm->q.st);
    scratch_free(s);
    int cap = 16;
    while (cap < T) cap *= 2;
    size_t H = in->n_embd, k = in->n_expert_used, E = in->n_expert, Fe = cm->max_ff_exp;
    size_t c = (size_t)cap;
    struct { float **p; size_t n; } want[] = {
        {&s->x, c * H}, {&s->a, c * H}, {&s->out, c * H}, {&s->big, c * cm->big_w}, {&s->big2, c * cm->big_w},
        {&s->hid, c * cm->hid_w}, {&s->rope, c * in->head_dim},
        {&s->router, c * (E ? E : 1)}, {&s->wsel, c * (k ? k : 1)}, {&s->G, c * k * Fe + 1},
        {&s->U, c * k * Fe + 1}, {&s->D, c * k * H + 1},
    };
    cudaError_t e = cudaSuccess;
    for (size_t i = 0; i < sizeof want / sizeof *want && e == cudaSuccess; i++)
        e = cudaMalloc((void **)want[i].p, sizeof(float) * want[i].n);
    /* the widest x row a product reads, per token: a row of big, hid or the token's k experts' hidden rows */
    size_t xw = H > (size_t)cm->big_w ? H : (size_t)cm->big_w;
    if ((size_t)cm->hid_w > xw) xw = cm->hid_w;
    if (k * Fe > xw) xw = k * Fe;
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
    const size_t rk = (cm->kv & CU_KV_K16 ? 2 : 4) * (size_t)cm->kv_dim_max;
    const size_t rv = (cm->kv & CU_KV_V16 ? 2 : 4) * (size_t)cm->kv_dim_max;
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
 * would give it one row tile, a block per 32 tokens, on a GPU of a hundred and more SMs. */
static void matmul_fin(cu_model *cm, const tensor *w, const float *x, int T, float *y, const cu_fin &fin) {
    mm_args a = dense_args(cm, w, x, T, y);
    a.fin = fin;
    cu_matmul(&cm->q, &a, T <= CU_GEMV_COLS || a.rows <= CU_GEMV_MAX_ROWS);
}

static void matmul(cu_model *cm, const tensor *w, const float *x, int T, float *y) {
    matmul_fin(cm, w, x, T, y, cu_fin{});
}

/* A decode step's add + norm after a product (x += its output, or the experts' combined; out =
 * rmsnorm(x) * w) in that product's last block: a one-token forward whose token's logits are
 * wanted (the output norm's row map is then that token). Otherwise done stays NULL and the
 * caller launches the add + norm itself. */
static cu_fin fin_for(lfm2c_model *m, cu_model *cm, bool fuse, const float *w, const float *wsel, const int *inv) {
    cu_fin f = {};
    if (!fuse) return f;
    f.done = cm->s.ints + ints_for(&m->info, cm->s.cap).done;
    f.x = cm->s.x;
    f.w = w;
    f.out = cm->s.a;
    f.H = m->info.n_embd;
    f.eps = m->info.norm_eps;
    f.wsel = wsel;
    f.inv = inv;
    f.k = m->info.n_expert_used;
    return f;
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

/* The experts of an MoE layer: their outputs into s->D (a row per pair, in expert order), their
 * weights into s->wsel; the next norm combines them (cu_moe_combine_add_rmsnorm). */
static void moe_ffn(lfm2c_model *m, cu_model *cm, const layer *L, int T, const float *f, const cu_fin &fin,
                    bool route_fuse) {
    const lfm2c_model_info *in = &m->info;
    const int E = in->n_expert, k = in->n_expert_used, H = in->n_embd, Fe = (int)L->gate_exps.ne[1];
    cu_scratch *s = &cm->s;
    int_layout il = ints_for(in, s->cap);
    int *I = s->ints;
    bool gemv = T <= CU_GEMV_COLS;
    /* one token: each of its pairs is a different expert, a tile of one column */
    int width = gemv ? (T == 1 ? 1 : CU_GEMV_COLS) : CU_GEMM_COLS, n_pairs = T * k;
    int max_tiles = (n_pairs + width - 1) / width + E;
    if (max_tiles > n_pairs) max_tiles = n_pairs;
    const float *bias = L->expert_bias.data ? (const float *)dev_ptr(cm, &L->expert_bias) : nullptr;
    if (route_fuse && cu_moe_route1_ok(T, width, E, k)) { /* the routing in the router product's last block */
        cu_fin rf = {};
        rf.done = s->ints + il.done;
        rf.route = {bias, E, k, I + il.sel, s->wsel, I + il.te, I + il.tc, I + il.tn, I + il.nt, I + il.col_src, I + il.inv};
        matmul_fin(cm, &L->router, f, T, s->router, rf);
        prof_mark(cm, "router+route+plan");
    } else {
        matmul(cm, &L->router, f, T, s->router);
        prof_mark(cm, "router");
        cu_moe_route(&cm->q, s->router, bias, T, E, k, width, I + il.sel, s->wsel, I + il.count, I + il.start,
                     I + il.fill, I + il.te, I + il.tc, I + il.tn, I + il.nt, I + il.col_src, I + il.inv);
        prof_mark(cm, "route+plan");
    }
    mm_args a = {};
    a.type = L->gate_exps.type;
    a.n = H;
    a.rows = Fe;
    a.row_bytes = L->gate_exps.row_bytes;
    a.expert_stride = L->gate_exps.row_bytes * (size_t)Fe;
    a.x = f;
    a.ldx = H;
    a.col_src = I + il.col_src;
    a.ldy = Fe;
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
    a.x_rows = T;
    a.w = dev_ptr(cm, &L->gate_exps);
    a.y = s->G;
    if (glu_ok(cm, &L->gate_exps, &L->up_exps) && cu_mm_one_column(&a, gemv)) {
        a.w_up = dev_ptr(cm, &L->up_exps); /* gate, up and SwiGLU in one launch */
        cu_matmul(&cm->q, &a, gemv);
        a.w_up = nullptr;
        prof_mark(cm, "experts gate+up+swiglu");
    } else {
        cu_matmul(&cm->q, &a, gemv);
        prof_mark(cm, "experts gate");
        a.type = L->up_exps.type;
        a.row_bytes = L->up_exps.row_bytes;
        a.expert_stride = L->up_exps.row_bytes * (size_t)Fe;
        a.w = dev_ptr(cm, &L->up_exps);
        a.y = s->U;
        cu_matmul(&cm->q, &a, gemv);
        prof_mark(cm, "experts up");
        cu_swiglu(&cm->q, s->G, s->U, (size_t)n_pairs * Fe);
        prof_mark(cm, "swiglu");
    }
    a.type = L->down_exps.type;
    a.n = Fe;
    a.rows = H;
    a.row_bytes = L->down_exps.row_bytes;
    a.expert_stride = L->down_exps.row_bytes * (size_t)H;
    a.w = dev_ptr(cm, &L->down_exps);
    a.x = s->G;
    a.ldx = Fe;
    a.col_src = nullptr;
    a.y = s->D;
    a.ldy = H;
    a.fin = fin;
    cu_matmul(&cm->q, &a, gemv);
    prof_mark(cm, "experts down");
}

/* Every kernel of one forward over a batch whose table is already in s->table. */
static void enqueue(lfm2c_model *m, cu_model *cm, int T, int n_seq, int n_out) {
    const lfm2c_model_info *in = &m->info;
    const int H = in->n_embd, hd = in->head_dim, nh = in->n_head;
    const float eps = in->norm_eps;
    cu_scratch *s = &cm->s;
    cu_q *cq = &cm->q;
    const cu_tok *toks = (const cu_tok *)s->table;
    const int *seq_last = (const int *)(toks + s->cap), *out_tok = seq_last + s->cap;
    prof_mark(cm, "start");
    if (s->table_bytes) cudaMemcpyAsync(s->table, s->host_table, s->table_bytes, cudaMemcpyHostToDevice, cq->st);
    /* the add + norm after a decode step's layer outputs: in the products' last blocks */
    const bool one = T == 1 && n_out == 1;
    const bool fuse = one && (cm->use_fin & FIN_NORM), route_fuse = one && (cm->use_fin & FIN_ROUTE),
               conv_fuse = one && (cm->use_fin & FIN_CONV);
    int *inv = s->ints + ints_for(in, s->cap).inv;
    if (fuse || route_fuse || conv_fuse) cudaMemsetAsync(s->ints + ints_for(in, s->cap).done, 0, sizeof(int), cq->st);   /* after a failure too */
    cu_q_other(cq);
    prof_mark(cm, "table upload");
    cu_embed(cq, dev_ptr(cm, &m->tok_embd), m->tok_embd.type, m->tok_embd.row_bytes, H, toks, T, s->x);
    cu_rope_table(cq, toks, T, hd, in->rope_theta, s->rope);
    cu_add_rmsnorm(cq, s->x, nullptr, (const float *)dev_ptr(cm, &m->layers[0].attn_norm), s->a, T, H, eps, nullptr);
    prof_mark(cm, "embed+rope+norm");
    for (int l = 0; l < in->n_layer; l++) {
        const layer *L = &m->layers[l];
        const float *ffn_norm = (const float *)dev_ptr(cm, &L->ffn_norm);
        if (L->is_attn) {
            const int nkv = L->n_head_kv, kvd = nkv * hd;
            float *q = s->big, *k = s->hid, *v = s->hid + (size_t)T * kvd;
            matmul(cm, &L->wq, s->a, T, q);
            matmul(cm, &L->wk, s->a, T, k);
            matmul(cm, &L->wv, s->a, T, v);
            prof_mark(cm, "qkv proj");
            cu_qk_norm_rope_store(cq, q, k, v, (const float *)dev_ptr(cm, &L->q_norm),
                                  (const float *)dev_ptr(cm, &L->k_norm), s->rope, toks, T, nh, nkv, hd,
                                  L->attn_index, cm->kv_dim_max, eps, cm->kv);
            prof_mark(cm, "qk norm+rope");
            cu_attention(cq, q, toks, T, nh, nkv, hd, L->attn_index, cm->kv_dim_max, s->big2, cm->kv);
            prof_mark(cm, "attention");
            matmul_fin(cm, &L->wo, s->big2, T, s->out, fin_for(m, cm, fuse, ffn_norm, nullptr, nullptr));
            prof_mark(cm, "o proj");
        } else {
            const float *conv_w = (const float *)dev_ptr(cm, &L->conv_w);
            if (conv_fuse) { /* the conv in the in-projection's last block */
                cu_fin cf = fin_for(m, cm, true, nullptr, nullptr, nullptr);
                cf.conv_o = s->hid;
                cf.conv_w = conv_w;
                cf.toks = toks;
                cf.conv_index = L->conv_index;
                matmul_fin(cm, &L->conv_in, s->a, T, s->big, cf);
                prof_mark(cm, "conv in proj+conv");
            } else {
                matmul(cm, &L->conv_in, s->a, T, s->big);
                prof_mark(cm, "conv in proj");
                cu_conv(cq, s->big, conv_w, toks, T, H, L->conv_index, s->hid,
                        n_seq == T);   /* a token per sequence: each token's thread also updates the state */
                if (n_seq != T) cu_conv_state(cq, s->big, toks, seq_last, n_seq, H, L->conv_index);
                prof_mark(cm, "conv");
            }
            matmul_fin(cm, &L->conv_out, s->hid, T, s->out, fin_for(m, cm, fuse, ffn_norm, nullptr, nullptr));
            prof_mark(cm, "conv out proj");
        }
        if (!fuse) {
            cu_add_rmsnorm(cq, s->x, s->out, ffn_norm, s->a, T, H, eps, nullptr);
            prof_mark(cm, "add+norm");
        }
        /* the residual add and the next norm (the output norm after the last layer: only the rows
         * whose logits are wanted); after an MoE layer the experts' outputs are combined in it */
        const bool last = l + 1 == in->n_layer;
        const float *nw = (const float *)dev_ptr(cm, last ? &m->out_norm : &m->layers[l + 1].attn_norm);
        if (L->is_moe) {
            moe_ffn(m, cm, L, T, s->a, fin_for(m, cm, fuse, nw, s->wsel, inv), route_fuse);
        } else {
            matmul_glu(cm, &L->ffn_gate, &L->ffn_up, s->a, T, s->big, s->big2);
            prof_mark(cm, "ffn gate+up+swiglu");
            matmul_fin(cm, &L->ffn_down, s->big, T, s->out, fin_for(m, cm, fuse, nw, nullptr, nullptr));
            prof_mark(cm, "ffn down");
        }
        if (last && !n_out) return;
        if (fuse) continue;
        const int rows = last ? n_out : T;
        const int *map = last ? out_tok : nullptr;
        if (L->is_moe) {
            cu_moe_combine_add_rmsnorm(cq, s->x, s->D, s->wsel, inv, in->n_expert_used, nw, s->a, rows, H, eps, map);
            prof_mark(cm, "combine+add+norm");
        } else {
            cu_add_rmsnorm(cq, s->x, s->out, nw, s->a, rows, H, eps, map);
            prof_mark(cm, "add+norm");
        }
    }
    matmul(cm, &m->output, s->a, n_out, s->logits);
    prof_mark(cm, "output proj");
    if (cu_sampler_active(cm->smp)) /* rows planned to be sampled here (sample_step.cu) */
        cu_sampler_enqueue(cm->smp, cq, s->logits, s->host_logits, n_out, in->n_vocab);
    else
        cudaMemcpyAsync(s->host_logits, s->logits, sizeof(float) * (size_t)n_out * in->n_vocab,
                        cudaMemcpyDeviceToHost, cq->st);
    cu_q_other(cq);
    prof_mark(cm, "logits download");
}

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
        enqueue(m, cm, T, n_seq, n_out);
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

static int cuda_forward(lfm2c_model *m, const fwd_token *toks, int T, lfm2c_error *err) {
    cu_model *cm = (cu_model *)m->backend_state;
    if (T <= 0) return 0;
    cudaSetDevice(cm->dev);   /* the current device is per host thread (servers decode elsewhere) */
    if (scratch_reserve(cm, &m->info, T, err)) return -1;
    int n_out;
    int n_seq = build_table(cm, toks, T, &n_out);
    if (logits_reserve(cm, &m->info, n_out, err)) return -1;
    const int n_smp = cm->smp ? cu_sampler_plan(cm->smp, toks, T, m->info.n_vocab, err) : 0;
    if (n_smp < 0) return -1;
    cudaError_t e = cudaSuccess;
    /* one token with logits: the decode step; replay its graph (captured on first use) */
    bool graph = cm->use_graph && T == 1 && n_out == 1 && !n_smp;
    if (graph && (!cm->graph || cm->graph_generation != cm->generation)) {
        if (cm->graph) cudaGraphExecDestroy(cm->graph);
        cm->graph = capture(m, cm, T, n_seq, n_out);
        if (!cm->graph && cm->q.pdl) {   /* a graph of overlapping kernels refused: without the overlap */
            cm->q.pdl = false;
            cm->graph = capture(m, cm, T, n_seq, n_out);
        }
        if (!cm->graph) {   /* capture unsupported here: plain launches from now on */
            cm->use_graph = false;
            graph = false;
        }
        cm->graph_generation = cm->generation;
    }
    if (cm->pass[0]) cudaEventRecord(cm->pass[0], cm->q.st);
    if (graph) e = cudaGraphLaunch(cm->graph, cm->q.st);
    else enqueue(m, cm, T, n_seq, n_out);
    if (cm->pass[1]) cudaEventRecord(cm->pass[1], cm->q.st);
    if (e == cudaSuccess) e = cudaGetLastError();
    /* waited for after an error too: kernels queued before a failed launch may still read the
     * pinned table and the scratch, which the next forward rewrites */
    cudaError_t es = cudaStreamSynchronize(cm->q.st);
    if (e == cudaSuccess) e = es;
    if (e != cudaSuccess) return cuda_fail(err, e, "forward");
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
     * forwards only; rows sampled on the device with LFM2C_CUDA_SAMPLE=1 (sample_step.cu) */
    BACKEND_CAP_SAMPLE,
};
