/* reasoning.c — the one splitter of a thinking model's output into its thinking and its answer
 * (lfm2c_think_*, lfm2c.h): "<think>...</think>" before the answer, fed in pieces as tokens are
 * generated. Every place that shows model output (the server's APIs through the scheduler, the
 * chat CLI) goes through it. It reads the output a byte at a time with a few bytes held (a tag
 * that may be split between pieces, a whitespace run that may be dropped), so any split of the
 * same text gives the same result. */
#include "lfm2c.h"

#include <string.h>

static const char OPEN[] = LFM2C_THINK_OPEN, CLOSE[] = LFM2C_THINK_CLOSE;
enum { N_OPEN = sizeof OPEN - 1, N_CLOSE = sizeof CLOSE - 1 };

void lfm2c_think_init(lfm2c_think *t, bool opened) {
    if (!t) return;
    memset(t, 0, sizeof *t);
    t->phase = opened ? LFM2C_THINK_IN : LFM2C_THINK_START;
    t->lead = true;
    t->had_block = opened;
}

static bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

typedef struct sink {
    char *p;
    size_t *n;
} sink;

static void put(sink o, const char *s, size_t n) {
    memcpy(o.p + *o.n, s, n);
    *o.n += n;
}

static void put_held(lfm2c_think *t, sink o) {
    put(o, t->held, (size_t)(t->n_ws + t->n_tag));
    t->n_ws = t->n_tag = 0;
}

static void hold(lfm2c_think *t, char c) { t->held[t->n_ws + t->n_tag] = c; }

/* Before anything is decided: whitespace, then the open tag or the answer. */
static void start_byte(lfm2c_think *t, char c, sink answer) {
    if (t->n_tag == 0 && is_ws(c) && t->n_ws < LFM2C_THINK_WS) {
        hold(t, c);
        t->n_ws++;
    } else if (c == OPEN[t->n_tag]) {
        hold(t, c);
        if (++t->n_tag == N_OPEN) {
            t->n_ws = t->n_tag = 0;
            t->phase = LFM2C_THINK_IN;
            t->lead = true;
            t->had_block = true;
        }
    } else {
        t->phase = LFM2C_THINK_ANSWER;
        t->lead = false;
        put_held(t, answer);
        put(answer, &c, 1);
    }
}

/* Inside the block: held trailing whitespace and a possible close tag. */
static void in_byte(lfm2c_think *t, char c, sink think) {
    if (t->n_tag > 0) {
        if (c == CLOSE[t->n_tag]) {
            hold(t, c);
            if (++t->n_tag == N_CLOSE) {
                t->n_ws = t->n_tag = 0;
                t->phase = LFM2C_THINK_ANSWER;
                t->lead = true;
            }
            return;
        }
        put_held(t, think); /* not the tag after all: what was held is thinking */
        t->lead = false;
    }
    if (c == CLOSE[0]) {
        hold(t, c);
        t->n_tag = 1;
    } else if (is_ws(c)) {
        if (t->lead) return;
        if (t->n_ws == LFM2C_THINK_WS) put_held(t, think);
        hold(t, c);
        t->n_ws++;
    } else {
        put_held(t, think);
        put(think, &c, 1);
        t->lead = false;
    }
}

void lfm2c_think_push(lfm2c_think *t, const char *s, size_t n, char *think, size_t *n_think, char *answer,
                      size_t *n_answer) {
    sink th = {think, n_think}, an = {answer, n_answer};
    *n_think = *n_answer = 0;
    if (!t || (!s && n)) return;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        switch (t->phase) {
        case LFM2C_THINK_START: start_byte(t, c, an); break;
        case LFM2C_THINK_IN: in_byte(t, c, th); break;
        default:
            if (t->lead && t->had_block && is_ws(c)) break;
            t->lead = false;
            put(an, &c, 1);
        }
    }
}

void lfm2c_think_flush(lfm2c_think *t, char *think, size_t *n_think, char *answer, size_t *n_answer) {
    sink th = {think, n_think}, an = {answer, n_answer};
    *n_think = *n_answer = 0;
    if (!t) return;
    if (t->phase == LFM2C_THINK_START) {
        if (t->n_ws + t->n_tag) t->phase = LFM2C_THINK_ANSWER;
        put_held(t, an);
    } else if (t->phase == LFM2C_THINK_IN) {
        if (t->n_tag) put_held(t, th); /* an unfinished tag stays, whitespace before it too */
        t->n_ws = t->n_tag = 0;        /* trailing whitespace is dropped */
    }
}
