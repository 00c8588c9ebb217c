/* gen_state.h — the state machine of one generating sequence between the sampler and its text:
 * where the output is towards a thinking block (before it, inside "<think>...</think>", the
 * answer: lfm2c_think), when the answer's constraints apply (a JSON grammar, a forced tool call's
 * marker, a tool-call list once the model opens one) — from the first token, after the block, or
 * after a first token that may open a block instead — the thinking budget that forces the close
 * tag, the token mask all this allows, and the stop strings cut out of the text. The scheduler
 * (scheduler.c) runs one per slot and keeps what is not this machine's (the session, sampling,
 * logprobs, the request's buffers). It knows the vocabulary only through a gen_vocab: made once
 * per model, or from a table of byte strings (tests/serve/test_gen_state.c). */
#ifndef LFM2C_GEN_STATE_H
#define LFM2C_GEN_STATE_H
#include "chat/grammar.h"
#include "lfm2c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the machine needs of a vocabulary (read only once made: any thread). */
typedef struct gen_vocab {
    int n_vocab;
    grammar_vocab *gvocab; /* token byte strings for the grammar's mask */
    int32_t *eog;          /* end-of-generation tokens */
    int n_eog;
    int32_t tool_start, tool_end; /* the tool-call markers, -1: the vocabulary lacks them */
    int32_t *close_toks;          /* "</think>" as tokens (what a thinking budget forces) */
    int n_close;
    struct gen_open_tok {
        int32_t id;
        uint8_t pos, len;
    } * open_toks;   /* tokens that are bytes [pos, pos+len) of the open tag "<think>" */
    int n_open_toks; /* (the mask while the output may open a block) */
    /* token t's bytes (special: a special token's text, else none for it), as lfm2c_token_to_bytes */
    int (*bytes)(const void *user, int32_t t, bool special, char *buf, int cap);
    bool (*is_eog)(const void *user, int32_t t);
    const void *user;
} gen_vocab;

/* A vocabulary from its functions and tokens (src's fields bytes, is_eog, user, n_vocab,
 * tool_start, tool_end; close_toks copied) and its grammar vocabulary (taken: freed with it, or
 * here on failure). NULL when out of memory. */
gen_vocab *gen_vocab_new(const gen_vocab *src, grammar_vocab *gvocab);
/* A model's (which must outlive it); NULL when out of memory. */
gen_vocab *gen_vocab_of_model(const lfm2c_model *model);
void gen_vocab_free(gen_vocab *v);

/* What a request asks of the machine. The grammars are borrowed: the machine reads them only
 * while its caller holds them. */
typedef struct gen_rules {
    const grammar *json_grammar; /* the answer is one JSON value (or regex / choice text) */
    const grammar *tool_grammar; /* the tool-call list after the call marker */
    bool force_tool_call;        /* the answer is a call (its marker first) */
    bool tools_auto;             /* the model may open a call, and the list is constrained then */
    bool think_opened;           /* the prompt ends inside an opened block */
    bool think_allowed;          /* with constraints: the output may open a block first */
    int think_budget;            /* tokens inside the block before its close tag is forced; -1: none */
} gen_rules;

/* How the constraints stand towards a thinking block: */
enum {
    GEN_TH_FREE,     /* they apply as they are (none, or the answer has begun) */
    GEN_TH_MAY_OPEN, /* the first tokens may open a block instead: the mask also allows the open tag */
    GEN_TH_WAIT,     /* in a block: they wait for the answer after </think> (no end of generation) */
};

/* What taking a token did: go on, or the sequence ends (finish stop / tool_calls), or fails. */
enum { GEN_GO, GEN_STOP, GEN_CALLS, GEN_FAIL_ANSWER, GEN_FAIL_GRAMMAR };

typedef struct gen_state {
    const gen_vocab *v;
    gen_rules r;
    const grammar *g; /* the active grammar, NULL: free text */
    bool g_tool;      /* it is the tool-call list */
    grammar_state gst;
    bool g_stuck;    /* the mask allowed nothing */
    int32_t *forced; /* tokens to emit without sampling (owned: kept between sequences) */
    int n_forced, i_forced, cap_forced;
    lfm2c_think think;  /* the text's phase and splitter */
    int th;             /* GEN_TH_* */
    int open_pos;       /* GEN_TH_MAY_OPEN: bytes of the open tag chosen so far */
    bool think_closing; /* the budget forced the close tag */
    int n_tokens;       /* tokens taken (not the end of generation that ended it) */
    int n_think;        /* of them inside the block (the close tag's included) */
    int answer_from;    /* n_tokens when the answer's constraints began */
    bool in_block, tag; /* of the token being taken: it came inside the block, its bytes are not
                           the grammar's (a piece of the open tag, or fed after the block) */
} gen_state;

/* A new sequence under rules r (st zeroed once before its first use). */
void gen_start(gen_state *st, const gen_vocab *v, const gen_rules *r);
/* The sequence ended: nothing more is forced. */
void gen_clear(gen_state *st);
void gen_free(gen_state *st);

/* The next forced token (the call marker, the budget's close tag), if any. */
bool gen_forced(gen_state *st, int32_t *t);
/* Which tokens the state allows (allowed: n_vocab entries, scratch). Returns false when there is
 * no mask, else true with *n the count. */
bool gen_mask(gen_state *st, bool *allowed, int *n);
/* The sampler's filter: tokens the mask leaves out get -INFINITY; inside a block whose answer is
 * constrained, no end of generation. Returns false (and marks g_stuck) when the mask allows no
 * token. */
bool gen_filter(gen_state *st, bool *allowed, float *logits);

/* Taking token t (forced: not sampled) is three calls: gen_take_begin (GEN_STOP: t ends the
 * sequence, nothing else of it is taken), then the token's text through gen_split, then
 * gen_take_end with the answer's bytes gen_split gave out. */
int gen_take_begin(gen_state *st, int32_t t, bool forced);
/* The next n bytes of text (flush: the end of the output) split into the thinking and the
 * answer (each buffer with room for n + LFM2C_THINK_HOLD bytes). */
void gen_split(gen_state *st, const char *p, size_t n, bool flush, char *think, size_t *n_think, char *answer,
               size_t *n_answer);
int gen_take_end(gen_state *st, int32_t t, const char *answer, size_t n_answer);

/* Is the answer still owed to a constraint (a grammar under way, a JSON format or a forced call
 * not begun)? A completed one has ended the sequence already. */
bool gen_constrained(const gen_state *st);

/* Stop strings over text[0..*n_text), of which [0, old_len) was scanned before: the first match
 * cuts the text there (NUL-terminated; *n_released not past it) and its index is returned; else
 * -1, and *n_released moves up to what no stop string can still begin in. */
int gen_stops(char *text, size_t *n_text, size_t old_len, char *const *stop, int n_stop, size_t *n_released);

#endif
