/* test_constraint.c — the public constrained-output API (lfm2c_constraint_*, src/chat/constraint.c)
 * in a program's own loop on a fixture model (random weights: the text is noise, the checks are
 * that it always fits): a schema, a regex and a choice, through the mask and through the
 * sampler's filter hook; refused tokens; the end only where the output may end; reset. */
#include "lfm2c.h"
#include "test.h"

#include <jansson.h>
#include <regex.h>
#include <string.h>

/* Samples up to max tokens after prompt under c (through the sampler's filter hook when hook,
 * else masking a copy of the logits), feeding each token back; the text in out. Returns the
 * number of tokens, -1 on an error. */
static int run(lfm2c_model *m, lfm2c_constraint *c, uint64_t seed, bool hook, int max, char *out, size_t cap) {
    lfm2c_error err = {0};
    lfm2c_session *s = lfm2c_session_new(m, 256, &err);
    lfm2c_sampler_params sp = lfm2c_sampler_default_params();
    sp.temperature = 1.0f, sp.seed = seed;
    const int nv = lfm2c_vocab_size(m);
    lfm2c_sampler *smp = lfm2c_sampler_new(&sp, nv);
    if (hook) lfm2c_sampler_set_filter(smp, lfm2c_constraint_filter, c);
    int n_prompt = 0, n = 0;
    int32_t *prompt = lfm2c_tokenize(m, "The answer:", 11, true, false, &n_prompt, &err);
    float *lg = malloc(sizeof(float) * (size_t)nv);
    size_t len = 0;
    int rc = s && smp && prompt && lg ? lfm2c_session_decode(s, prompt, n_prompt, LFM2C_LOGITS_LAST, &err) : -1;
    while (rc == 0 && n < max && !lfm2c_constraint_done(c)) {
        memcpy(lg, lfm2c_session_logits(s, 0), sizeof(float) * (size_t)nv);
        if (!hook && lfm2c_constraint_mask(c, lg, nv) <= 0) rc = -1;
        int32_t t = rc ? -1 : lfm2c_sampler_sample(smp, lg, NULL, 0);
        if (t < 0 || lfm2c_constraint_accept(c, t, &err)) rc = -1;
        else if (lfm2c_token_is_eog(m, t)) break;
        else {
            len += (size_t)lfm2c_token_to_bytes(m, t, false, out + len, (int)(cap - len - 1));
            n++;
            rc = lfm2c_session_decode(s, &t, 1, LFM2C_LOGITS_LAST, &err);
        }
    }
    out[len < cap ? len : cap - 1] = 0;
    free(lg);
    free(prompt);
    lfm2c_sampler_free(smp);
    lfm2c_session_free(s);
    return rc ? -1 : n;
}

