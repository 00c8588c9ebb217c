/* session.c — a sequence's state and the decode entry points of the public API.
 * The KV cache grows with the sequence (no up-front n_ctx allocation); the conv state is two
 * columns per conv layer, small enough to checkpoint at every turn boundary. Where the KV cache
 * lives, and how a batch is run, is the model's backend's (backend.h). */
#include "core/session.h"
#include "core/backend.h"
#include "base/error.h"
#include "core/forward.h"
#include "formats/kv_layout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static int fail(lfm2c_error *err, int code, const char *msg) {
    if (err) {
        err->code = code;
        snprintf(err->msg, sizeof err->msg, "%s", msg);
    }
    return -1;
}

int lfm2c_kv_type_from_name(const char *name) {
    if (!name) return -1;
    if (!strcmp(name, "f16")) return LFM2C_KV_F16;
    if (!strcmp(name, "f32")) return LFM2C_KV_F32;
    if (!strcmp(name, "q8_0")) return LFM2C_KV_Q8_0;
    return -1;
}

const char *lfm2c_kv_type_name(int type) { return kv_type_name(type); }

int kv_types_check(const lfm2c_model *m, lfm2c_error *err) {
    const int types[2] = {m->type_k, m->type_v};
    for (int i = 0; i < 2; i++) {
        if (types[i] < LFM2C_KV_F16 || types[i] > LFM2C_KV_Q8_0) {
            lfm2c_set_error(err, LFM2C_EINVAL, "unknown KV cache type %d for %s", types[i], i ? "V" : "K");
            return -1;
        }
        if (types[i] == LFM2C_KV_Q8_0 && m->info.head_dim % 32) {
            lfm2c_set_error(err, LFM2C_EINVAL,
                            "a q8_0 KV cache needs a head dimension that is a multiple of 32 (this model's is %d)",
                            m->info.head_dim);
            return -1;
        }
    }
    return 0;
}

size_t lfm2c_kv_cache_bytes(const lfm2c_model *m, int n_tokens) {
    if (!m) return 0;
    const size_t per_layer = kv_layer_bytes(m->type_k, m->type_v, m->info.n_head_kv_max, m->info.head_dim, n_tokens);
    return per_layer * (size_t)m->n_attn;
}

lfm2c_session *lfm2c_session_new(lfm2c_model *m, int n_ctx, lfm2c_error *err) {
    if (!m) return fail(err, LFM2C_EINVAL, "NULL model"), NULL;
    const lfm2c_model_info *in = &m->info;
    if (n_ctx <= 0) n_ctx = in->n_ctx_train < 4096 ? in->n_ctx_train : 4096;
    if (n_ctx > (1 << 22)) {
        fail(err, LFM2C_EINVAL, "context size too large");
        return NULL;
    }
    lfm2c_session *s = calloc(1, sizeof *s);
    if (!s) {
        fail(err, LFM2C_ENOMEM, "out of memory");
        return NULL;
    }
    s->model = m;
    s->n_ctx = n_ctx;
    s->kv_dim = in->n_head_kv_max * in->head_dim;
    s->type_k = m->type_k;
    s->type_v = m->type_v;
    s->tokens = malloc(sizeof(int32_t) * (size_t)n_ctx);
    s->conv = calloc((size_t)m->n_conv * 2 * in->n_embd + 1, sizeof(float));
    if (!s->tokens || !s->conv || ckpt_init(s)) {
        lfm2c_session_free(s);
        fail(err, LFM2C_ENOMEM, "out of memory");
        return NULL;
    }
    if (m->backend->session_init(s, err)) {
        lfm2c_session_free(s);
        return NULL;
    }
    return s;
}

void lfm2c_session_free(lfm2c_session *s) {
    if (!s) return;
    s->model->backend->session_free(s);
    if (s->ckpt) ckpt_free_all(s);
    free(s->ckpt);
    free(s->trail);
    free(s->trail_conv);
    free(s->conv);
    free(s->tokens);
    free(s->logits);
    free(s);
}

