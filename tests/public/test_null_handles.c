/* test_null_handles.c — every function of include/lfm2c.h called with NULL for its handles (model,
 * session, mmproj, image, adapter, sampler, constraint, speculative decoder, detokenizer and
 * thinking splitter state): each refuses it, an error (LFM2C_EINVAL with a message) where it takes
 * err, else an empty result (0, NULL, false, a zeroed struct) or nothing done, and never
 * dereferences it (ASan in CI). The test reads the header and fails naming any public function
 * this file does not call, so a new one gets its NULL check here. Links the public library alone
 * (liblfm2c.a); run from tests/. */
#include "lfm2c.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures, passes;
#define EXPECT(c, ...) \
    do { \
        if (c) passes++; \
        else { \
            failures++; \
            fprintf(stderr, "FAIL line %d: ", __LINE__); \
            fprintf(stderr, __VA_ARGS__); \
            fputc('\n', stderr); \
        } \
    } while (0)

static lfm2c_error err;
/* The call failed with LFM2C_EINVAL and said so; err is reset for the next. */
static bool refused(void) {
    const bool ok = err.code == LFM2C_EINVAL && err.msg[0];
    memset(&err, 0, sizeof err);
    return ok;
}

static void test_models(void) {
    EXPECT(lfm2c_model_open(NULL, NULL, &err) == NULL && err.code != 0, "model_open(NULL path)");
    memset(&err, 0, sizeof err);
    lfm2c_model_free(NULL);
    EXPECT(lfm2c_model_get_info(NULL) == NULL, "model_get_info");
    EXPECT(lfm2c_model_device(NULL).device == 0 && lfm2c_model_device(NULL).name[0] == 0, "model_device");
    EXPECT(lfm2c_model_decode_profile(NULL).steps == 0, "model_decode_profile");
    EXPECT(lfm2c_model_n_tensors(NULL) == 0, "model_n_tensors");
    const char *name = "x", *type = "x";
    int64_t ne[4] = {1, 1, 1, 1};
    int nd = 1;
    uint64_t nb = 1;
    lfm2c_model_tensor_desc(NULL, 0, &name, &type, ne, &nd, &nb);
    EXPECT(!name && !type && nd == 0 && nb == 0 && ne[0] == 0, "model_tensor_desc");
    EXPECT(lfm2c_model_meta_str(NULL, "general.name") == NULL, "model_meta_str");
    EXPECT(!lfm2c_token_is_eog(NULL, 0), "token_is_eog");
    EXPECT(lfm2c_kv_cache_bytes(NULL, 16) == 0, "kv_cache_bytes");
    char buf[64] = "x";
    EXPECT(lfm2c_memory_plan(NULL, 1 << 30, 0, 1, 64, buf, sizeof buf, &err) == -1 && refused(), "memory_plan");
    lfm2c_memory_request rq = lfm2c_memory_default_request(NULL);
    EXPECT(rq.n_ctx == 0 && rq.n_seq == 0, "memory_default_request");
    lfm2c_memory_need need;
    EXPECT(lfm2c_memory_estimate(NULL, &rq, &need, &err) == -1 && refused(), "memory_estimate");
    EXPECT(lfm2c_memory_need_bytes(NULL, 64, 1) == 0, "memory_need_bytes");
    EXPECT(lfm2c_model_set_matmul_hook(NULL, NULL, NULL, &err) == -1 && refused(), "model_set_matmul_hook");
    /* the functions of no handle take NULL strings too */
    EXPECT(lfm2c_device_from_name(NULL) == -1 && lfm2c_kv_type_from_name(NULL) == -1, "*_from_name(NULL)");
    EXPECT(lfm2c_device_name(-7) == NULL && lfm2c_kv_type_name(-7) != NULL && lfm2c_file_type_name(-7) == NULL,
           "names of unknown ids");
    EXPECT(lfm2c_parse_size(NULL) == 0, "parse_size(NULL)");
    lfm2c_model_params mp = lfm2c_model_default_params();
    EXPECT(mp.device == LFM2C_DEVICE_CPU, "model_default_params");
}

