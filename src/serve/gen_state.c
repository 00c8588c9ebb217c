/* gen_state.c — one generating sequence's thinking-and-constraint state machine (gen_state.h):
 * the vocabulary it reads (the open tag's pieces, the close tag, the markers, the ends), the
 * mask, the transitions a taken token makes (a block opened or closed, the constraints armed after
 * it, a tool call begun, a value complete), the thinking budget, and the stop strings. */
#include "serve/gen_state.h"
#include "chat/toolcall.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N_OPEN_TAG ((int)sizeof LFM2C_THINK_OPEN - 1)

/* ---- the vocabulary ------------------------------------------------------------------------ */

/* Every token whose text (special tokens by their text) is a piece of the open tag. */
static bool open_toks_scan(gen_vocab *v) {
    static const char open[] = LFM2C_THINK_OPEN;
    for (int pass = 0; pass < 2; pass++) { /* count, then fill */
        int k = 0;
        for (int32_t i = 0; i < v->n_vocab; i++) {
            char b[16];
            int n = v->bytes(v->user, i, true, b, sizeof b);
            if (n < 1 || n > N_OPEN_TAG) continue;
            for (int pos = 0; pos + n <= N_OPEN_TAG; pos++)
                if (!memcmp(open + pos, b, (size_t)n)) {
                    if (pass) v->open_toks[k] = (struct gen_open_tok){i, (uint8_t)pos, (uint8_t)n};
                    k++;
                }
        }
        if (!pass) {
            if (!(v->open_toks = calloc((size_t)k + 1, sizeof *v->open_toks))) return false;
            v->n_open_toks = k;
        }
    }
    return true;
}

gen_vocab *gen_vocab_new(const gen_vocab *src, grammar_vocab *gvocab) {
    gen_vocab *v = calloc(1, sizeof *v);
    if (!v || !gvocab) goto fail;
    *v = (gen_vocab){.n_vocab = src->n_vocab,
                     .gvocab = gvocab,
                     .tool_start = src->tool_start,
                     .tool_end = src->tool_end,
                     .bytes = src->bytes,
                     .is_eog = src->is_eog,
                     .user = src->user};
    gvocab = NULL;
    v->eog = calloc((size_t)v->n_vocab + 1, sizeof *v->eog);
    v->close_toks = calloc((size_t)src->n_close + 1, sizeof *v->close_toks);
    if (!v->eog || !v->close_toks) goto fail;
    for (int32_t i = 0; i < v->n_vocab; i++)
        if (v->is_eog(v->user, i)) v->eog[v->n_eog++] = i;
    if (src->n_close) memcpy(v->close_toks, src->close_toks, (size_t)src->n_close * sizeof *v->close_toks);
    v->n_close = src->n_close;
    if (!open_toks_scan(v)) goto fail;
    return v;
fail:
    grammar_vocab_free(gvocab);
    gen_vocab_free(v);
    return NULL;
}

static int model_bytes(const void *user, int32_t t, bool special, char *buf, int cap) {
    return lfm2c_token_to_bytes(user, t, special, buf, cap);
}

static bool model_eog(const void *user, int32_t t) { return lfm2c_token_is_eog(user, t); }

static int32_t single_token(const lfm2c_model *m, const char *text) {
    lfm2c_error err = {0};
    int n = 0;
    int32_t *t = lfm2c_tokenize(m, text, strlen(text), false, true, &n, &err);
    int32_t id = t && n == 1 ? t[0] : -1;
    free(t);
    return id;
}

gen_vocab *gen_vocab_of_model(const lfm2c_model *model) {
    lfm2c_error err = {0};
    gen_vocab src = {.n_vocab = lfm2c_vocab_size(model), .bytes = model_bytes, .is_eog = model_eog, .user = model};
    src.tool_start = single_token(model, TOOLCALL_START);
    src.tool_end = single_token(model, TOOLCALL_END);
    src.close_toks =
        lfm2c_tokenize(model, LFM2C_THINK_CLOSE, strlen(LFM2C_THINK_CLOSE), false, true, &src.n_close, &err);
    if (!src.close_toks) return NULL;
    gen_vocab *v = gen_vocab_new(&src, grammar_vocab_of_model(model));
    free(src.close_toks);
    return v;
}

