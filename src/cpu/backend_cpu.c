/* backend_cpu.c — the CPU backend's entry in the backend table (backend.h): the forward pass of
 * forward.c over the kernel tables (src/cpu), its scratch buffers, and the KV cache in host
 * memory in the layouts of formats/kv_layout.h (K in blocks of KV_KB positions, V in rows), one pair of
 * arrays per attention layer, grown with the sequence (from 2 MB on in 2 MB pages). The conv
 * state is s->conv itself. When the weights are a private copy (gguf.h: huge pages), matrices
 * are rearranged in place into the layout the kernel table multiplies fastest
 * (kernel_ops.packed_type; same bytes, same results bit for bit), in parallel on the pool. */
#include "core/backend.h"
#include "cpu/backend_cpu.h"
#include "base/error.h"
#include "base/hugemem.h"
#include "core/forward.h"
#include "cpu/replay.h"
#include "cpu/scratch.h"
#include "core/session.h"
#include "cpu/kernels.h"
#include "formats/ggml_types.h"
#include "formats/gguf.h"
#include "base/os.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#endif

/* ---- weights in the kernel table's layout ------------------------------------------------ */

enum { PACK_MAX = 1024 };
typedef struct pack_job {
    tensor *t[PACK_MAX];         /* packed into x16_type(t->type) */
    int64_t first[PACK_MAX + 1]; /* first group of each tensor; first[n] = all groups */
    int n;
    size_t max_group; /* bytes of the largest group */
    atomic_int failed;
} pack_job;

/* Thread ith packs its share of the groups (each group is independent: rows in, group out). */
static void pack_worker(void *arg, int ith, int nth) {
    pack_job *j = arg;
    const int64_t g0 = j->first[j->n] * ith / nth, g1 = j->first[j->n] * (ith + 1) / nth;
    uint8_t *tmp = g0 < g1 ? malloc(j->max_group) : NULL;
    if (g0 < g1 && !tmp) {
        atomic_store(&j->failed, 1);
        return;
    }
    for (int i = 0; i < j->n; i++) {
        const tensor *t = j->t[i];
        const size_t gb = X16_ROWS * t->row_bytes;
        for (int64_t g = g0 > j->first[i] ? g0 : j->first[i]; g < g1 && g < j->first[i + 1]; g++) {
            uint8_t *p = (uint8_t *)t->data + (size_t)(g - j->first[i]) * gb;
            memcpy(tmp, p, gb);
            x16_pack(t->type, tmp, t->row_bytes, X16_ROWS, p);
        }
    }
    free(tmp);
}

static void pack_add(pack_job *j, const lfm2c_model *m, tensor *t) {
    if (!t->data || j->n == PACK_MAX) return;
    const uint32_t to = cpu_model_of(m)->kern->packed_type(t->type, t->ne[1]);
    if (to == t->type || to != x16_type(t->type)) return; /* X16 is the one layout we pack */
    j->t[j->n] = t;
    j->first[j->n + 1] = j->first[j->n] + t->ne[1] * t->ne[2] / X16_ROWS;
    if (X16_ROWS * t->row_bytes > j->max_group) j->max_group = X16_ROWS * t->row_bytes;
    j->n++;
}

/* Rearranges the matrices in place (the file's copy is private); nothing when it is mapped. */
static int pack_weights(lfm2c_model *m, lfm2c_error *err) {
    if (!cpu_model_of(m)->kern->packed_type || !m->gguf->copied) return 0;
    pack_job *j = calloc(1, sizeof *j);
    if (!j) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return -1;
    }
    pack_add(j, m, &m->output);
    for (int l = 0; l < m->info.n_layer; l++) {
        layer *L = &m->layers[l];
        tensor *ts[] = {&L->conv_in,  &L->conv_out, &L->wq,       &L->wk,        &L->wv,      &L->wo,
                        &L->ffn_gate, &L->ffn_up,   &L->ffn_down, &L->gate_exps, &L->up_exps, &L->down_exps};
        for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) pack_add(j, m, ts[i]);
    }
    int rc = 0;
    if (j->n && gguf_set_writable(m->gguf, true) == 0) {
        threadpool_run(m->pool, pack_worker, j);
        gguf_set_writable(m->gguf, false);
        if (atomic_load(&j->failed)) { /* some groups may be packed already: the model is unusable */
            lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory while arranging the weights");
            rc = -1;
        } else {
            for (int i = 0; i < j->n; i++) j->t[i]->type = x16_type(j->t[i]->type);
            if (m->tok_embd.data == m->output.data) m->tok_embd.type = m->output.type; /* tied: one matrix */
            m->info.weights_packed = j->n;
        }
    }
    free(j);
    return rc;
}

static void cpu_model_free(lfm2c_model *m) {
    cpu_model *cm = cpu_model_of(m);
    if (cm) scratch_free(cm->scratch);
    replay_free(m);
    free(cm);
    m->backend_state = NULL;
}

static int cpu_model_init(lfm2c_model *m, const lfm2c_model_params *p, lfm2c_error *err) {
    cpu_model *cm = calloc(1, sizeof *cm);
    m->backend_state = cm;
    if (cm) {
        cm->reference = p->reference;
        cm->kern = p->reference ? kernels_scalar() : kernels_get();
        cm->scratch = forward_scratch_new();
    }
    if (!cm || !cm->scratch) {
        cpu_model_free(m);
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return -1;
    }
    if (pack_weights(m, err) == 0) return 0;
    cpu_model_free(m); /* a failed init leaves nothing to free (backend.h) */
    return -1;
}

/* ---- the KV arrays ------------------------------------------------------------------------ */