int session_reserve(lfm2c_session *s, int n, lfm2c_error *err) {
    if (n <= s->kv_cap) return 0;
    int cap = s->kv_cap ? s->kv_cap : 256;
    while (cap < n) cap *= 2;
    if (cap > s->n_ctx) cap = s->n_ctx;
    if (s->model->backend->kv_reserve(s, cap, err)) return -1;
    s->kv_cap = cap;
    return 0;
}

int session_reserve_rows(lfm2c_session *s, int rows, lfm2c_error *err) {
    if (rows <= s->rows_cap) return 0;
    float *l = realloc(s->logits, sizeof(float) * (size_t)rows * s->model->info.n_vocab);
    if (!l) return fail(err, LFM2C_ENOMEM, "out of memory for logits");
    s->logits = l;
    s->rows_cap = rows;
    return 0;
}

int lfm2c_session_n_ctx(const lfm2c_session *s) { return s ? s->n_ctx : 0; }
int lfm2c_session_n_past(const lfm2c_session *s) { return s ? s->n_past : 0; }
const int32_t *lfm2c_session_tokens(const lfm2c_session *s) { return s ? s->tokens : NULL; }
int lfm2c_session_n_logits_rows(const lfm2c_session *s) { return s ? s->n_rows : 0; }

const float *lfm2c_session_logits(const lfm2c_session *s, int row) {
    if (!s || s->embeddings || row < 0 || row >= s->n_rows) return NULL;
    return s->logits + (size_t)row * s->model->info.n_vocab;
}

int lfm2c_session_set_embeddings(lfm2c_session *s, bool on, lfm2c_error *err) {
    if (!s) return fail(err, LFM2C_EINVAL, "NULL session");
    if (on && backend_require(s->model, BACKEND_CAP_EMBEDDINGS, "embeddings", err)) return -1;
    if (on && s->model->info.n_embd > s->model->info.n_vocab) /* a row holds n_vocab floats */
        return fail(err, LFM2C_EUNSUPPORTED, "embeddings need a vocabulary at least as wide as the hidden state");
    if (s->embeddings != on) s->n_rows = 0; /* the last rows were of the other kind */
    s->embeddings = on;
    return 0;
}

const float *lfm2c_session_embedding(const lfm2c_session *s, int row) {
    if (!s || !s->embeddings || row < 0 || row >= s->n_rows) return NULL;
    return s->logits + (size_t)row * s->model->info.n_vocab;
}

/* Checks one item of a batch before anything is changed: ids below 0 are embedding rows
 * (lfm2c_decode_batch_embd), allowed where the item has rows and the backend takes them. */
static int check_item(lfm2c_session *s, const int32_t *tokens, const float *embd, int n, lfm2c_error *err) {
    if (n < 0) return fail(err, LFM2C_EINVAL, "negative token count");
    if (s->n_past + n > s->n_ctx) {
        if (err) {
            err->code = LFM2C_ECONTEXT;
            snprintf(err->msg, sizeof err->msg, "%d tokens do not fit in the context (%d used of %d)", n, s->n_past,
                     s->n_ctx);
        }
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 && embd) {
            if (backend_require(s->model, BACKEND_CAP_EMBD_INPUT, "embedding rows (images)", err)) return -1;
            continue;
        }
        if (tokens[i] < 0 || tokens[i] >= s->model->info.n_vocab) {
            if (err) {
                err->code = LFM2C_EINVAL;
                snprintf(err->msg, sizeof err->msg, "token id %d out of range (vocabulary of %d)", tokens[i],
                         s->model->info.n_vocab);
            }
            return -1;
        }
    }
    return 0;
}

static int decode_items(lfm2c_session **ss, const int32_t *const *tokens, const float *const *embd, const int *n,
                        const int *logits_mode, int n_items, lfm2c_error *err);

int lfm2c_decode_batch(lfm2c_session **ss, const int32_t *const *tokens, const int *n, const int *logits_mode,
                       int n_items, lfm2c_error *err) {
    return decode_items(ss, tokens, NULL, n, logits_mode, n_items, err);
}

int lfm2c_decode_batch_embd(lfm2c_session **ss, const int32_t *const *tokens, const float *const *embd, const int *n,
                            const int *logits_mode, int n_items, lfm2c_error *err) {
    if (!embd && n_items > 0) return fail(err, LFM2C_EINVAL, "NULL array in a batch");
    return decode_items(ss, tokens, embd, n, logits_mode, n_items, err);
}

