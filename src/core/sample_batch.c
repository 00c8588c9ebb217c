/* sample_batch.c — decode_batch_sample (sample_batch.h): sets each session's dev_sample for the
 * forward (where the backend has BACKEND_CAP_SAMPLE), decodes, then samples on the host every
 * item the backend left (SMP_PENDING: the CPU backend, the CUDA one without LFM2C_CUDA_SAMPLE=1,
 * a sampler with a filter hook; SMP_HOST: more candidates than the device sorts) and moves the
 * device-sampled items' counters on; decode_batch_sample_items, the same for a batch of any items
 * (the scheduler's: prompt chunks beside sampled rows) that leaves the host's sampling to its
 * caller. */
#include "core/sample_batch.h"

#include "core/backend.h"
#include "core/model.h"
#include "core/sampler.h"
#include "core/session.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sample_logprobs(const float *l, int V, int k, smp_out *o) {
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) mx = l[i] > mx ? l[i] : mx;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)(l[i] - mx));
    const float lse = mx + (float)log(sum);
    o->logprob = l[o->token] - lse;
    if (k > SMP_MAX_TOP) k = SMP_MAX_TOP;
    o->n_top = 0;
    for (int i = 0; i < V; i++) { /* insertion into a small sorted list: (value desc, id asc) */
        if (o->n_top == k && (k == 0 || l[i] <= l[o->top_token[k - 1]])) continue;
        int j = o->n_top < k ? o->n_top++ : k - 1;
        while (j > 0 && l[o->top_token[j - 1]] < l[i]) {
            o->top_token[j] = o->top_token[j - 1];
            j--;
        }
        o->top_token[j] = i;
    }
    for (int j = 0; j < o->n_top; j++) o->top_logprob[j] = l[o->top_token[j]] - lse;
}

static void sample_host(lfm2c_session *s, sample_item *it) {
    const float *l = lfm2c_session_logits(s, 0);
    sampler_set_mask(it->smp, it->mask);
    int32_t t = lfm2c_sampler_sample(it->smp, l, s->tokens, s->n_past);
    sampler_set_mask(it->smp, NULL);
    memset(&it->out, 0, sizeof it->out);
    it->out.token = t >= 0 ? t : -1;
    it->out.status = t >= 0 ? SMP_OK : t == LFM2C_SAMPLE_NOT_FINITE ? SMP_NOT_FINITE : SMP_NONE;
    if (t >= 0 && it->n_logprobs >= 0) sample_logprobs(l, s->model->info.n_vocab, it->n_logprobs, &it->out);
}

/* Sets each sampled item's session to take its row on the device where the backend samples. */
static void offer_items(lfm2c_session **ss, sample_item *items, int n_items) {
    for (int i = 0; i < n_items; i++) {
        items[i].out.status = SMP_PENDING;
        ss[i]->dev_sample = items[i].smp && backend_has(ss[i]->model, BACKEND_CAP_SAMPLE) ? &items[i] : NULL;
    }
}

/* After the forward: the device-sampled items' counters moved on, their sessions without logits rows. */
static void settle_items(lfm2c_session **ss, sample_item *items, int n_items) {
    for (int i = 0; i < n_items; i++) {
        ss[i]->dev_sample = NULL;
        sample_item *it = &items[i];
        if (!it->smp || it->out.status == SMP_PENDING || it->out.status == SMP_HOST) continue;
        if (it->out.drew) sampler_drew(it->smp);
        /* its row stayed on the device: none here, and none for a checkpoint to keep */
        ss[i]->n_rows = ss[i]->rows_end = 0;
    }
}

int decode_batch_sample_items(lfm2c_session **ss, const int32_t *const *tokens, const float *const *rows, const int *n,
                              const int *modes, sample_item *items, int n_items, lfm2c_error *err) {
    if (n_items <= 0) return 0;
    if (!ss || !items || !n || !modes) {
        if (err) err->code = LFM2C_EINVAL, snprintf(err->msg, sizeof err->msg, "NULL array in a sampled batch");
        return -1;
    }
    for (int i = 0; i < n_items; i++)
        if (!ss[i] || (items[i].smp && (n[i] < 1 || modes[i] != LFM2C_LOGITS_LAST))) {
            if (err)
                err->code = LFM2C_EINVAL,
                snprintf(err->msg, sizeof err->msg, "item %d: a sampled item needs tokens and its last row only", i);
            return -1;
        }
    offer_items(ss, items, n_items);
    int rc = rows ? lfm2c_decode_batch_embd(ss, tokens, rows, n, modes, n_items, err)
                  : lfm2c_decode_batch(ss, tokens, n, modes, n_items, err);
    for (int i = 0; i < n_items && rc; i++) ss[i]->dev_sample = NULL;
    if (!rc) settle_items(ss, items, n_items);
    return rc;
}

int decode_batch_sample(lfm2c_session **ss, const int32_t *const *tokens, const int *n, sample_item *items, int n_items,
                        lfm2c_error *err) {
    if (n_items <= 0) return 0;
    if (!ss || !items || !n) {
        if (err) err->code = LFM2C_EINVAL, snprintf(err->msg, sizeof err->msg, "NULL array in a sampled batch");
        return -1;
    }
    int *modes = malloc(sizeof(int) * (size_t)n_items);
    if (!modes) {
        if (err) err->code = LFM2C_ENOMEM, snprintf(err->msg, sizeof err->msg, "out of memory");
        return -1;
    }
    for (int i = 0; i < n_items; i++) {
        modes[i] = LFM2C_LOGITS_LAST;
        if (n[i] < 1 || !items[i].smp || !ss[i]) {
            free(modes);
            if (err)
                err->code = LFM2C_EINVAL, snprintf(err->msg, sizeof err->msg, "item %d: no token or no sampler", i);
            return -1;
        }
    }
    int rc = decode_batch_sample_items(ss, tokens, NULL, n, modes, items, n_items, err);
    free(modes);
    if (rc) return rc;
    for (int i = 0; i < n_items; i++) /* what the backend left: sampled here */
        if (items[i].out.status == SMP_PENDING || items[i].out.status == SMP_HOST) sample_host(ss[i], &items[i]);
    return 0;
}
