/* backend_cpu.c — the CPU backend's entry in the backend table (backend.h): the forward pass of
 * forward.c over the kernel tables (src/cpu), its scratch buffers, and the KV cache in host
 * memory in the layouts of kernels.h (K in blocks of KV_KB positions, V in rows), one pair of
 * arrays per attention layer, grown with the sequence. The conv state is s->conv itself. */
#include "core/backend.h"
#include "core/error.h"
#include "core/forward.h"
#include "core/scratch.h"
#include "core/session.h"
#include "cpu/kernels.h"

#include <stdlib.h>
#include <string.h>

static int cpu_model_init(lfm2c_model *m, lfm2c_error *err) {
    m->scratch = forward_scratch_new();
    if (!m->scratch) { lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"); return -1; }
    return 0;
}

static void cpu_model_free(lfm2c_model *m) {
    scratch_free(m->scratch);
    m->scratch = NULL;
}

static int cpu_session_init(lfm2c_session *s, lfm2c_error *err) {
    s->k = calloc((size_t)s->model->n_attn + 1, sizeof(uint8_t *));
    s->v = calloc((size_t)s->model->n_attn + 1, sizeof(uint8_t *));
    if (!s->k || !s->v) { lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"); return -1; }
    return 0;
}

static void cpu_session_free(lfm2c_session *s) {
    for (int i = 0; s->k && s->v && i < s->model->n_attn; i++) { free(s->k[i]); free(s->v[i]); }
    free(s->k);
    free(s->v);
    s->k = s->v = NULL;
}

static int cpu_kv_reserve(lfm2c_session *s, int cap, lfm2c_error *err) {
    const size_t blocks = ((size_t)cap + KV_KB - 1) / KV_KB;   /* whole K blocks; V rows to match */
    for (int i = 0; i < s->model->n_attn; i++) {
        uint8_t *k = realloc(s->k[i], blocks * s->k_block);
        if (k) s->k[i] = k;
        uint8_t *v = realloc(s->v[i], blocks * KV_KB * s->v_row);
        if (v) s->v[i] = v;
        if (!k || !v) { lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory for the KV cache"); return -1; }
    }
    return 0;
}

static void cpu_kv_copy(lfm2c_session *dst, const lfm2c_session *src, int n) {
    /* same model, so the same cache types and layouts: K in whole 16-position blocks, V rows */
    size_t kb = ((size_t)n + KV_KB - 1) / KV_KB * src->k_block, vb = (size_t)n * src->v_row;
    for (int i = 0; n && i < src->model->n_attn; i++) {
        memcpy(dst->k[i], src->k[i], kb);
        memcpy(dst->v[i], src->v[i], vb);
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
};