static bool matches(const char *posix_rx, const char *text) {
    regex_t re;
    if (regcomp(&re, posix_rx, REG_EXTENDED | REG_NOSUB)) return false;
    bool ok = regexec(&re, text, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

int main(void) {
    lfm2c_error err = {0};
    lfm2c_model *m = lfm2c_model_open(DATA("lfm2-tiny-moe-f32.gguf"), NULL, &err);
    CHECK(m != NULL, "open: %s", err.msg);
    if (!m) TEST_MAIN_END();
    char out[4096];

    /* a regex, matched as a whole */
    const char *rx = "[a-z]{2,5}-[0-9]{3}";
    lfm2c_constraint *c = lfm2c_constraint_regex(m, rx, strlen(rx), &err);
    CHECK(c != NULL, "regex: %s", err.msg);
    for (uint64_t seed = 1; c && seed <= 4; seed++) {
        lfm2c_constraint_reset(c);
        int n = run(m, c, seed, seed % 2, 64, out, sizeof out);
        CHECK(n > 0 && lfm2c_constraint_done(c) && matches("^[a-z]{2,5}-[0-9]{3}$", out), "regex seed %d: '%s' (%d)",
              (int)seed, out, n);
    }
    lfm2c_constraint_free(c);

    /* a choice */
    const char *choices[] = {"positive", "negative", "it's \"mixed\""};
    c = lfm2c_constraint_choices(m, choices, 3, &err);
    CHECK(c != NULL, "choices: %s", err.msg);
    for (uint64_t seed = 1; c && seed <= 4; seed++) {
        lfm2c_constraint_reset(c);
        int n = run(m, c, seed, seed % 2, 64, out, sizeof out);
        CHECK(n > 0 && (!strcmp(out, choices[0]) || !strcmp(out, choices[1]) || !strcmp(out, choices[2])),
              "choice seed %d: '%s'", (int)seed, out);
    }
    /* a token that does not fit is refused and changes nothing; the end only where it may be */
    if (c) {
        lfm2c_constraint_reset(c);
        int32_t eog = -1;
        for (int i = 0; i < lfm2c_vocab_size(m) && eog < 0; i++)
            if (lfm2c_token_is_eog(m, i)) eog = i;
        int n_x = 0;
        int32_t *x = lfm2c_tokenize(m, "zzz", 3, false, false, &n_x, &err);
        CHECK(x && n_x >= 1 && lfm2c_constraint_accept(c, x[0], &err) == -1 && err.code == LFM2C_EINVAL,
              "a token outside every choice is refused");
        CHECK(eog < 0 || lfm2c_constraint_accept(c, eog, &err) == -1, "no end before a whole choice");
        CHECK(lfm2c_constraint_accept(c, lfm2c_vocab_size(m), &err) == -1, "a token id past the vocabulary");
        free(x);
        float *lg = calloc((size_t)lfm2c_vocab_size(m), sizeof *lg);
        int k = lfm2c_constraint_mask(c, lg, lfm2c_vocab_size(m)), kept = 0;
        for (int i = 0; i < lfm2c_vocab_size(m); i++) kept += lg[i] == 0.0f;
        CHECK(k > 0 && k == kept && (eog < 0 || isinf(lg[eog])), "the mask keeps what it counts (%d, %d)", k, kept);
        free(lg);
    }
    lfm2c_constraint_free(c);

    /* a JSON schema */
    const char *schema = "{\"type\":\"object\",\"properties\":{\"pick\":{\"enum\":[\"a\",\"b\"]},\"n\":{\"type\":"
                         "\"integer\",\"minimum\":0,\"maximum\":99}},\"required\":[\"pick\",\"n\"],"
                         "\"additionalProperties\":false}";
    c = lfm2c_constraint_schema(m, schema, &err);
    CHECK(c != NULL, "schema: %s", err.msg);
    for (uint64_t seed = 1; c && seed <= 4; seed++) {
        lfm2c_constraint_reset(c);
        int n = run(m, c, seed, seed % 2, 64, out, sizeof out);
        json_t *v = n > 0 ? json_loads(out, 0, NULL) : NULL;
        json_t *pick = json_object_get(v, "pick"), *num = json_object_get(v, "n");
        CHECK(v && json_object_size(v) == 2 && json_is_string(pick) && json_is_integer(num) &&
                  json_integer_value(num) >= 0 && json_integer_value(num) <= 99,
              "schema seed %d: '%s'", (int)seed, out);
        json_decref(v);
    }
    lfm2c_constraint_free(c);

    /* what cannot be compiled is an error, never a constraint that lets everything through */
    CHECK(!lfm2c_constraint_schema(m, "{\"type\":\"nope\"}", &err) && err.code == LFM2C_EINVAL && err.msg[0],
          "a bad schema: %s", err.msg);
    CHECK(!lfm2c_constraint_regex(m, "(a", 2, &err) && err.code == LFM2C_EINVAL, "a bad regex: %s", err.msg);
    CHECK(!lfm2c_constraint_choices(m, choices, 0, &err) && err.code == LFM2C_EINVAL, "no choices: %s", err.msg);
    lfm2c_model_free(m);
    TEST_MAIN_END();
}