int lfm2c_session_decode_embd(lfm2c_session *s, const int32_t *tokens, const float *embd, int n, int logits_mode,
                              lfm2c_error *err) {
    return decode_items(&s, &tokens, &embd, &n, &logits_mode, 1, err);
}

static int decode_items(lfm2c_session **ss, const int32_t *const *tokens, const float *const *embd, const int *n,
                        const int *logits_mode, int n_items, lfm2c_error *err) {
    if (n_items <= 0) return 0;
    if (!ss || !tokens || !n || !logits_mode) return fail(err, LFM2C_EINVAL, "NULL array in a batch");
    for (int i = 0; i < n_items; i++) {
        if (!ss[i]) return fail(err, LFM2C_EINVAL, "NULL session in a batch");
        if (!tokens[i] && n[i] > 0) return fail(err, LFM2C_EINVAL, "NULL tokens in a batch");
    }
    lfm2c_model *m = ss[0]->model;
    /* every item is checked before any session is changed */
    for (int i = 0; i < n_items; i++) {
        if (ss[i]->model != m) return fail(err, LFM2C_EINVAL, "sessions of different models in one batch");
        for (int j = 0; j < i; j++)
            if (ss[j] == ss[i]) return fail(err, LFM2C_EINVAL, "a session appears twice in one batch");
        if (check_item(ss[i], tokens[i], embd ? embd[i] : NULL, n[i], err)) return -1;
    }
    int total = 0;
    for (int i = 0; i < n_items; i++) {
        int rows = logits_mode[i] == LFM2C_LOGITS_ALL ? n[i] : logits_mode[i] == LFM2C_LOGITS_LAST && n[i] > 0;
        if (session_reserve(ss[i], ss[i]->n_past + n[i], err) || session_reserve_rows(ss[i], rows, err)) return -1;
        ss[i]->n_rows = rows;
        ss[i]->rows_end = rows ? ss[i]->n_past + n[i] : 0;
        total += n[i];
    }
    const int ub = m->backend->ubatch > 0 ? m->backend->ubatch : SESSION_UBATCH;
    fwd_token *toks = malloc(sizeof(fwd_token) * (size_t)(total < ub ? total : ub) + 1);
    if (!toks) return fail(err, LFM2C_ENOMEM, "out of memory");
    /* walk the items in order, cutting the token stream into ubatches */
    int item = 0, off = 0, rc = 0;
    const float *row = embd ? embd[0] : NULL; /* the item's next embedding row */
    const size_t H = (size_t)m->info.n_embd;
    while (item < n_items && rc == 0) {
        int nt = 0;
        while (nt < ub && item < n_items) {
            lfm2c_session *s = ss[item];
            if (off == n[item]) {
                item++;
                off = 0;
                row = embd && item < n_items ? embd[item] : NULL;
                continue;
            }
            int out = -1;
            if (logits_mode[item] == LFM2C_LOGITS_ALL) out = off;
            else if (logits_mode[item] == LFM2C_LOGITS_LAST && off == n[item] - 1) out = 0;
            int32_t tok = tokens[item][off];
            float *snap = ckpt_snap(s, s->n_past + 1, tok >= 0 && lfm2c_token_is_eog(m, tok));
            const float *e = tok < 0 ? row : NULL;
            if (e) row += H;
            toks[nt++] = (fwd_token){s, tok, s->n_past, out, snap, e};
            s->tokens[s->n_past++] = tok;
            off++;
        }
        if (nt && m->pool_shared) threadpool_turn_begin(m->pool, m); /* models sharing the pool take turns */
        if (nt) rc = m->backend->forward(m, toks, nt, err);
        if (nt && m->pool_shared) threadpool_turn_end(m->pool, m);
        for (int t = 0; t < nt; t++)
            if (t + 1 == nt || toks[t + 1].seq != toks[t].seq) ckpt_forward_done(toks[t].seq, rc == 0);
    }
    free(toks);
    return rc;
}