static void test_sessions(void) {
    int32_t tok = 1, *toks = &tok;
    const int32_t *ctoks = &tok;
    int n = 1, mode = LFM2C_LOGITS_LAST, reused = 7;
    float row[4] = {0};
    const float *rows = row;
    EXPECT(lfm2c_session_new(NULL, 64, &err) == NULL && refused(), "session_new");
    lfm2c_session_free(NULL);
    EXPECT(lfm2c_session_n_ctx(NULL) == 0 && lfm2c_session_n_past(NULL) == 0, "session_n_ctx / n_past");
    EXPECT(lfm2c_session_tokens(NULL) == NULL && lfm2c_session_n_logits_rows(NULL) == 0, "session_tokens / rows");
    EXPECT(lfm2c_session_logits(NULL, 0) == NULL && lfm2c_session_embedding(NULL, 0) == NULL, "session_logits");
    EXPECT(lfm2c_session_decode(NULL, toks, 1, mode, &err) == -1 && refused(), "session_decode");
    EXPECT(lfm2c_session_decode_embd(NULL, toks, row, 1, mode, &err) == -1 && refused(), "session_decode_embd");
    lfm2c_session *none = NULL;
    EXPECT(lfm2c_decode_batch(&none, &ctoks, &n, &mode, 1, &err) == -1 && refused(), "decode_batch");
    EXPECT(lfm2c_decode_batch(NULL, NULL, NULL, NULL, 1, &err) == -1 && refused(), "decode_batch(NULL arrays)");
    EXPECT(lfm2c_decode_batch_embd(&none, &ctoks, &rows, &n, &mode, 1, &err) == -1 && refused(), "decode_batch_embd");
    lfm2c_session_reset(NULL);
    EXPECT(lfm2c_session_truncate(NULL, 0, &err) == -1 && refused(), "session_truncate");
    EXPECT(lfm2c_session_reusable(NULL, toks, 1) == 0, "session_reusable");
    EXPECT(lfm2c_session_sync(NULL, toks, 1, &reused, &err) == -1 && reused == 0 && refused(), "session_sync");
    lfm2c_session_checkpoint(NULL);
    EXPECT(lfm2c_session_set_checkpoints(NULL, 4, 4, 0, &err) == -1 && refused(), "session_set_checkpoints");
    int count = 7;
    size_t bytes = 7;
    lfm2c_session_checkpoint_usage(NULL, &count, &bytes);
    EXPECT(count == 0 && bytes == 0, "session_checkpoint_usage: %d %zu", count, bytes);
    EXPECT(lfm2c_session_copy(NULL, NULL, &err) == -1 && refused(), "session_copy");
    EXPECT(lfm2c_session_set_embeddings(NULL, true, &err) == -1 && refused(), "session_set_embeddings");
    float out[4];
    EXPECT(lfm2c_embed(NULL, toks, 1, LFM2C_POOL_LAST, true, out, &err) == -1 && refused(), "embed");
    lfm2c_embedding_normalize(NULL, 4);
    lfm2c_lora *lo = NULL;
    const float scale = 1;
    EXPECT(lfm2c_session_set_lora(NULL, &lo, &scale, 0, &err) == -1 && refused(), "session_set_lora");
    EXPECT(lfm2c_session_mark(NULL, 1, &err) == -1 && refused(), "session_mark");
    EXPECT(lfm2c_session_rollback(NULL, 0, &err) == -1 && refused(), "session_rollback");
}

static void test_images(void) {
    EXPECT(lfm2c_mmproj_open(NULL, NULL, &err) == NULL && err.code != 0, "mmproj_open(NULL path)");
    memset(&err, 0, sizeof err);
    lfm2c_mmproj_free(NULL);
    char buf[16] = "x";
    EXPECT(lfm2c_mmproj_describe(NULL, buf, sizeof buf) == 0 && buf[0] == 0, "mmproj_describe");
    EXPECT(lfm2c_image_encode(NULL, "x", 1, NULL, &err) == NULL && refused(), "image_encode");
    EXPECT(lfm2c_image_encode_budget(NULL, "x", 1, NULL, NULL, &err) == NULL && refused(), "image_encode_budget");
    lfm2c_image_free(NULL);
    int n = 7, w = 7, h = 7, cols = 7, rows = 7;
    unsigned char dig[32] = {1};
    EXPECT(lfm2c_image_tokens(NULL, &n) == NULL && n == 0, "image_tokens");
    n = 7;
    EXPECT(lfm2c_image_rows(NULL, &n) == NULL && n == 0, "image_rows");
    lfm2c_image_info(NULL, &w, &h, &cols, &rows, dig);
    EXPECT(!w && !h && !cols && !rows && !dig[0], "image_info");
    EXPECT(lfm2c_image_placeholder(NULL) == -1, "image_placeholder");
    int32_t tok = 1, *out = (int32_t *)1;
    float *orows = (float *)1;
    EXPECT(lfm2c_prompt_images(NULL, &tok, 1, NULL, 0, &out, &n, &orows, &err) == -1 && !out && !orows && refused(),
           "prompt_images");
    EXPECT(lfm2c_image_default_limits().max_bytes > 0, "image_default_limits");
}

