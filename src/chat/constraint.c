/* constraint.c — the public constrained-output API (lfm2c.h, lfm2c_constraint_*): a grammar
 * (grammar.h: a JSON schema, a raw-text regex or choice), its parse state and the model's token
 * byte strings as the mask's vocabulary, for a program's own sampling loop. */
#include "base/error.h"
#include "chat/grammar.h"
#include "lfm2c.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct lfm2c_constraint {
    const lfm2c_model *model;
    grammar *g;
    grammar_vocab *v;
    int n_vocab, n_eog;
    int32_t *eog;
    bool *allowed;
    bool ended; /* an end-of-generation token was accepted */
    grammar_state st;
};

grammar_vocab *grammar_vocab_of_model(const lfm2c_model *model) {
    const int n = lfm2c_vocab_size(model);
    char **bytes = calloc((size_t)n, sizeof *bytes);
    int *lens = calloc((size_t)n, sizeof *lens);
    bool ok = bytes && lens;
    for (int i = 0; ok && i < n; i++) {
        char buf[1024];
        int k = lfm2c_token_to_bytes(model, i, false, buf, sizeof buf);
        if (k < 0 || k > (int)sizeof buf) k = 0;
        lens[i] = k;
        if (!(bytes[i] = malloc((size_t)k + 1))) ok = false;
        else memcpy(bytes[i], buf, (size_t)k);
    }
    grammar_vocab *v = ok ? grammar_vocab_new((const char *const *)bytes, lens, n) : NULL;
    for (int i = 0; bytes && i < n; i++) free(bytes[i]);
    free(bytes);
    free(lens);
    return v;
}

/* Wraps a compiled grammar (NULL: msg says why) for model; takes g. */
static lfm2c_constraint *wrap(const lfm2c_model *model, grammar *g, const char *msg, lfm2c_error *err) {
    if (!g || !model) {
        grammar_free(g);
        if (!model) msg = "NULL model";
        lfm2c_set_error(err, LFM2C_EINVAL, "%s", msg[0] ? msg : "out of memory");
        return NULL;
    }
    lfm2c_constraint *c = calloc(1, sizeof *c);
    const int n = lfm2c_vocab_size(model);
    if (c) {
        c->model = model, c->g = g, c->n_vocab = n;
        c->v = grammar_vocab_of_model(model);
        c->eog = malloc(sizeof *c->eog * (size_t)(n > 0 ? n : 1));
        c->allowed = malloc((size_t)(n > 0 ? n : 1));
    }
    if (!c || !c->v || !c->eog || !c->allowed) {
        if (c) lfm2c_constraint_free(c);
        else grammar_free(g);
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (lfm2c_token_is_eog(model, i)) c->eog[c->n_eog++] = i;
    lfm2c_constraint_reset(c);
    return c;
}

lfm2c_constraint *lfm2c_constraint_schema(const lfm2c_model *model, const char *schema_json, lfm2c_error *err) {
    char msg[300] = "";
    return wrap(model, schema_json ? grammar_from_schema(schema_json, msg, sizeof msg) : NULL,
                schema_json ? msg : "no schema", err);
}

lfm2c_constraint *lfm2c_constraint_regex(const lfm2c_model *model, const char *regex, size_t len, lfm2c_error *err) {
    char msg[300] = "";
    return wrap(model, regex ? grammar_from_regex(regex, len, NULL, msg, sizeof msg) : NULL, regex ? msg : "no regex",
                err);
}

lfm2c_constraint *lfm2c_constraint_choices(const lfm2c_model *model, const char *const *choices, int n,
                                           lfm2c_error *err) {
    char msg[300] = "";
    size_t *lens = malloc(sizeof *lens * (size_t)(n > 0 ? n : 1));
    grammar *g = NULL;
    if (lens && (n <= 0 || choices)) {
        for (int i = 0; i < n; i++) lens[i] = choices[i] ? strlen(choices[i]) : 0;
        g = grammar_from_choices(choices, lens, n, NULL, msg, sizeof msg);
    }
    free(lens);
    return wrap(model, g, msg, err);
}

void lfm2c_constraint_free(lfm2c_constraint *c) {
    if (!c) return;
    grammar_free(c->g);
    grammar_vocab_free(c->v);
    free(c->eog);
    free(c->allowed);
    free(c);
}

void lfm2c_constraint_reset(lfm2c_constraint *c) {
    if (!c) return;
    grammar_state_init(c->g, &c->st);
    c->ended = false;
}

int lfm2c_constraint_mask(lfm2c_constraint *c, float *logits, int n_vocab) {
    if (!c || !logits) return 0;
    const int n = n_vocab < c->n_vocab ? n_vocab : c->n_vocab;
    if (c->ended) {
        for (int i = 0; i < n; i++) logits[i] = -INFINITY;
        return 0;
    }
    int k = grammar_allowed(c->g, &c->st, c->v, c->eog, c->n_eog, c->allowed);
    for (int i = 0; i < n; i++)
        if (!c->allowed[i]) logits[i] = -INFINITY;
    for (int i = n; i < n_vocab; i++) logits[i] = -INFINITY; /* beyond the model's vocabulary */
    return k;
}

void lfm2c_constraint_filter(void *c, float *logits, int n_vocab) { lfm2c_constraint_mask(c, logits, n_vocab); }

int lfm2c_constraint_accept(lfm2c_constraint *c, int32_t token, lfm2c_error *err) {
    if (!c) return lfm2c_set_error(err, LFM2C_EINVAL, "NULL constraint"), -1;
    if (token < 0 || token >= c->n_vocab) {
        lfm2c_set_error(err, LFM2C_EINVAL, "token %d is outside the vocabulary", (int)token);
        return -1;
    }
    if (c->ended) {
        lfm2c_set_error(err, LFM2C_EINVAL, "the output has ended");
        return -1;
    }
    if (lfm2c_token_is_eog(c->model, token)) {
        if (!grammar_complete(c->g, &c->st)) {
            lfm2c_set_error(err, LFM2C_EINVAL, "the output cannot end here");
            return -1;
        }
        c->ended = true;
        return 0;
    }
    char buf[1024];
    const int n = lfm2c_token_to_bytes(c->model, token, false, buf, sizeof buf);
    if (n < 0 || n > (int)sizeof buf || !grammar_accept(c->g, &c->st, buf, (size_t)n)) {
        lfm2c_set_error(err, LFM2C_EINVAL, "token %d is not allowed here", (int)token);
        return -1;
    }
    return 0;
}

bool lfm2c_constraint_done(const lfm2c_constraint *c) { return c && (c->ended || c->st.depth == 0); }
