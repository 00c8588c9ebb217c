/* checkpoint.c — a session's conv checkpoints: the conv state after a position, so that a
 * sequence can resume there (prefix reuse, lfm2c_session_sync) without reading its tokens again.
 *
 * The attention layers' KV entries stay valid when a sequence is cut; the conv layers' state is
 * only the last two conv inputs, so it cannot be rewound and must be remembered. A checkpoint is
 * taken (1) by lfm2c_session_checkpoint between forwards (prompt and answer ends; pinned), and
 * (2) inside a forward, every ckpt_every positions and after each end-of-turn token, where the
 * backend copies the state into fwd_token.snap (BACKEND_CAP_CONV_SNAP, backend.h). A session holds at most
 * ckpt_max; past that the one whose removal leaves the smallest gap relative to its distance from
 * the newest goes, so the spacing grows with the distance (dense where prompts usually part,
 * sparse far back), pinned ones last. The newest ckpt_logits explicit checkpoints keep the logits
 * row of their last token, so that a prompt read before can be answered without a forward. */
#include "core/session.h"
#include "core/backend.h"
#include "base/error.h"

#include <stdlib.h>
#include <string.h>

size_t ckpt_conv_bytes(const lfm2c_session *s) {
    return sizeof(float) * (size_t)s->model->n_conv * 2 * s->model->info.n_embd;
}

static size_t logits_bytes(const lfm2c_session *s) { return sizeof(float) * (size_t)s->model->info.n_vocab; }

int ckpt_init(lfm2c_session *s) {
    s->ckpt_max = CKPT_MAX_DEFAULT;
    s->ckpt_every = CKPT_EVERY_DEFAULT;
    s->ckpt_logits = CKPT_LOGITS_DEFAULT;
    s->ckpt = calloc((size_t)s->ckpt_max, sizeof *s->ckpt);
    return s->ckpt ? 0 : -1;
}

static void ckpt_release(conv_checkpoint *c) {
    free(c->conv);
    free(c->logits);
    c->conv = c->logits = NULL;
}

static void ckpt_remove(lfm2c_session *s, int i) {
    ckpt_release(&s->ckpt[i]);
    memmove(&s->ckpt[i], &s->ckpt[i + 1], sizeof *s->ckpt * (size_t)(s->n_ckpt - i - 1));
    s->n_ckpt--;
}

void ckpt_free_all(lfm2c_session *s) {
    while (s->n_ckpt) ckpt_remove(s, s->n_ckpt - 1);
}

void ckpt_drop_after(lfm2c_session *s, int pos) {
    while (s->n_ckpt && s->ckpt[s->n_ckpt - 1].pos > pos) ckpt_remove(s, s->n_ckpt - 1);
}

const conv_checkpoint *ckpt_at_or_before(const lfm2c_session *s, int pos) {
    for (int i = s->n_ckpt - 1; i >= 0; i--)
        if (s->ckpt[i].pos <= pos) return &s->ckpt[i];
    return NULL;
}

/* The checkpoint to drop so that one at new_pos fits: the smallest gap its removal leaves,
 * relative to its distance from new_pos (pinned and logits-bearing ones count four times each). */
static int thin_victim(const lfm2c_session *s, int new_pos) {
    int victim = -1;
    double best = 0;
    const int unit = s->ckpt_every > 0 ? s->ckpt_every : 1;
    for (int i = 0; i < s->n_ckpt; i++) {
        const conv_checkpoint *c = &s->ckpt[i];
        int prev = i ? s->ckpt[i - 1].pos : 0, next = i + 1 < s->n_ckpt ? s->ckpt[i + 1].pos : new_pos;
        double score = (double)(next - prev) / (double)(new_pos - c->pos + unit);
        if (c->pinned) score *= 4;
        if (c->logits) score *= 4;
        if (victim < 0 || score < best) victim = i, best = score;
    }
    return victim;
}

/* A new checkpoint record at pos (after every existing one), with a conv buffer: the one thinned
 * out to make room, or a new one; NULL when there is no memory (a missing checkpoint only costs
 * re-computation later). A thinned checkpoint may be pending: a token of the batch being built
 * still points at its buffer, and writes it before the later token this one is for (the forward
 * runs a sequence's tokens in order), so the buffer ends up right. */
static conv_checkpoint *ckpt_append(lfm2c_session *s, int pos, bool pinned, bool pending) {
    if (s->ckpt_max < 1) return NULL;
    float *conv = NULL;
    if (s->n_ckpt == s->ckpt_max) {
        int v = thin_victim(s, pos);
        conv = s->ckpt[v].conv;
        s->ckpt[v].conv = NULL;
        ckpt_remove(s, v);
    } else if (!(conv = malloc(ckpt_conv_bytes(s) + 1))) {
        return NULL;
    }
    conv_checkpoint *c = &s->ckpt[s->n_ckpt++];
    *c = (conv_checkpoint){pos, pinned, pending, conv, NULL};
    return c;
}