void gen_vocab_free(gen_vocab *v) {
    if (!v) return;
    grammar_vocab_free(v->gvocab);
    free(v->eog);
    free(v->close_toks);
    free(v->open_toks);
    free(v);
}

/* ---- the state ------------------------------------------------------------------------------ */

static bool force_push(gen_state *st, int32_t t) {
    if (st->n_forced == st->cap_forced) {
        int cap = st->cap_forced ? 2 * st->cap_forced : 32;
        int32_t *f = realloc(st->forced, (size_t)cap * sizeof *f);
        if (!f) return false;
        st->forced = f;
        st->cap_forced = cap;
    }
    st->forced[st->n_forced++] = t;
    return true;
}

static bool is_eog(const gen_vocab *v, int32_t t) {
    for (int i = 0; i < v->n_eog; i++)
        if (v->eog[i] == t) return true;
    return false;
}

/* Under tool_choice "auto" with a JSON answer format, the answer's first token may open a tool
 * call instead of the JSON value. */
static bool call_may_open(const gen_state *st) {
    const gen_rules *r = &st->r;
    return st->g && !st->g_tool && st->g == r->json_grammar && r->tools_auto && r->tool_grammar &&
           st->v->tool_start >= 0 && st->n_tokens == st->answer_from;
}

/* A forced call (tool_choice required / named) that has not begun: its first token is the marker. */
static bool call_forced_next(const gen_state *st) {
    return st->r.force_tool_call && st->r.tool_grammar && st->v->tool_start >= 0 && !st->g;
}

bool gen_constrained(const gen_state *st) { return st->g || st->r.json_grammar || call_forced_next(st); }

static void grammar_start(gen_state *st, const grammar *g, bool tool) {
    st->g = g;
    st->g_tool = tool;
    st->g_stuck = false;
    grammar_state_init(g, &st->gst);
}

/* The answer's constraints begin: the JSON grammar, or (unless the output may still open a
 * thinking block, where the mask offers the marker instead) the forced call's marker. */
static void answer_begin(gen_state *st, bool may_open) {
    st->answer_from = st->n_tokens;
    if (st->r.json_grammar) grammar_start(st, st->r.json_grammar, false);
    if (!may_open && call_forced_next(st)) force_push(st, st->v->tool_start);
}

/* The thinking budget: once the block holds think_budget tokens, its close tag is forced. */
static void budget_check(gen_state *st) {
    if (st->r.think_budget < 0 || st->think_closing || st->think.phase != LFM2C_THINK_IN ||
        st->n_think < st->r.think_budget)
        return;
    st->think_closing = true;
    for (int i = 0; i < st->v->n_close; i++) force_push(st, st->v->close_toks[i]);
}

void gen_start(gen_state *st, const gen_vocab *v, const gen_rules *r) {
    st->v = v;
    st->r = *r;
    st->g = NULL;
    st->g_stuck = false;
    st->n_forced = st->i_forced = 0;
    st->open_pos = 0;
    st->think_closing = false;
    st->n_tokens = st->n_think = st->answer_from = 0;
    st->in_block = st->tag = false;
    lfm2c_think_init(&st->think, r->think_opened);
    bool constrained = r->json_grammar || (r->force_tool_call && r->tool_grammar && v->tool_start >= 0);
    st->th = !constrained                         ? GEN_TH_FREE
             : r->think_opened                    ? GEN_TH_WAIT
             : r->think_allowed && v->n_open_toks ? GEN_TH_MAY_OPEN
                                                  : GEN_TH_FREE;
    if (st->th != GEN_TH_WAIT) answer_begin(st, st->th == GEN_TH_MAY_OPEN);
    budget_check(st);
}

