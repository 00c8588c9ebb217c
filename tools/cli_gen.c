/* cli_gen.c — what run and chat share to decode: the speculative-decoding flags (-md, --draft-max,
 * --draft-min, --draft-p-min, --spec-lookup, --draft-auto / --draft-fixed) and a token source that hands out one token at a
 * time, from plain decode steps or from speculative steps (lfm2c_spec_step) that yield several. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int gen_fail(lfm2c_error *err, const char *msg) {
    if (err) {
        err->code = LFM2C_EINVAL;
        snprintf(err->msg, sizeof err->msg, "%s", msg);
    }
    return -1;
}

/* A sampler's failure (t < 0) as a message. */
static int sample_fail(lfm2c_error *err, int32_t t) {
    return gen_fail(err, t == LFM2C_SAMPLE_NOT_FINITE
                             ? "the model's logits are not finite (NaN or infinity): its weights, or an adapter's, "
                               "overflow"
                             : "no token can be sampled (every logit is -inf)");
}

cli_spec cli_spec_init(void) {
    lfm2c_spec_params d = lfm2c_spec_default_params();
    return (cli_spec){.draft_max = d.draft_max,
                      .draft_min = d.draft_min,
                      .p_min = d.draft_p_min,
                      .force_accept = -1,
                      .draft_auto = -1};
}

/* "N" (sizes N down to 1), "A..B" or "A-B" (sizes B down to A); false if neither */
static bool parse_sizes(const char *v, int *lo, int *hi) {
    char *end;
    long a = strtol(v, &end, 10), b = a;
    if (end == v || a < 1 || a > 64) return false;
    if (!*end) {
        *lo = 1, *hi = (int)a;
        return true;
    }
    const char *p = !strncmp(end, "..", 2) ? end + 2 : *end == '-' ? end + 1 : NULL;
    if (!p || !*p) return false;
    b = strtol(p, &end, 10);
    if (*end || b < a || b > 64) return false;
    *lo = (int)a, *hi = (int)b;
    return true;
}

bool cli_spec_flag(cli_spec *s, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    if (!strcmp(a, "-md") || !strcmp(a, "--model-draft")) s->draft_path = cli_value(argc, argv, i);
    else if (!strcmp(a, "--draft-max") || !strcmp(a, "--draft") || !strcmp(a, "--draft-n")) {
        s->draft_max = cli_int(a, cli_value(argc, argv, i));
        if (s->draft_max < 0 || s->draft_max > 256) {
            cli_fail("%s must be in 0..256, got %d", a, s->draft_max);
            exit(2);
        }
    } else if (!strcmp(a, "--draft-min") || !strcmp(a, "--draft-n-min")) {
        s->draft_min = cli_int(a, cli_value(argc, argv, i));
        if (s->draft_min < 0 || s->draft_min > 256) {
            cli_fail("%s must be in 0..256, got %d", a, s->draft_min);
            exit(2);
        }
    } else if (!strcmp(a, "--draft-p-min")) {
        s->p_min = cli_float(a, cli_value(argc, argv, i));
        if (!(s->p_min >= 0 && s->p_min <= 1)) {
            cli_fail("%s must be in [0, 1]", a);
            exit(2);
        }
    } else if (!strcmp(a, "--draft-auto")) s->draft_auto = 1;
    else if (!strcmp(a, "--draft-fixed")) s->draft_auto = 0;
    else if (!strcmp(a, "--spec-lookup")) {
        s->lookup_min = 1, s->lookup_max = 3;
        if (*i + 1 < argc && argv[*i + 1][0] >= '0' && argv[*i + 1][0] <= '9') {
            const char *v = argv[++*i];
            if (!parse_sizes(v, &s->lookup_min, &s->lookup_max)) {
                cli_fail("--spec-lookup takes n-gram sizes N (N down to 1) or A..B (1 <= A <= B <= 64), got '%s'", v);
                exit(2);
            }
        }
    } else return false;
    return true;
}

bool cli_spec_on(const cli_spec *s) { return s->draft_path || s->lookup_max > 0; }