int lfm2c_session_decode(lfm2c_session *s, const int32_t *tokens, int n, int logits_mode, lfm2c_error *err) {
    return lfm2c_decode_batch(&s, &tokens, &n, &logits_mode, 1, err);
}

/* The conv state where the backend keeps it <-> the host copy s->conv (backend.h). */
static void conv_pull(lfm2c_session *s) {
    if (s->model->backend->conv_pull) s->model->backend->conv_pull(s);
}

static void conv_push(lfm2c_session *s) {
    if (s->model->backend->conv_push) s->model->backend->conv_push(s);
}

void lfm2c_session_reset(lfm2c_session *s) {
    if (!s) return;
    s->trail_cap = 0;
    s->trail_ok = false;
    s->n_past = 0;
    s->n_rows = 0;
    memset(s->conv, 0, sizeof(float) * (size_t)s->model->n_conv * 2 * s->model->info.n_embd);
    conv_push(s);
    ckpt_free_all(s);
}

int lfm2c_session_copy(lfm2c_session *dst, const lfm2c_session *src, lfm2c_error *err) {
    if (!dst || !src) return fail(err, LFM2C_EINVAL, "NULL session");
    if (dst == src) return 0;
    if (dst->model != src->model) return fail(err, LFM2C_EINVAL, "the sessions belong to different models");
    if (backend_require(src->model, BACKEND_CAP_KV_COPY, "copying a session", err)) return -1;
    if (src->n_past > dst->n_ctx) return fail(err, LFM2C_EINVAL, "the sequence does not fit the destination's context");
    if (session_reserve(dst, src->n_past, err) || session_reserve_rows(dst, src->n_rows, err)) return -1;
    src->model->backend->kv_copy(dst, src, src->n_past);
    size_t conv = sizeof(float) * (size_t)src->model->n_conv * 2 * src->model->info.n_embd;
    memcpy(dst->conv, src->conv, conv);
    memcpy(dst->tokens, src->tokens, sizeof(int32_t) * (size_t)src->n_past);
    if (src->n_rows) memcpy(dst->logits, src->logits, sizeof(float) * (size_t)src->n_rows * src->model->info.n_vocab);
    dst->n_past = src->n_past;
    ckpt_copy(dst, src); /* a checkpoint that cannot be copied only costs re-computation */
    dst->n_rows = src->n_rows;
    dst->rows_end = src->rows_end;
    dst->embeddings = src->embeddings;
    memcpy(dst->lora, src->lora, sizeof dst->lora); /* the copy continues with the same weights */
    memcpy(dst->lora_scale, src->lora_scale, sizeof dst->lora_scale);
    dst->n_lora = src->n_lora;
    dst->trail_cap = 0;
    dst->trail_ok = false;
    return 0;
}

/* Feeds the history's tokens [from, from + n) again (s->n_past is from). An image's positions
 * cannot be: their rows are the caller's (the caller resets and feeds the prompt again). */
static int replay(lfm2c_session *s, int from, int n, lfm2c_error *err) {
    for (int i = from; i < from + n; i++)
        if (s->tokens[i] < 0) {
            s->n_past = 0; /* no half state: the sequence is empty */
            lfm2c_session_reset(s);
            return fail(err, LFM2C_EUNSUPPORTED,
                        "cannot go back into an image's positions without a checkpoint there (feed the prompt again)");
        }
    int32_t *again = malloc(sizeof(int32_t) * (size_t)n);
    if (!again) return fail(err, LFM2C_ENOMEM, "out of memory");
    memcpy(again, s->tokens + from, sizeof(int32_t) * (size_t)n);
    int rc = lfm2c_session_decode(s, again, n, LFM2C_LOGITS_NONE, err);
    free(again);
    return rc;
}