/* An array of KV_MAP_MIN_DEFAULT bytes (one 2 MB page) or more is huge_alloc's memory
 * (base/hugemem.h): in 2 MB pages (transparent huge pages in madvise or always mode): a decode
 * step at depth reads all of every layer's cache, each head's K blocks and V slices strided,
 * and on 4 KB pages most blocks cost TLB misses, which also leave the attention's prefetch
 * behind (docs/HARDWARE.md "What the code's choices measured"). Smaller arrays stay with malloc,
 * so that a short session is not made resident 2 MB at a time; a mapped array's slack is at
 * most its last, partly touched page. The session keeps each array's capacity in bytes
 * (cpu_session.cap). */
static size_t kv_map_min = KV_MAP_MIN_DEFAULT;

void backend_cpu_kv_map_min(size_t bytes) { kv_map_min = bytes; }

static bool kv_mapped(size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    return bytes >= kv_map_min;
#else
    (void)bytes;
    return false;
#endif
}

static void kv_array_free(uint8_t *p, size_t cap) {
    if (kv_mapped(cap)) huge_free(p, huge_len(cap));
    else free(p);
}

/* Array p of cap bytes grown to n, its first `keep` bytes kept (what the cached positions use:
 * a mapping's untouched pages are not copied into residence); NULL when out of memory (p
 * untouched). */
static uint8_t *kv_array_grow(uint8_t *p, size_t cap, size_t keep, size_t n) {
    if (!kv_mapped(n)) return realloc(p, n);
    size_t len;
    uint8_t *a = huge_alloc(n, &len);
    if (!a) return NULL;
    if (p) {
        memcpy(a, p, keep < cap ? keep : cap);
        kv_array_free(p, cap);
    }
    return a;
}

static int cpu_session_init(lfm2c_session *s, lfm2c_error *err) {
    const int n = s->model->n_attn;
    cpu_session *cs = calloc(1, sizeof *cs);
    s->backend_state = cs;
    if (!cs) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return -1;
    }
    cs->k = calloc((size_t)n + 1, sizeof(uint8_t *));
    cs->v = calloc((size_t)n + 1, sizeof(uint8_t *));
    cs->cap = calloc(2 * (size_t)n + 1, sizeof(size_t));
    const lfm2c_model_info *in = &s->model->info;
    cs->k_block = (size_t)in->n_head_kv_max * kv_k_head_block_bytes(s->type_k, in->head_dim);
    cs->v_row = kv_v_row_bytes(s->type_v, in->n_head_kv_max * in->head_dim);
    if (!cs->k || !cs->v || !cs->cap) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return -1;
    }
    return 0;
}

static void cpu_session_free(lfm2c_session *s) {
    cpu_session *cs = cpu_session_of(s);
    if (!cs) return;
    for (int i = 0; cs->k && cs->v && cs->cap && i < s->model->n_attn; i++) {
        kv_array_free(cs->k[i], cs->cap[2 * i]);
        kv_array_free(cs->v[i], cs->cap[2 * i + 1]);
    }
    free(cs->k);
    free(cs->v);
    free(cs->cap);
    free(cs);
    s->backend_state = NULL;
}

static int cpu_kv_reserve(lfm2c_session *s, int cap, lfm2c_error *err) {
    const size_t blocks = ((size_t)cap + KV_KB - 1) / KV_KB; /* whole K blocks; V rows to match */
    cpu_session *cs = cpu_session_of(s);
    const size_t n[2] = {blocks * cs->k_block, blocks * KV_KB * cs->v_row};
    const size_t used[2] = {((size_t)s->n_past + KV_KB - 1) / KV_KB * cs->k_block, (size_t)s->n_past * cs->v_row};
    size_t *c = cs->cap;
    for (int i = 0; i < s->model->n_attn; i++)
        for (int kv = 0; kv < 2; kv++) {
            uint8_t **a = kv ? &cs->v[i] : &cs->k[i];
            size_t *have = &c[2 * i + kv];
            if (n[kv] <= *have) continue;
            uint8_t *p = kv_array_grow(*a, *have, used[kv], n[kv]);
            if (!p) {
                lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory for the KV cache");
                return -1;
            }
            *a = p;
            *have = n[kv];
        }
    return 0;
}

static void cpu_kv_copy(lfm2c_session *dst, const lfm2c_session *src, int n) {
    /* same model, so the same cache types and layouts: K in whole 16-position blocks, V rows */
    const cpu_session *d = cpu_session_of(dst), *s = cpu_session_of(src);
    size_t kb = ((size_t)n + KV_KB - 1) / KV_KB * s->k_block, vb = (size_t)n * s->v_row;
    for (int i = 0; n && i < src->model->n_attn; i++) {
        memcpy(d->k[i], s->k[i], kb);
        memcpy(d->v[i], s->v[i], vb);
    }
}

const lfm2c_backend backend_cpu = {
    .name = "cpu",
    .device = LFM2C_DEVICE_CPU,
    .model_init = cpu_model_init,
    .model_free = cpu_model_free,
    .session_init = cpu_session_init,
    .session_free = cpu_session_free,
    .kv_reserve = cpu_kv_reserve,
    .kv_copy = cpu_kv_copy,
    .conv_pull = NULL,
    .conv_push = NULL,
    .forward = forward_cpu,
    .caps = BACKEND_CAP_LORA | BACKEND_CAP_EMBEDDINGS | BACKEND_CAP_KV_COPY | BACKEND_CAP_CONV_TRAIL |
            BACKEND_CAP_CONV_SNAP | BACKEND_CAP_HOST_WEIGHTS | BACKEND_CAP_EMBD_INPUT | BACKEND_CAP_ENCODER |
            BACKEND_CAP_MATMUL_HOOK,
    .types = GGML_RUN_CPU,
    .encoder = &cpu_encoder_ops,
    .scratch_bytes = forward_scratch_bytes,
};