void gen_clear(gen_state *st) { st->n_forced = st->i_forced = 0; }

void gen_free(gen_state *st) {
    free(st->forced);
    st->forced = NULL;
    st->n_forced = st->i_forced = st->cap_forced = 0;
}

bool gen_forced(gen_state *st, int32_t *t) {
    if (st->i_forced >= st->n_forced) return false;
    *t = st->forced[st->i_forced++];
    return true;
}

/* ---- the mask ------------------------------------------------------------------------------- */

/* Marks the tokens that continue the open tag from byte pos; returns how many were newly marked. */
static int mark_open(const gen_vocab *v, int pos, bool *allowed) {
    int n = 0;
    for (int i = 0; i < v->n_open_toks; i++)
        if (v->open_toks[i].pos == pos && !allowed[v->open_toks[i].id]) {
            allowed[v->open_toks[i].id] = true;
            n++;
        }
    return n;
}

/* The bytes of the open tag token t continues from pos (0: it does not). */
static int open_len(const gen_vocab *v, int pos, int32_t t) {
    for (int i = 0; i < v->n_open_toks; i++)
        if (v->open_toks[i].pos == pos && v->open_toks[i].id == t) return v->open_toks[i].len;
    return 0;
}

bool gen_mask(gen_state *st, bool *al, int *n) {
    const gen_vocab *v = st->v;
    if (st->th == GEN_TH_MAY_OPEN && st->open_pos > 0) { /* the open tag was begun: only its rest */
        memset(al, 0, (size_t)v->n_vocab * sizeof *al);
        *n = mark_open(v, st->open_pos, al);
        return true;
    }
    if (st->g) {
        const int32_t *ends = st->g_tool ? NULL : v->eog;
        *n = grammar_allowed(st->g, &st->gst, v->gvocab, ends, st->g_tool ? 0 : v->n_eog, al);
        if (call_may_open(st)) { /* tools under "auto" with a JSON answer: a call or the JSON */
            if (!al[v->tool_start]) (*n)++;
            al[v->tool_start] = true;
        }
    } else if (st->th == GEN_TH_MAY_OPEN && call_forced_next(st)) { /* the call, or a block first */
        memset(al, 0, (size_t)v->n_vocab * sizeof *al);
        al[v->tool_start] = true;
        *n = 1;
    } else {
        return false;
    }
    if (st->th == GEN_TH_MAY_OPEN) *n += mark_open(v, 0, al);
    return true;
}

bool gen_filter(gen_state *st, bool *allowed, float *logits) {
    const gen_vocab *v = st->v;
    int n = 0;
    if (gen_mask(st, allowed, &n)) {
        if (n == 0) {
            st->g_stuck = true;
            return false;
        }
        for (int i = 0; i < v->n_vocab; i++)
            if (!allowed[i]) logits[i] = -INFINITY;
    } else if (st->th == GEN_TH_WAIT) {
        for (int i = 0; i < v->n_eog; i++) logits[v->eog[i]] = -INFINITY;
    }
    return true;
}

/* ---- taking a token ------------------------------------------------------------------------- */

/* While the output may open a block (GEN_TH_MAY_OPEN): whether token t continues the open tag,
 * and the state after it. A token the constraints accept at the start is the answer's. */