int lfm2c_session_truncate(lfm2c_session *s, int n_keep, lfm2c_error *err) {
    if (!s) return fail(err, LFM2C_EINVAL, "NULL session");
    if (n_keep < 0 || n_keep > s->n_past) return fail(err, LFM2C_EINVAL, "truncate beyond the sequence");
    if (n_keep == s->n_past) return 0;
    if (n_keep < s->trail_pos) s->trail_cap = 0, s->trail_ok = false; /* the trail's start is being dropped */
    /* the newest checkpoint at or before n_keep; later ones describe tokens being dropped */
    const conv_checkpoint *c = ckpt_at_or_before(s, n_keep);
    const int from = c ? c->pos : 0;
    if (c) memcpy(s->conv, c->conv, ckpt_conv_bytes(s));
    else memset(s->conv, 0, ckpt_conv_bytes(s));
    conv_push(s);
    ckpt_drop_after(s, n_keep);
    /* the KV entries before n_keep are still valid; re-feed [from, n_keep) to rebuild the conv
     * state (attention layers just rewrite identical K/V values) */
    s->n_past = from;
    if (n_keep > from) { return replay(s, from, n_keep - from, err); }
    return 0;
}

/* ---- exact rollback (speculative decoding) ------------------------------------------------ */

static size_t conv_floats(const lfm2c_session *s) { return (size_t)s->model->n_conv * 2 * s->model->info.n_embd; }

int lfm2c_session_mark(lfm2c_session *s, int n_ahead, lfm2c_error *err) {
    if (!s) return fail(err, LFM2C_EINVAL, "NULL session");
    if (n_ahead < 0) return fail(err, LFM2C_EINVAL, "bad number of positions to mark");
    if (n_ahead > s->n_ctx - s->n_past) n_ahead = s->n_ctx - s->n_past; /* no more can be fed */
    s->trail_cap = 0;
    s->trail_ok = false;
    if (!s->trail_conv && !(s->trail_conv = malloc(sizeof(float) * conv_floats(s) + 1)))
        return fail(err, LFM2C_ENOMEM, "out of memory for the conv trail");
    conv_pull(s); /* the current state may be the backend's */
    memcpy(s->trail_conv, s->conv, sizeof(float) * conv_floats(s));
    s->trail_pos = s->n_past;
    s->trail_ok = true;
    if (!backend_has(s->model, BACKEND_CAP_CONV_TRAIL) || n_ahead == 0) return 0; /* no columns recorded */
    const int H = s->model->info.n_embd;
    if (n_ahead > s->trail_alloc) {
        float *t = realloc(s->trail, sizeof(float) * ((size_t)n_ahead * s->model->n_conv * H + 1));
        if (!t) return fail(err, LFM2C_ENOMEM, "out of memory for the conv trail");
        s->trail = t;
        s->trail_alloc = n_ahead;
    }
    s->trail_cap = n_ahead;
    return 0;
}

/* u of position p of conv layer l (p in [trail_pos - 2, n_past), p >= 0 or zeros) */
static const float *trail_u(const lfm2c_session *s, int l, int p) {
    const int H = s->model->info.n_embd;
    if (p >= s->trail_pos) return s->trail + ((size_t)(p - s->trail_pos) * s->model->n_conv + l) * H;
    return s->trail_conv + ((size_t)l * 2 + (p == s->trail_pos - 1)) * H; /* [oldest, newest] */
}

int lfm2c_session_rollback(lfm2c_session *s, int n_keep, lfm2c_error *err) {
    if (!s) return fail(err, LFM2C_EINVAL, "NULL session");
    if (n_keep < 0 || n_keep > s->n_past) return fail(err, LFM2C_EINVAL, "rollback beyond the sequence");
    if (n_keep == s->n_past) return 0;
    bool exact = s->trail_cap > 0 && n_keep >= s->trail_pos && n_keep - s->trail_pos <= s->trail_cap;
    if (!exact && !(s->trail_ok && n_keep >= s->trail_pos)) return lfm2c_session_truncate(s, n_keep, err);
    if (!exact) { /* no columns for n_keep: the state at the mark, then the kept tokens after it */
        int from = s->trail_pos, n = n_keep - from;
        memcpy(s->conv, s->trail_conv, sizeof(float) * conv_floats(s));
        conv_push(s);
        ckpt_drop_after(s, n_keep);
        s->n_past = from;
        s->n_rows = 0;
        if (n == 0) return 0;
        return replay(s, from, n, err);
    }
    /* the state after n_keep tokens: the u of positions n_keep - 2 and n_keep - 1 */
    const int H = s->model->info.n_embd;
    for (int l = 0; l < s->model->n_conv; l++) {
        float *st = s->conv + (size_t)l * 2 * H;
        memcpy(st, trail_u(s, l, n_keep - 2), sizeof(float) * (size_t)H);
        memcpy(st + H, trail_u(s, l, n_keep - 1), sizeof(float) * (size_t)H);
    }
    ckpt_drop_after(s, n_keep);
    s->n_past = n_keep; /* KV entries past n_keep are rewritten before anything reads them */
    s->n_rows = 0;
    return 0;
}