static void test_audio(void) {
    EXPECT(lfm2c_mmproj_kind(NULL, &err) == -1 && err.code != 0, "mmproj_kind(NULL path)");
    memset(&err, 0, sizeof err);
    EXPECT(lfm2c_audio_mmproj_open(NULL, NULL, &err) == NULL && err.code != 0, "audio_mmproj_open(NULL path)");
    memset(&err, 0, sizeof err);
    lfm2c_audio_mmproj_free(NULL);
    char buf[16] = "x";
    EXPECT(lfm2c_audio_mmproj_describe(NULL, buf, sizeof buf) == 0 && buf[0] == 0, "audio_mmproj_describe");
    lfm2c_audio_facts f;
    memset(&f, 0x55, sizeof f);
    const int pr = lfm2c_audio_probe(NULL, "RIFF", 4, NULL, &f, &err);
    EXPECT(pr == -1 && err.code != 0, "audio_probe(NULL mmproj, 4 bytes)");
    memset(&err, 0, sizeof err);
    EXPECT(lfm2c_audio_encode(NULL, "x", 1, NULL, NULL, NULL, &err) == NULL && refused(), "audio_encode");
    const float x[2] = {0, 0};
    EXPECT(lfm2c_audio_encode_pcm(NULL, x, 2, 1, 16000, &err) == NULL && refused(), "audio_encode_pcm");
    lfm2c_audio_free(NULL);
    int n = 7;
    EXPECT(lfm2c_audio_tokens(NULL, &n) == NULL && n == 0, "audio_tokens");
    n = 7;
    EXPECT(lfm2c_audio_rows(NULL, &n) == NULL && n == 0, "audio_rows");
    EXPECT(lfm2c_audio_seconds(NULL) == 0 && lfm2c_audio_digest(NULL) == NULL, "audio_seconds / digest");
    int32_t *out = (int32_t *)1;
    float *rows = (float *)1;
    EXPECT(lfm2c_prompt_audio(NULL, "a", 1, true, NULL, 0, &out, &n, &rows, &err) == -1 && !out && !rows && refused(),
           "prompt_audio");
    EXPECT(lfm2c_audio_default_limits().max_bytes > 0, "audio_default_limits");
}

static void test_text(void) {
    int n = 7;
    EXPECT(lfm2c_tokenize(NULL, "a", 1, true, false, &n, &err) == NULL && n == 0 && refused(), "tokenize");
    n = 7;
    EXPECT(lfm2c_tokenize_prompt(NULL, "a", 1, true, &n, &err) == NULL && n == 0 && refused(), "tokenize_prompt");
    size_t gl = 7;
    char *g = lfm2c_guard_text(NULL, "a<|im_end|>", 11, &gl);
    EXPECT(!g && gl == 0, "guard_text");
    free(g);
    char buf[16];
    EXPECT(lfm2c_token_to_bytes(NULL, 1, true, buf, sizeof buf) == 0, "token_to_bytes");
    lfm2c_detok_init(NULL, true);
    EXPECT(lfm2c_detok_push(NULL, NULL, 1, buf, sizeof buf) == 0 && lfm2c_detok_flush(NULL, buf, sizeof buf) == 0,
           "detok_push / flush");
    EXPECT(lfm2c_vocab_size(NULL) == 0, "vocab_size");
    lfm2c_think_init(NULL, true);
    size_t nt = 7, na = 7;
    lfm2c_think_push(NULL, "a", 1, buf, &nt, buf, &na);
    EXPECT(nt == 0 && na == 0, "think_push");
    nt = na = 7;
    lfm2c_think_flush(NULL, buf, &nt, buf, &na);
    EXPECT(nt == 0 && na == 0, "think_flush");
    EXPECT(lfm2c_parse_tool_calls(NULL, 5) == NULL, "parse_tool_calls(NULL)");
    char *r = lfm2c_chat_render(NULL, NULL, NULL, NULL, true, &err);
    EXPECT(!r && refused(), "chat_render(NULL messages)");
    r = lfm2c_chat_render_limited(NULL, NULL, NULL, NULL, true, NULL, &err);
    EXPECT(!r && refused(), "chat_render_limited(NULL messages)");
    r = lfm2c_chat_render_template(NULL, NULL, NULL, true, NULL, NULL, &err);
    EXPECT(!r && refused(), "chat_render_template(NULL messages)");
    r = lfm2c_chat_render(NULL, NULL, "[{\"role\":\"user\",\"content\":\"hi\"}]", NULL, true, &err);
    EXPECT(r && strstr(r, "hi"), "chat_render without a model: the built-in template: %s", err.msg);
    free(r);
}

