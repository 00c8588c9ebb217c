/* chat.c — a streaming chat turn with tool calls through the public API alone: the conversation
 * is rendered with the model's own chat template (lfm2c_chat_render, tools included), the user's
 * text is guarded so it cannot fake special tokens (lfm2c_guard_text + lfm2c_tokenize_prompt),
 * the reply streams as it is sampled, and lfm2c_parse_tool_calls reads LFM2's tool calls out of
 * it. When the model calls the (stub) get_weather tool, its result goes back as a "tool" message
 * and the model continues, the session keeping the prefix it already holds (lfm2c_session_sync).
 * Build: cc chat.c -o chat $(pkg-config --cflags --libs lfm2c)
 * usage: chat MODEL.gguf USER_MESSAGE [MAX_TOKENS_PER_TURN] */
#include <lfm2c.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TURNS 3 /* model turns: at most two rounds of tool calls, then the answer */

static const char *TOOLS =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Current weather in a city\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}}]";

typedef struct {
    char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            fprintf(stderr, "chat: out of memory\n");
            exit(1);
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

/* s[0..n) as a JSON string */
static void put_json_str(buf *b, const char *s, size_t n) {
    put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') esc[0] = '\\', esc[1] = (char)c, put(b, esc, 2);
        else if (c < 0x20) put(b, esc, (size_t)snprintf(esc, sizeof esc, "\\u%04x", c));
        else put(b, (const char *)&s[i], 1);
    }
    put(b, "\"", 1);
}

/* appends {"role": ROLE, "content": TEXT} to the messages array being written */
static void put_message(buf *msgs, const char *role, const char *text, size_t n) {
    put(msgs, msgs->n > 1 ? ",{\"role\":\"" : "{\"role\":\"", msgs->n > 1 ? 10 : 9);
    put(msgs, role, strlen(role));
    put(msgs, "\",\"content\":", 12);
    put_json_str(msgs, text, n);
    put(msgs, "}", 1);
}

/* Samples one assistant turn into *reply (special tokens as text, so tool-call markers show),
 * printing it as it comes. Returns 0 or -1. */
static int assistant_turn(lfm2c_model *m, lfm2c_session *s, lfm2c_sampler *smp, int max_tokens, buf *reply,
                          lfm2c_error *err) {
    lfm2c_detok dt;
    lfm2c_detok_init(&dt, true);
    char piece[1024];
    for (int i = 0; i < max_tokens && lfm2c_session_n_past(s) < lfm2c_session_n_ctx(s); i++) {
        int32_t tok =
            lfm2c_sampler_sample(smp, lfm2c_session_logits(s, 0), lfm2c_session_tokens(s), lfm2c_session_n_past(s));
        if (tok < 0 || lfm2c_token_is_eog(m, tok)) break;
        int nb = lfm2c_detok_push(&dt, m, tok, piece, sizeof piece);
        nb = nb < (int)sizeof piece ? nb : (int)sizeof piece;
        fwrite(piece, 1, (size_t)nb, stdout);
        fflush(stdout);
        put(reply, piece, (size_t)nb);
        if (lfm2c_session_decode(s, &tok, 1, LFM2C_LOGITS_LAST, err)) return -1;
    }
    put(reply, piece, (size_t)lfm2c_detok_flush(&dt, piece, sizeof piece));
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf USER_MESSAGE [MAX_TOKENS_PER_TURN]\n", argv[0]);
        return 2;
    }
    int max_tokens = argc > 3 ? atoi(argv[3]) : 256, rc = 1;
    lfm2c_error err = {0};
    lfm2c_model_params mp = lfm2c_model_default_params();
    lfm2c_model *m = lfm2c_model_open(argv[1], &mp, &err);
    if (!m) {
        fprintf(stderr, "chat: %s\n", err.msg);
        return 1;
    }
    lfm2c_sampler_params sp = lfm2c_sampler_params_for_model(m); /* the file's defaults */
    lfm2c_sampler *smp = lfm2c_sampler_new(&sp, lfm2c_vocab_size(m));
    int n_ctx = lfm2c_model_get_info(m)->n_ctx_train;
    lfm2c_session *s = lfm2c_session_new(m, n_ctx > 0 && n_ctx < 4096 ? n_ctx : 4096, &err);
    buf msgs = {0}, reply = {0};
    size_t guarded_len = 0;
    char *guarded = lfm2c_guard_text(m, argv[2], strlen(argv[2]), &guarded_len);
    if (!smp || !s || !guarded) {
        fprintf(stderr, "chat: %s\n", err.code ? err.msg : "out of memory");
        goto done;
    }
    put(&msgs, "[", 1);
    put_message(&msgs, "user", guarded, guarded_len);
    for (int turn = 0; turn < MAX_TURNS; turn++) {
        put(&msgs, "]", 1); /* closed for the render, reopened after */
        char *prompt = lfm2c_chat_render(m, NULL, msgs.p, TOOLS, true, &err);
        msgs.p[--msgs.n] = 0;
        int n = 0, n_reused = 0;
        int32_t *ids = prompt ? lfm2c_tokenize_prompt(m, prompt, strlen(prompt), false, &n, &err) : NULL;
        free(prompt);
        int bad = !ids || lfm2c_session_sync(s, ids, n, &n_reused, &err) ||
                  lfm2c_session_decode(s, ids + n_reused, n - n_reused, LFM2C_LOGITS_LAST, &err);
        free(ids);
        if (bad) {
            fprintf(stderr, "chat: %s\n", err.msg);
            goto done;
        }
        printf("[turn %d: %d prompt tokens, %d reused]\n", turn + 1, n, n_reused);
        reply.n = 0;
        if (assistant_turn(m, s, smp, max_tokens, &reply, &err)) {
            fprintf(stderr, "\nchat: %s\n", err.msg);
            goto done;
        }
        char *calls = lfm2c_parse_tool_calls(reply.p ? reply.p : "", reply.n);
        if (!calls) {
            fprintf(stderr, "\nchat: out of memory\n");
            goto done;
        }
        printf("\n[parsed: %s]\n", calls);
        int has_calls = strstr(calls, "\"tool_calls\":[{") != NULL;
        free(calls);
        if (!has_calls) break;
        /* the stub tool answers every call the same way; a real program runs each call */
        put_message(&msgs, "assistant", reply.p, reply.n);
        const char *result = "{\"city\": \"Paris\", \"temperature_c\": 18, \"sky\": \"clear\"}";
        put_message(&msgs, "tool", result, strlen(result));
    }
    rc = 0;
done:
    free(guarded);
    free(msgs.p);
    free(reply.p);
    lfm2c_session_free(s);
    lfm2c_sampler_free(smp);
    lfm2c_model_free(m);
    return rc;
}