/* ---- prompt-prefix reuse: one rule for the CLI chat and the server's slots ------------------ */

/* The common prefix of the session's history and tokens[0..n), an image's rows (a run of ids
 * below 0: 31 bits of a SHA-256 each) whole or not at all: a prefix that ends inside such a run,
 * in either sequence, ends before it, so that an image shares state only with one whose every row
 * id is the same, never with one crafted to match its first rows. */
static int common_prefix(const lfm2c_session *s, const int32_t *tokens, int n) {
    int common = 0, limit = s->n_past < n ? s->n_past : n;
    while (common < limit && s->tokens[common] == tokens[common]) common++;
    const bool cut = common > 0 && tokens[common - 1] < 0 &&
                     ((common < n && tokens[common] < 0) || (common < s->n_past && s->tokens[common] < 0));
    if (cut)
        while (common > 0 && tokens[common - 1] < 0) common--;
    return common;
}

/* Where a sync to tokens[0..n) resumes: the checkpoint holding the logits of the whole of
 * tokens (when the session keeps logits and holds all n), else the newest checkpoint within
 * the common prefix short of the last token (whose logits must come out). NULL: none. */
static const conv_checkpoint *resume_point(const lfm2c_session *s, const int32_t *tokens, int n) {
    const int common = common_prefix(s, tokens, n);
    const conv_checkpoint *c = ckpt_at_or_before(s, common);
    if (c && c->pos == n && c->logits && !s->embeddings && n > 0) return c;
    c = ckpt_at_or_before(s, common < n ? common : n - 1);
    return c && c->pos > 0 ? c : NULL;
}

int lfm2c_session_reusable(const lfm2c_session *s, const int32_t *tokens, int n) {
    if (!s || (!tokens && n > 0)) return 0;
    const conv_checkpoint *c = resume_point(s, tokens, n);
    return c ? c->pos : 0;
}

/* The session resumes at checkpoint c (its KV entries before c->pos are still valid). */
static int restore(lfm2c_session *s, const conv_checkpoint *c, lfm2c_error *err) {
    const int pos = c->pos;
    memcpy(s->conv, c->conv, ckpt_conv_bytes(s));
    conv_push(s);
    s->trail_cap = 0;
    s->trail_ok = false;
    s->n_rows = 0;
    if (c->logits) { /* the whole prompt is held: its last logits come back without a forward */
        if (session_reserve_rows(s, 1, err)) return -1;
        memcpy(s->logits, c->logits, sizeof(float) * (size_t)s->model->info.n_vocab);
        s->n_rows = 1;
        s->rows_end = pos;
    }
    s->n_past = pos;
    ckpt_drop_after(s, pos);
    return 0;
}

int lfm2c_session_sync(lfm2c_session *s, const int32_t *tokens, int n, int *n_reused, lfm2c_error *err) {
    if (n_reused) *n_reused = 0;
    if (!s) return fail(err, LFM2C_EINVAL, "NULL session");
    if (!tokens && n > 0) return fail(err, LFM2C_EINVAL, "NULL tokens");
    const conv_checkpoint *c = resume_point(s, tokens, n);
    if (!c) {
        lfm2c_session_reset(s);
        return 0;
    }
    conv_checkpoint at = *c;
    if (at.pos != n) at.logits = NULL; /* resuming short of the end: the caller feeds the rest */
    if (restore(s, &at, err)) {
        lfm2c_session_reset(s); /* a half-restored state is no use: start over */
        return -1;
    }
    if (n_reused) *n_reused = at.pos;
    return 0;
}
