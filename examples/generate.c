/* generate.c — the smallest complete use of liblfm2c: open a model, feed a prompt, generate
 * greedily (the model's sampling defaults at temperature 0) and print the text as it comes.
 * Build against an installed library: cc generate.c -o generate $(pkg-config --cflags --libs lfm2c)
 * usage: generate MODEL.gguf PROMPT [N_TOKENS] */
#include <lfm2c.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf PROMPT [N_TOKENS]\n", argv[0]);
        return 2;
    }
    int n_gen = argc > 3 ? atoi(argv[3]) : 64;
    lfm2c_error err = {0};
    lfm2c_model_params mp = lfm2c_model_default_params();
    lfm2c_model *m = lfm2c_model_open(argv[1], &mp, &err);
    if (!m) {
        fprintf(stderr, "generate: %s\n", err.msg);
        return 1;
    }
    const lfm2c_model_info *info = lfm2c_model_get_info(m);

    int n_prompt = 0, rc = 1;
    int32_t *ids = lfm2c_tokenize(m, argv[2], strlen(argv[2]), info->add_bos, true, &n_prompt, &err);
    lfm2c_session *s = ids ? lfm2c_session_new(m, n_prompt + n_gen, &err) : NULL;
    lfm2c_sampler_params sp = lfm2c_sampler_params_for_model(m);
    sp.temperature = 0; /* greedy */
    lfm2c_sampler *smp = lfm2c_sampler_new(&sp, info->n_vocab);
    if (!s || !smp || lfm2c_session_decode(s, ids, n_prompt, LFM2C_LOGITS_LAST, &err)) {
        fprintf(stderr, "generate: %s\n", err.code ? err.msg : "out of memory");
        goto done;
    }
    lfm2c_detok dt;
    lfm2c_detok_init(&dt, false);
    char buf[1024];
    for (int i = 0; i < n_gen; i++) {
        int32_t tok =
            lfm2c_sampler_sample(smp, lfm2c_session_logits(s, 0), lfm2c_session_tokens(s), lfm2c_session_n_past(s));
        if (tok < 0 || lfm2c_token_is_eog(m, tok)) break;
        int nb = lfm2c_detok_push(&dt, m, tok, buf, sizeof buf);
        fwrite(buf, 1, nb < (int)sizeof buf ? (size_t)nb : sizeof buf, stdout);
        fflush(stdout);
        if (lfm2c_session_decode(s, &tok, 1, LFM2C_LOGITS_LAST, &err)) {
            fprintf(stderr, "generate: %s\n", err.msg);
            goto done;
        }
    }
    fwrite(buf, 1, (size_t)lfm2c_detok_flush(&dt, buf, sizeof buf), stdout);
    printf("\n");
    rc = 0;
done:
    lfm2c_sampler_free(smp);
    lfm2c_session_free(s);
    free(ids);
    lfm2c_model_free(m);
    return rc;
}
