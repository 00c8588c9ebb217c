/* batch.c — continuous batching: one session per prompt, every prompt's prefill in ONE forward
 * (lfm2c_decode_batch), then one token of every still-running sequence per forward. Greedy, so
 * each line equals what examples/generate.c prints for that prompt alone (batched decodes answer
 * as separate ones do). Build: cc batch.c -o batch $(pkg-config --cflags --libs lfm2c)
 * usage: batch MODEL.gguf N_TOKENS PROMPT... (at most 64 prompts; one line of output each) */
#include <lfm2c.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEQ 64

typedef struct {
    lfm2c_session *s;
    lfm2c_sampler *smp;
    int32_t *prompt, next;
    int n_prompt, n_done;
    bool running;
    lfm2c_detok dt; /* whole UTF-8 characters only, as a stream would print them */
    char *text;     /* the continuation so far */
    size_t len;
} seq;

static void append(seq *q, const char *b, int n) {
    char *t = realloc(q->text, q->len + (size_t)n + 1);
    if (!t) return;
    memcpy(t + q->len, b, (size_t)n);
    q->len += (size_t)n;
    t[q->len] = 0;
    q->text = t;
}

int main(int argc, char **argv) {
    if (argc < 4 || argc - 3 > MAX_SEQ) {
        fprintf(stderr, "usage: %s MODEL.gguf N_TOKENS PROMPT...\n", argv[0]);
        return 2;
    }
    int n_gen = atoi(argv[2]), n_seq = argc - 3, rc = 1;
    lfm2c_error err = {0};
    lfm2c_model_params mp = lfm2c_model_default_params();
    lfm2c_model *m = lfm2c_model_open(argv[1], &mp, &err);
    if (!m) {
        fprintf(stderr, "batch: %s\n", err.msg);
        return 1;
    }
    const lfm2c_model_info *info = lfm2c_model_get_info(m);
    lfm2c_sampler_params sp = lfm2c_sampler_params_for_model(m);
    sp.temperature = 0;
    seq q[MAX_SEQ] = {0};
    lfm2c_session *sessions[MAX_SEQ];
    const int32_t *toks[MAX_SEQ];
    int n[MAX_SEQ], modes[MAX_SEQ];
    for (int i = 0; i < n_seq; i++) {
        q[i].prompt = lfm2c_tokenize(m, argv[3 + i], strlen(argv[3 + i]), info->add_bos, true, &q[i].n_prompt, &err);
        if (!q[i].prompt || !(q[i].s = lfm2c_session_new(m, q[i].n_prompt + n_gen + 1, &err))) goto fail;
        if (!(q[i].smp = lfm2c_sampler_new(&sp, info->n_vocab))) {
            snprintf(err.msg, sizeof err.msg, "out of memory");
            goto fail;
        }
        q[i].running = n_gen > 0;
        lfm2c_detok_init(&q[i].dt, false);
        sessions[i] = q[i].s, toks[i] = q[i].prompt, n[i] = q[i].n_prompt, modes[i] = LFM2C_LOGITS_LAST;
    }
    if (lfm2c_decode_batch(sessions, toks, n, modes, n_seq, &err)) goto fail; /* all prefills at once */
    for (;;) {
        int k = 0; /* sample each running sequence, then feed the new tokens in one forward */
        for (int i = 0; i < n_seq; i++) {
            if (!q[i].running) continue;
            int32_t tok = lfm2c_sampler_sample(q[i].smp, lfm2c_session_logits(q[i].s, 0), lfm2c_session_tokens(q[i].s),
                                               lfm2c_session_n_past(q[i].s));
            if (tok < 0 || lfm2c_token_is_eog(m, tok)) {
                q[i].running = false;
                continue;
            }
            char buf[1024];
            int nb = lfm2c_detok_push(&q[i].dt, m, tok, buf, sizeof buf);
            append(&q[i], buf, nb < (int)sizeof buf ? nb : (int)sizeof buf);
            if (++q[i].n_done >= n_gen) {
                q[i].running = false;
                continue;
            }
            q[i].next = tok;
            sessions[k] = q[i].s, toks[k] = &q[i].next, n[k] = 1, modes[k] = LFM2C_LOGITS_LAST, k++;
        }
        if (k == 0) break;
        if (lfm2c_decode_batch(sessions, toks, n, modes, k, &err)) goto fail;
    }
    for (int i = 0; i < n_seq; i++) {
        char buf[64];
        append(&q[i], buf, lfm2c_detok_flush(&q[i].dt, buf, sizeof buf));
        printf("%s\n", q[i].text ? q[i].text : "");
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "batch: %s\n", err.msg);
done:
    for (int i = 0; i < n_seq; i++) {
        lfm2c_sampler_free(q[i].smp);
        lfm2c_session_free(q[i].s);
        free(q[i].prompt);
        free(q[i].text);
    }
    lfm2c_model_free(m);
    return rc;
}