float *ckpt_snap(lfm2c_session *s, int pos, bool end_of_turn) {
    if (!backend_has(s->model, BACKEND_CAP_CONV_SNAP) || s->ckpt_max < 1) return NULL;
    bool every = s->ckpt_every > 0 && pos % s->ckpt_every == 0;
    if (!every && !end_of_turn) return NULL;
    if (s->n_ckpt && s->ckpt[s->n_ckpt - 1].pos >= pos) return NULL; /* not after the newest */
    conv_checkpoint *c = ckpt_append(s, pos, end_of_turn, true);
    return c ? c->conv : NULL;
}

void ckpt_forward_done(lfm2c_session *s, bool ok) {
    for (int i = s->n_ckpt - 1; i >= 0; i--)
        if (s->ckpt[i].pending) {
            if (ok) s->ckpt[i].pending = false;
            else ckpt_remove(s, i); /* its buffer was not written */
        }
}

/* Keeps logits on the newest ckpt_logits checkpoints only. */
static void logits_bound(lfm2c_session *s) {
    int kept = 0;
    for (int i = s->n_ckpt - 1; i >= 0; i--)
        if (s->ckpt[i].logits && ++kept > s->ckpt_logits) {
            free(s->ckpt[i].logits);
            s->ckpt[i].logits = NULL;
        }
}

/* The logits row of position n_past - 1, when the session's last decode produced it. */
static const float *last_row(const lfm2c_session *s) {
    if (s->embeddings || s->n_rows < 1 || s->rows_end != s->n_past) return NULL;
    return s->logits + (size_t)(s->n_rows - 1) * s->model->info.n_vocab;
}

void lfm2c_session_checkpoint(lfm2c_session *s) {
    if (!s) return;
    if (s->model->backend->conv_pull) s->model->backend->conv_pull(s); /* the state may be the device's */
    conv_checkpoint *c = s->n_ckpt && s->ckpt[s->n_ckpt - 1].pos == s->n_past ? &s->ckpt[s->n_ckpt - 1] : NULL;
    if (c) c->pinned = true;
    else if (!(c = ckpt_append(s, s->n_past, true, false))) return;
    memcpy(c->conv, s->conv, ckpt_conv_bytes(s));
    const float *row = s->ckpt_logits > 0 ? last_row(s) : NULL;
    if (row && (c->logits || (c->logits = malloc(logits_bytes(s) + 1)))) memcpy(c->logits, row, logits_bytes(s));
    else if (!row && c->logits) free(c->logits), c->logits = NULL;
    logits_bound(s);
}

int ckpt_copy(lfm2c_session *dst, const lfm2c_session *src) {
    ckpt_free_all(dst);
    int from = src->n_ckpt > dst->ckpt_max ? src->n_ckpt - dst->ckpt_max : 0; /* the newest that fit */
    for (int i = from; i < src->n_ckpt; i++) {
        const conv_checkpoint *c = &src->ckpt[i];
        if (c->pending) continue;
        conv_checkpoint *d = ckpt_append(dst, c->pos, c->pinned, false);
        if (!d) return -1;
        memcpy(d->conv, c->conv, ckpt_conv_bytes(src));
        if (c->logits && dst->ckpt_logits > 0 && (d->logits = malloc(logits_bytes(src) + 1)))
            memcpy(d->logits, c->logits, logits_bytes(src));
    }
    logits_bound(dst);
    return 0;
}

int lfm2c_session_set_checkpoints(lfm2c_session *s, int every, int max, int max_logits, lfm2c_error *err) {
    if (!s || every < 0 || max < 0 || max_logits < 0 || max > 1 << 16 || every > 1 << 22) {
        lfm2c_set_error(err, LFM2C_EINVAL, "bad checkpoint policy (every %d, max %d, logits %d)", every, max,
                        max_logits);
        return -1;
    }
    while (s->n_ckpt > max) ckpt_remove(s, thin_victim(s, s->n_past));
    conv_checkpoint *c = realloc(s->ckpt, sizeof *c * (size_t)(max ? max : 1));
    if (!c) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory for checkpoints");
        return -1;
    }
    s->ckpt = c;
    s->ckpt_max = max;
    s->ckpt_every = every;
    s->ckpt_logits = max_logits;
    logits_bound(s);
    return 0;
}

void lfm2c_session_checkpoint_usage(const lfm2c_session *s, int *count, size_t *bytes) {
    size_t b = 0;
    for (int i = 0; s && i < s->n_ckpt; i++) b += ckpt_conv_bytes(s) + (s->ckpt[i].logits ? logits_bytes(s) : 0);
    if (count) *count = s ? s->n_ckpt : 0;
    if (bytes) *bytes = b;
}