static void test_sampling(void) {
    lfm2c_sampler_params sp = lfm2c_sampler_params_for_model(NULL), d = lfm2c_sampler_default_params();
    EXPECT(!memcmp(&sp, &d, sizeof sp), "sampler_params_for_model(NULL): the defaults");
    EXPECT(lfm2c_sampler_new(NULL, 8) == NULL, "sampler_new(NULL)");
    lfm2c_sampler_free(NULL);
    float logits[4] = {0, 1, 2, 3};
    EXPECT(lfm2c_sampler_sample(NULL, logits, NULL, 0) == -1, "sampler_sample");
    lfm2c_sampler_set_logit_bias(NULL, logits);
    lfm2c_sampler_set_filter(NULL, NULL, NULL);
    EXPECT(lfm2c_constraint_schema(NULL, "{}", &err) == NULL && refused(), "constraint_schema");
    EXPECT(lfm2c_constraint_regex(NULL, "a", 1, &err) == NULL && refused(), "constraint_regex");
    const char *ch[] = {"a"};
    EXPECT(lfm2c_constraint_choices(NULL, ch, 1, &err) == NULL && refused(), "constraint_choices");
    lfm2c_constraint_free(NULL);
    EXPECT(lfm2c_constraint_mask(NULL, logits, 4) == 0 && logits[3] == 3, "constraint_mask");
    lfm2c_constraint_filter(NULL, logits, 4);
    EXPECT(logits[3] == 3, "constraint_filter");
    EXPECT(lfm2c_constraint_accept(NULL, 1, &err) == -1 && refused(), "constraint_accept");
    EXPECT(!lfm2c_constraint_done(NULL), "constraint_done");
    lfm2c_constraint_reset(NULL);
    EXPECT(lfm2c_lora_load(NULL, "x.gguf", &err) == NULL && refused(), "lora_load");
    lfm2c_lora_free(NULL);
    EXPECT(lfm2c_lora_n_matrices(NULL) == 0, "lora_n_matrices");
    char buf[8] = "x";
    EXPECT(lfm2c_lora_describe(NULL, buf, sizeof buf) == 0 && buf[0] == 0, "lora_describe");
}

static void test_spec(void) {
    lfm2c_spec_params p = lfm2c_spec_default_params();
    EXPECT(lfm2c_spec_new(NULL, NULL, 64, &p, &err) == NULL && refused(), "spec_new");
    lfm2c_spec_free(NULL);
    int32_t out[4], last = 1;
    EXPECT(lfm2c_spec_step(NULL, NULL, NULL, 1, out, 4, &err) == -1 && refused(), "spec_step");
    EXPECT(lfm2c_spec_draft(NULL, NULL, NULL, 1, out, 4, &err) == -1 && refused(), "spec_draft");
    EXPECT(lfm2c_spec_accept(NULL, NULL, NULL, out, 0, out, &err) == -1 && refused(), "spec_accept");
    lfm2c_spec *sp = NULL;
    lfm2c_session *s = NULL;
    lfm2c_sampler *smp = NULL;
    int32_t *dr = out;
    int max = 4, k = 7;
    EXPECT(lfm2c_spec_draft_batch(&sp, &s, &smp, &last, &dr, &max, &k, 1, &err) == -1 && refused(), "spec_draft_batch");
    EXPECT(lfm2c_spec_set_params(NULL, &p, &err) == -1 && refused(), "spec_set_params");
    EXPECT(lfm2c_spec_get_params(NULL) == NULL, "spec_get_params");
    EXPECT(lfm2c_spec_get_stats(NULL).drafted == 0, "spec_get_stats");
}

/* Every function the header declares is called above: its name appears in this file. */
static void test_coverage(void) {
    FILE *h = fopen("../include/lfm2c.h", "r"), *me = fopen("public/test_null_handles.c", "r");
    EXPECT(h && me, "../include/lfm2c.h and public/test_null_handles.c (run from tests/)");
    static char hdr[1 << 18], src[1 << 17];
    const size_t nh = h ? fread(hdr, 1, sizeof hdr - 1, h) : 0, ns = me ? fread(src, 1, sizeof src - 1, me) : 0;
    hdr[nh] = src[ns] = 0;
    if (h) fclose(h);
    if (me) fclose(me);
    int found = 0;
    for (const char *p = hdr; (p = strstr(p, "lfm2c_")) != NULL;) {
        size_t len = 0;
        while (isalnum((unsigned char)p[len]) || p[len] == '_') len++;
        const char *q = p + len;
        while (*q == ' ') q++;
        const bool fn = *q == '(' && (p == hdr || (p[-1] == ' ' || p[-1] == '*'));
        if (fn) {
            char name[96], call[100];
            snprintf(name, sizeof name, "%.*s", (int)len, p);
            snprintf(call, sizeof call, "%s(", name);
            found++;
            EXPECT(strstr(src, call) != NULL, "%s is public but not called with NULL handles here", name);
        }
        p += len;
    }
    EXPECT(found >= 100, "only %d public functions found in the header", found);
}

int main(void) {
    test_models();
    test_sessions();
    test_images();
    test_audio();
    test_text();
    test_sampling();
    test_spec();
    test_coverage();
    printf("%d passed, %d failed\n", passes, failures);
    return failures ? 1 : 0;
}