lfm2c_spec *cli_spec_open(const cli_spec *s, lfm2c_model *target, int n_ctx, int threads, const char *device,
                          float temperature, lfm2c_model **draft_out) {
    *draft_out = NULL;
    if (s->draft_path && s->lookup_max > 0) {
        cli_fail("-md and --spec-lookup are two drafters: give one");
        return NULL;
    }
    if (s->draft_min > s->draft_max) {
        cli_fail("--draft-min %d is above --draft-max %d", s->draft_min, s->draft_max);
        return NULL;
    }
    lfm2c_model *d = NULL;
    if (s->draft_path && !(d = cli_open_model(s->draft_path, threads, false, device))) return NULL;
    lfm2c_spec_params p = lfm2c_spec_default_params();
    p.draft_max = s->draft_max;
    p.draft_min = s->draft_min;
    p.draft_p_min = (float)s->p_min;
    p.lookup_min = s->lookup_min;
    p.lookup_max = s->lookup_max;
    p.force_accept = (float)s->force_accept;
    /* by default the draft length is chosen per step only where that cannot change the text:
     * greedy decoding (above temperature 0 it changes which random numbers a seed draws) */
    p.draft_auto = s->draft_auto >= 0 ? s->draft_auto == 1 : temperature <= 0;
    lfm2c_error err = {0};
    lfm2c_spec *sp = lfm2c_spec_new(target, d, n_ctx, &p, &err);
    if (!sp) {
        cli_fail("%s%s", d ? "draft model: " : "", err.msg);
        lfm2c_model_free(d);
        return NULL;
    }
    *draft_out = d;
    return sp;
}

void cli_spec_report(const lfm2c_spec *sp) {
    if (!sp) return;
    lfm2c_spec_stats st = lfm2c_spec_get_stats(sp);
    fprintf(stderr, "speculative: %ld drafted, %ld accepted (%.1f%%) in %ld verification steps\n", st.drafted,
            st.accepted, st.drafted ? 100.0 * st.accepted / st.drafted : 0.0, st.steps);
}

/* ---- the token source -------------------------------------------------------------------- */

void cli_gen_start(cli_gen *g, lfm2c_session *s, lfm2c_sampler *smp, lfm2c_spec *spec, int limit) {
    *g = (cli_gen){.s = s, .smp = smp, .spec = spec, .limit = limit, .start = lfm2c_session_n_past(s)};
}

int cli_gen_next(cli_gen *g, int want, int32_t *tok, lfm2c_error *err) {
    if (g->ip < g->np) {
        *tok = g->pend[g->ip++];
        g->emitted++;
        return 1;
    }
    const int past = lfm2c_session_n_past(g->s);
    if (g->np == 0) { /* the first token: from the logits the caller's decode left */
        if (past >= g->limit) return 0;
        int32_t t = lfm2c_sampler_sample(g->smp, lfm2c_session_logits(g->s, 0), lfm2c_session_tokens(g->s), past);
        if (t < 0) return sample_fail(err, t);
        g->pend[0] = t;
        g->np = g->ip = 1;
        *tok = t;
        g->emitted++;
        return 1;
    }
    int room = g->limit - 1 - past; /* tokens that may still come out (the loop's context rule) */
    if (room < 1) return 0;
    int max = want < room ? want : room;
    if (max > CLI_GEN_MAX) max = CLI_GEN_MAX;
    if (max < 1) max = 1;
    int32_t last = g->pend[g->np - 1];
    int n;
    if (g->spec) {
        n = lfm2c_spec_step(g->spec, g->s, g->smp, last, g->pend, max, err);
        if (n < 0) return -1;
    } else {
        if (lfm2c_session_decode(g->s, &last, 1, LFM2C_LOGITS_LAST, err)) return -1;
        int32_t t = lfm2c_sampler_sample(g->smp, lfm2c_session_logits(g->s, 0), lfm2c_session_tokens(g->s), past + 1);
        if (t < 0) return sample_fail(err, t);
        g->pend[0] = t;
        n = 1;
    }
    g->np = n;
    g->ip = 1;
    *tok = g->pend[0];
    g->emitted++;
    return 1;
}

int cli_gen_settle(cli_gen *g, int n_tokens, lfm2c_error *err) {
    /* the tokens handed out: the session's since start, then the pending ones */
    int want = g->start + n_tokens, past = lfm2c_session_n_past(g->s);
    if (past > want) return lfm2c_session_rollback(g->s, want, err);
    if (past < want) {
        int have = past - g->start;     /* emitted tokens the session holds */
        int first = g->emitted - g->ip; /* index (in emitted order) of pend[0] */
        int from = have - first;        /* pend index of the first missing token */
        if (from < 0 || from + (want - past) > g->np) return gen_fail(err, "generation state out of step");
        return lfm2c_session_decode(g->s, g->pend + from, want - past, LFM2C_LOGITS_LAST, err);
    }
    return 0;
}