static bool may_open_take(gen_state *st, int32_t t) {
    const gen_vocab *v = st->v;
    int len = open_len(v, st->open_pos, t);
    bool answer = false;
    if (st->open_pos == 0) {
        if (st->g) {
            char bytes[512];
            int nb = v->bytes(v->user, t, false, bytes, sizeof bytes);
            grammar_state tmp = st->gst;
            answer = (nb >= 0 && nb <= (int)sizeof bytes && grammar_accept(st->g, &tmp, bytes, (size_t)nb)) ||
                     (call_may_open(st) && t == v->tool_start);
        } else {
            answer = t == v->tool_start;
        }
    }
    if (len == 0 || answer) {
        st->th = GEN_TH_FREE;
        return false;
    }
    st->open_pos += len;
    if (st->open_pos >= N_OPEN_TAG) { /* a block opened: the constraints wait for the answer */
        st->th = GEN_TH_WAIT;
        st->g = NULL;
    }
    return true;
}

int gen_take_begin(gen_state *st, int32_t t, bool forced) {
    const gen_vocab *v = st->v;
    const gen_rules *r = &st->r;
    st->in_block = st->think.phase == LFM2C_THINK_IN;
    st->tag = st->th == GEN_TH_MAY_OPEN && !forced && may_open_take(st, t);
    if (r->tool_grammar && t == v->tool_start && (r->tools_auto || r->force_tool_call || forced) &&
        (!st->g || call_may_open(st)) && st->th != GEN_TH_WAIT && !st->in_block && !st->tag)
        grammar_start(st, r->tool_grammar, true);
    if (is_eog(v, t) && !(st->g && !forced && !grammar_complete(st->g, &st->gst))) return GEN_STOP;
    st->n_tokens++;
    if (st->in_block) st->n_think++;
    return GEN_GO;
}

void gen_split(gen_state *st, const char *p, size_t n, bool flush, char *think, size_t *n_think, char *answer,
               size_t *n_answer) {
    if (flush) lfm2c_think_flush(&st->think, think, n_think, answer, n_answer);
    else lfm2c_think_push(&st->think, p, n, think, n_think, answer, n_answer);
}

int gen_take_end(gen_state *st, int32_t t, const char *answer, size_t n_answer) {
    const gen_vocab *v = st->v;
    if (st->th == GEN_TH_WAIT && st->think.phase == LFM2C_THINK_ANSWER) { /* </think>: the answer's constraints begin */
        st->th = GEN_TH_FREE;
        answer_begin(st, false);
        if (st->g && n_answer && !grammar_accept(st->g, &st->gst, answer, n_answer)) return GEN_FAIL_ANSWER;
        if (st->g && n_answer && st->gst.depth == 0) return GEN_STOP;
        st->tag = true; /* this token's bytes were fed above */
    }
    if (st->g && st->g_tool && t == v->tool_end) return GEN_CALLS;
    if (st->g && t != v->tool_start && !st->tag) {
        char bytes[512];
        int nb = v->bytes(v->user, t, false, bytes, sizeof bytes);
        if (nb > (int)sizeof bytes || !grammar_accept(st->g, &st->gst, bytes, (size_t)(nb > 0 ? nb : 0)))
            return GEN_FAIL_GRAMMAR;
        if (st->gst.depth == 0) return st->g_tool ? GEN_CALLS : GEN_STOP; /* complete (no marker is added) */
    }
    budget_check(st);
    return GEN_GO;
}

/* ---- stop strings ---------------------------------------------------------------------------- */

int gen_stops(char *text, size_t *n_text, size_t old_len, char *const *stop, int n_stop, size_t *n_released) {
    size_t hold = 0, n = *n_text;
    for (int i = 0; i < n_stop; i++) {
        size_t sl = strlen(stop[i]);
        if (!sl) continue;
        size_t from = old_len >= sl ? old_len - sl + 1 : 0;
        for (size_t p = from; p + sl <= n; p++)
            if (!memcmp(text + p, stop[i], sl)) {
                *n_text = p;
                text[p] = 0;
                if (*n_released > p) *n_released = p;
                return i;
            }
        for (size_t k = sl - 1; k > hold; k--)
            if (k <= n && !memcmp(text + n - k, stop[i], k)) {
                hold = k;
                break;
            }
    }
    if (n - hold > *n_released) *n_released = n - hold;
    return -1;
}
