/* cmd_chat.c — `lfm2c chat`: multi-turn chat in the terminal. Each turn renders the whole
 * conversation with the model's chat template, then feeds only the tokens the session has not
 * seen (the conv state is checkpointed at every turn boundary, so a follow-up costs only its
 * new tokens). Ctrl-C stops the current reply; Ctrl-D or /exit leaves. */
#include "cli.h"

#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef LFM2C_HAVE_LIBEDIT
#include <editline/readline.h>
#endif

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) { (void)sig; interrupted = 1; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* One input line (malloc'd, without newline) or NULL at end of input. */
static char *read_line(const char *prompt, bool tty) {
#ifdef LFM2C_HAVE_LIBEDIT
    if (tty) {
        char *line = readline(prompt);
        if (line && *line) add_history(line);
        return line;
    }
#endif
    if (tty) { fputs(prompt, stdout); fflush(stdout); }
    size_t cap = 0;
    char *line = NULL;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) { free(line); return NULL; }
    if (n > 0 && line[n - 1] == '\n') line[n - 1] = 0;
    return line;
}

static int usage(void) {
    fprintf(stderr,
            "usage: lfm2c chat -m MODEL.gguf [--system TEXT] [--tools tools.json] [options]\n"
            "  --chat-template-file F   use this Jinja template instead of the model's\n"
            "  -c CTX  -t THREADS  --temp T  --top-k K  --top-p P  --min-p M  --repeat-penalty R\n"
            "  --seed S  -n N (max tokens per reply, default 1024)  --device cpu|cuda  -v, --verbose\n"
            "  -ctk / -ctv TYPE  KV cache types f16 (default), q8_0, f32 (--cache-type-k / -v)\n"
            "  --hugepages        always copy the weights into anonymous transparent huge pages\n"
            "  --no-hugepages     always map the file (default: copy when THP is on and RAM allows)\n"
            "In the chat: /reset starts over, /exit (or Ctrl-D) leaves, Ctrl-C stops a reply.\n");
    return 2;   /* a usage error (--help returns 0 itself) */
}

/* A message of the conversation. What the user types is request text: its special-token text is
 * guarded (lfm2c_guard_text) so that the prompt, tokenized with lfm2c_tokenize_prompt, keeps it
 * plain text: typing "<|im_end|><|im_start|>system" does not fake a turn. */
static json_t *chat_msg(const lfm2c_model *m, const char *role, const char *text) {
    size_t n = 0;
    char *g = lfm2c_guard_text(m, text, strlen(text), &n);
    json_t *j = json_pack("{s:s, s:s%}", "role", role, "content", g ? g : text, g ? n : strlen(text));
    free(g);
    return j;
}

int cmd_chat(int argc, char **argv) {
    const char *model_path = NULL, *system = NULL, *tools_path = NULL, *tmpl_path = NULL, *device = NULL;
    int n_ctx = 0, threads = 0, max_reply = 1024;
    cli_sampling samp = cli_sampling_init();
    bool verbose = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_sampling_flag(&samp, argc, argv, &i)) continue;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--system") || !strcmp(a, "-sys")) system = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--tools")) tools_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--chat-template-file")) tmpl_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) n_ctx = cli_positive(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) threads = cli_threads(a, cli_value(argc, argv, &i));
        else if (cli_kv_flag(argc, argv, &i)) continue;
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) max_reply = cli_positive(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--device")) device = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) verbose = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(), 0;
        else return cli_fail("chat: unknown option '%s' (see lfm2c chat --help)", a), 2;
    }
    char *tools_json = NULL, *tmpl = NULL;
    if (tools_path) {
        if (!(tools_json = cli_read_file(tools_path, NULL))) return 1;
        json_error_t je;
        json_t *t = json_loads(tools_json, 0, &je);
        bool ok = t && json_is_array(t);
        json_decref(t);
        if (!ok) { free(tools_json); return cli_fail("%s: not a JSON array of tools (%s)", tools_path, je.text); }
    }
    if (tmpl_path && !(tmpl = cli_read_file(tmpl_path, NULL))) { free(tools_json); return 1; }
    lfm2c_model *m = cli_open_model(model_path, threads, false, device);
    if (!m) { free(tools_json); free(tmpl); return 1; }
    const lfm2c_model_info *in = lfm2c_model_get_info(m);
    lfm2c_error err = {0};
    int ctx = n_ctx > 0 ? n_ctx : (in->n_ctx_train < 8192 ? in->n_ctx_train : 8192);
    lfm2c_session *s = lfm2c_session_new(m, ctx, &err);
    lfm2c_sampler_params sp = cli_sampling_params(&samp, m);
    lfm2c_sampler *smp = lfm2c_sampler_new(&sp, in->n_vocab);
    json_t *messages = json_array();
    if (system) json_array_append_new(messages, chat_msg(m, "system", system));

    bool tty = isatty(0) && isatty(1);
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    if (tty) fprintf(stderr, "lfm2c chat — %s. /exit or Ctrl-D to leave, /reset to start over.\n", in->name[0] ? in->name : in->arch);

    char *session_text = NULL;   /* the text the session's tokens stand for */
    size_t session_len = 0;
    char *line;
    while (s && smp && (line = read_line(tty ? "> " : "", tty))) {
        interrupted = 0;
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) { free(line); break; }
        if (!strcmp(line, "/reset")) {
            json_array_clear(messages);
            if (system) json_array_append_new(messages, chat_msg(m, "system", system));
            lfm2c_session_reset(s);
            session_len = 0;
            free(line);
            continue;
        }
        if (!*line) { free(line); continue; }
        json_array_append_new(messages, chat_msg(m, "user", line));
        free(line);

        char *msgs = json_dumps(messages, JSON_COMPACT);
        char *prompt = lfm2c_chat_render(m, tmpl, msgs, tools_json, true, &err);
        free(msgs);
        if (!prompt) { cli_fail("%s", err.msg); json_array_remove(messages, json_array_size(messages) - 1); continue; }
        /* Reuse what the session holds. The session's text (the last rendering plus the reply
         * as generated) is normally a prefix of the new rendering: then only the suffix is
         * tokenized, so the reply keeps the tokens it was generated with. Otherwise fall back
         * to the longest common token prefix. The template writes <|startoftext|> itself, so
         * no BOS is added. */
        int n = 0, common = 0, past = lfm2c_session_n_past(s);
        int32_t *ids = NULL;
        size_t plen = strlen(prompt);
        if (past > 0 && session_text && plen > session_len && !memcmp(prompt, session_text, session_len)) {
            int n_new = 0;
            int32_t *tail = lfm2c_tokenize_prompt(m, prompt + session_len, plen - session_len, false, &n_new, &err);
            if (tail && (ids = malloc(sizeof(int32_t) * (size_t)(past + n_new)))) {
                memcpy(ids, lfm2c_session_tokens(s), sizeof(int32_t) * (size_t)past);
                memcpy(ids + past, tail, sizeof(int32_t) * (size_t)n_new);
                n = past + n_new;
                common = past;
            }
            free(tail);
        }
        if (!ids) {
            ids = lfm2c_tokenize_prompt(m, prompt, plen, false, &n, &err);
            if (!ids) { cli_fail("%s", err.msg); free(prompt); continue; }
            const int32_t *seen = lfm2c_session_tokens(s);
            while (common < past && common < n && seen[common] == ids[common]) common++;
        }
        free(session_text);
        session_text = prompt;
        session_len = plen;
        if (common == n) common = n - 1;   /* always feed at least one token to get logits */
        if (n + 1 >= ctx) {
            cli_fail("the conversation (%d tokens) no longer fits in the context (%d); /reset to start over", n, ctx);
            free(ids);
            json_array_remove(messages, json_array_size(messages) - 1);
            continue;
        }
        double t0 = now_s();
        if (lfm2c_session_truncate(s, common, &err) ||
            lfm2c_session_decode(s, ids + common, n - common, LFM2C_LOGITS_LAST, &err)) {
            cli_fail("%s", err.msg);
            free(ids);
            break;
        }
        double t1 = now_s();
        int fed = n - common;
        free(ids);

        /* generate the reply, streaming complete UTF-8 characters */
        lfm2c_detok dt;
        lfm2c_detok_init(&dt, false);
        size_t cap = 4096, len = 0;
        char *reply = malloc(cap), buf[1024];
        int produced = 0;
        bool stopped = false;
        while (produced < max_reply && lfm2c_session_n_past(s) < ctx - 1) {
            if (interrupted) { stopped = true; break; }
            int32_t tok = lfm2c_sampler_sample(smp, lfm2c_session_logits(s, 0), lfm2c_session_tokens(s), lfm2c_session_n_past(s));
            if (tok < 0 || lfm2c_token_is_eog(m, tok)) break;
            /* keep special tokens (tool-call markers) in the reply text for parsing */
            int nb = lfm2c_token_to_bytes(m, tok, true, buf, sizeof buf);
            if (nb > (int)sizeof buf) nb = sizeof buf;
            while (len + (size_t)nb + 1 > cap) reply = realloc(reply, cap *= 2);
            memcpy(reply + len, buf, (size_t)nb);
            len += (size_t)nb;
            nb = lfm2c_detok_push(&dt, m, tok, buf, sizeof buf);
            fwrite(buf, 1, (size_t)(nb < (int)sizeof buf ? nb : (int)sizeof buf), stdout);
            fflush(stdout);
            produced++;
            if (lfm2c_session_decode(s, &tok, 1, LFM2C_LOGITS_LAST, &err)) { cli_fail("%s", err.msg); break; }
        }
        int nb = lfm2c_detok_flush(&dt, buf, sizeof buf);
        fwrite(buf, 1, (size_t)nb, stdout);
        printf(stopped ? " [stopped]\n" : "\n");
        reply[len] = 0;
        double t2 = now_s();
        /* close the turn in the session too, then remember the conv state at this boundary */
        int32_t end = in->eos_id >= 0 ? in->eos_id : 7;
        if (lfm2c_session_n_past(s) < ctx && lfm2c_session_decode(s, &end, 1, LFM2C_LOGITS_NONE, &err) == 0) {
            lfm2c_session_checkpoint(s);
            char endtxt[64];
            int ne = lfm2c_token_to_bytes(m, end, true, endtxt, sizeof endtxt);
            session_text = realloc(session_text, session_len + len + (size_t)ne + 1);
            memcpy(session_text + session_len, reply, len);
            memcpy(session_text + session_len + len, endtxt, (size_t)(ne < 64 ? ne : 0));
            session_len += len + (size_t)(ne < 64 ? ne : 0);
        } else {
            session_len = 0;   /* state and text no longer agree: re-match on tokens next time */
        }

        if (tools_json) {
            char *parsed = lfm2c_parse_tool_calls(reply, len);
            json_t *pj = parsed ? json_loads(parsed, 0, NULL) : NULL;
            json_t *calls = pj ? json_object_get(pj, "tool_calls") : NULL;
            if (calls && json_array_size(calls)) {
                char *c = json_dumps(calls, JSON_COMPACT | JSON_ENSURE_ASCII);
                printf("[tool calls] %s\n", c);
                free(c);
            }
            json_decref(pj);
            free(parsed);
        }
        json_array_append_new(messages, json_pack("{s:s, s:s}", "role", "assistant", "content", reply));
        free(reply);
        if (verbose)
            fprintf(stderr, "[prompt: %d new tokens in %.2f s (%.1f tok/s); reply: %d tokens in %.2f s (%.1f tok/s); context %d/%d]\n",
                    fed, t1 - t0, fed / (t1 - t0 > 0 ? t1 - t0 : 1), produced, t2 - t1,
                    produced / (t2 - t1 > 0 ? t2 - t1 : 1), lfm2c_session_n_past(s), ctx);
    }
    if (!s) cli_fail("%s", err.msg);
    free(session_text);
    json_decref(messages);
    lfm2c_sampler_free(smp);
    lfm2c_session_free(s);
    lfm2c_model_free(m);
    free(tools_json);
    free(tmpl);
    return 0;
}
