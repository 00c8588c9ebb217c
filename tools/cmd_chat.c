/* cmd_chat.c — `lfm2c chat`: multi-turn chat in the terminal. Each turn renders the whole
 * conversation with the model's chat template, then feeds only the tokens the session has not
 * seen (the conv state is checkpointed at every turn boundary, so a follow-up costs only its
 * new tokens). Slash commands (/help, /reset, /exit) are handled here, never sent to the model;
 * Ctrl-C stops the current reply, at the prompt it says how to leave and a second one leaves;
 * Ctrl-D or /exit leaves. A thinking model's <think> block (lfm2c_think) is shown dimmed on a
 * terminal (between <think> lines otherwise), kept out of the answer the conversation remembers,
 * and closed after --reasoning-budget tokens. */
#include "cli.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/os.h"
#include "line_edit.h"

#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ctype.h>
#include <errno.h>

static volatile sig_atomic_t interrupted;
static void on_sigint(void) { interrupted = 1; }


static const char USAGE[] =
    "usage: lfm2c chat -m MODEL.gguf [--system TEXT] [--tools tools.json] [options]\n"
    "  --chat-template-file F   use this Jinja template instead of the model's\n"
    "  -c CTX  -t THREADS  --temp T  --top-k K  --top-p P  --min-p M  --repeat-penalty R\n"
    "  --seed S (default: random; -v prints it)  -n N (max tokens per reply, default 1024)\n"
    "  --device " LFM2C_DEVICE_NAMES "  -v, --verbose\n"
    "  --reasoning-budget N  a thinking model's block is closed after N tokens (default: no limit)\n"
    "  (a thinking model's block is dimmed on a terminal; NO_COLOR=1 / CLICOLOR_FORCE=1 change that)\n"
    "  -ctk / -ctv TYPE  KV cache types f16 (default), q8_0, f32 (--cache-type-k / -v)\n"
    "  --hugepages        always copy the weights into anonymous transparent huge pages\n"
    "  --no-hugepages     always map the file (default: copy when THP is on and RAM allows)\n" CLI_LORA_HELP
        CLI_IMAGE_HELP "  -md FILE / -hfd REPO  a draft model (speculative decoding; same vocabulary)\n"
    "  --spec-lookup [N | A..B]  prompt lookup drafting   --draft-max N  --draft-min N  --draft-p-min P\n"
    "  --draft-auto / --draft-fixed  draft length chosen per step / always draft-max (auto at --temp 0)\n"
    "In the chat: /help lists the commands, /image PATH adds an image to the next message,\n"
    "/reset starts over, /exit (or Ctrl-D) leaves,\n"
    "Ctrl-C stops a reply (at the prompt: twice to leave).\n";

static int usage(void) {
    fputs(USAGE, stderr);
    return 2; /* a usage error (--help returns 0 itself) */
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

/* A user message with n_img images in front (their "<image>" placeholders, not guarded). */
static json_t *chat_msg_images(const lfm2c_model *m, const cli_images *ci, const char *text, int n_img) {
    json_t *j = chat_msg(m, "user", text);
    if (!n_img) return j;
    const char *c = json_string_value(json_object_get(j, "content"));
    size_t len = 0;
    char *t = cli_image_text(ci, n_img, c, strlen(c), &len);
    if (t) json_object_set_new(j, "content", json_stringn(t, len));
    free(t);
    return j;
}

/* What the command line asks for. */
typedef struct chat_opts {
    const char *model_path, *system, *tools_path, *tmpl_path, *device;
    int n_ctx, threads, max_reply;
    int think_budget; /* -1: no limit */
    cli_sampling samp;
    cli_spec spec;
    cli_images images; /* --mmproj, --image (and /image), for the next user message */
    bool verbose;
} chat_opts;

/* Reads the options; returns -1 to go on, else the exit status (--help: 0, a bad option: 2). */
static int parse_args(int argc, char **argv, chat_opts *o) {
    *o = (chat_opts){.max_reply = 1024, .think_budget = -1, .samp = cli_sampling_init(), .spec = cli_spec_init()};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_sampling_flag(&o->samp, argc, argv, &i)) continue;
        if (cli_spec_flag(&o->spec, argc, argv, &i)) continue;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--system") || !strcmp(a, "-sys")) o->system = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--tools")) o->tools_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--chat-template-file")) o->tmpl_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) o->n_ctx = cli_positive(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) o->threads = cli_threads(a, cli_value(argc, argv, &i));
        else if (cli_kv_flag(argc, argv, &i) || cli_lora_flag(argc, argv, &i)) continue;
        else if (cli_image_flag(&o->images, argc, argv, &i)) continue;
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict"))
            o->max_reply = cli_positive(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--reasoning-budget")) {
            o->think_budget = cli_int(a, cli_value(argc, argv, &i));
            if (o->think_budget < -1) return cli_fail("--reasoning-budget must be -1 (no limit) or >= 0"), 2;
        } else if (!strcmp(a, "--device")) o->device = cli_device(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) o->verbose = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(), 0;
        else return cli_unknown_option("chat", a, USAGE);
    }
    return -1;
}

/* The --tools file, checked to be a JSON array (NULL with a message when it is not). */
static char *read_tools(const char *path) {
    char *tools_json = cli_read_file(path, NULL);
    if (!tools_json) return NULL;
    json_error_t je;
    json_t *t = json_loads(tools_json, 0, &je);
    bool ok = t && json_is_array(t);
    json_decref(t);
    if (!ok) {
        free(tools_json);
        cli_fail("%s: not a JSON array of tools (%s)", path, je.text);
        return NULL;
    }
    return tools_json;
}

/* One conversation: the session, what its tokens stand for, and the messages so far. */
typedef struct chat {
    lfm2c_model *m;
    const lfm2c_model_info *in;
    lfm2c_session *s;
    lfm2c_sampler *smp;
    lfm2c_spec *spec; /* speculative decoding, or NULL */
    int ctx;
    const chat_opts *o;
    const char *tools_json, *tmpl;
    json_t *messages;
    char *session_text; /* the text the session's tokens stand for */
    size_t session_len;
    cli_images *im; /* the conversation's images, in order; the last `pending` not sent yet */
    int pending;
    bool color;  /* thinking dimmed (ANSI), else between <think> lines */
    bool opened; /* the prompt of this turn opened a thinking block */
} chat;

/* How the reply is being shown: the splitter over the displayed text, and where the display is. */
typedef struct shown {
    lfm2c_think think;
    int at; /* 0: nothing yet, 1: in the thinking, 2: in the answer */
} shown;

/* Shows a piece of the reply: its thinking dimmed (or between <think> lines), its answer plain. */
static void show(chat *ch, shown *sh, const char *s, size_t n, bool flush) {
    char th[1024 + LFM2C_THINK_HOLD], an[1024 + LFM2C_THINK_HOLD];
    size_t nt = 0, na = 0;
    if (flush) lfm2c_think_flush(&sh->think, th, &nt, an, &na);
    else lfm2c_think_push(&sh->think, s, n, th, &nt, an, &na);
    if (nt) {
        if (sh->at == 0) fputs(ch->color ? "\x1b[2m" : "<think>\n", stdout);
        sh->at = 1;
        fwrite(th, 1, nt, stdout);
    }
    if (na || (flush && sh->at == 1)) {
        if (sh->at == 1) fputs(ch->color ? "\x1b[0m\n\n" : "\n</think>\n", stdout);
        sh->at = 2;
        fwrite(an, 1, na, stdout);
    }
    fflush(stdout);
}

/* A reply split into its thinking and its answer (for the conversation; special tokens kept). */
static void split_reply(const char *reply, size_t len, bool opened, char **think, size_t *nt, char **answer,
                        size_t *na) {
    lfm2c_think t;
    lfm2c_think_init(&t, opened);
    *think = malloc(len + 2 * LFM2C_THINK_HOLD + 1);
    *answer = malloc(len + 2 * LFM2C_THINK_HOLD + 1);
    size_t a = 0, b = 0, c = 0, d = 0;
    if (!*think || !*answer) {
        *nt = *na = 0;
        return;
    }
    lfm2c_think_push(&t, reply, len, *think, &a, *answer, &b);
    lfm2c_think_flush(&t, *think + a, &c, *answer + b, &d);
    *nt = a + c;
    *na = b + d;
    (*think)[*nt] = (*answer)[*na] = 0;
}

/* The rendered conversation as tokens. The session's text (the last rendering plus the reply as
 * generated) is normally a prefix of the new rendering: then only the suffix is tokenized, so the
 * reply keeps the tokens it was generated with. Otherwise the whole rendering is tokenized and
 * lfm2c_session_sync finds the longest common token prefix. The template writes <|startoftext|>
 * itself, so no BOS is added. */
static int32_t *prompt_tokens(chat *ch, const char *prompt, int *n, lfm2c_error *err) {
    int past = lfm2c_session_n_past(ch->s);
    if (ch->im->n) past = 0; /* with images: the whole conversation, every placeholder expanded */
    size_t plen = strlen(prompt);
    if (past > 0 && ch->session_text && plen > ch->session_len && !memcmp(prompt, ch->session_text, ch->session_len)) {
        int n_new = 0;
        int32_t *ids = NULL, *tail = lfm2c_tokenize_prompt(ch->m, prompt + ch->session_len, plen - ch->session_len,
                                                           false, &n_new, err);
        if (tail && (ids = malloc(sizeof(int32_t) * (size_t)(past + n_new)))) {
            memcpy(ids, lfm2c_session_tokens(ch->s), sizeof(int32_t) * (size_t)past);
            memcpy(ids + past, tail, sizeof(int32_t) * (size_t)n_new);
            *n = past + n_new;
        }
        free(tail);
        if (ids) return ids;
    }
    return lfm2c_tokenize_prompt(ch->m, prompt, plen, false, n, err);
}

/* Streams one reply (complete UTF-8 characters) and returns its text with special tokens kept
 * (tool-call markers, for parsing); *stopped when Ctrl-C cut it. */
/* The reply as it grows: its text with special tokens kept, and what is shown. */
typedef struct reply_buf {
    char *p;
    size_t len, cap;
    lfm2c_detok dt;
    shown sh;
} reply_buf;

static void reply_add(chat *ch, reply_buf *rb, int32_t tok) {
    char buf[1024];
    int nb = lfm2c_token_to_bytes(ch->m, tok, true, buf, sizeof buf);
    if (nb > (int)sizeof buf) nb = sizeof buf;
    char *p = nb >= 0 ? lfm2c_grow(rb->p, &rb->cap, rb->len, (size_t)nb + 1, 1, 4096) : NULL;
    if (p) { /* out of memory: the reply kept for the history misses this token's text */
        rb->p = p;
        memcpy(rb->p + rb->len, buf, (size_t)nb);
        rb->len += (size_t)nb;
    }
    nb = lfm2c_detok_push(&rb->dt, ch->m, tok, buf, sizeof buf);
    show(ch, &rb->sh, buf, (size_t)(nb < (int)sizeof buf ? nb : (int)sizeof buf), false);
}

static char *generate_reply(chat *ch, size_t *len_out, int *produced, bool *stopped) {
    lfm2c_error err = {0};
    reply_buf rb = {.cap = 4096};
    rb.p = malloc(rb.cap);
    lfm2c_detok_init(&rb.dt, false);
    lfm2c_think_init(&rb.sh.think, ch->opened);
    int n_close = 0, in_block = 0, base = 0; /* base: tokens handed out before the source's (re)start */
    int32_t *close = lfm2c_tokenize(ch->m, LFM2C_THINK_CLOSE, strlen(LFM2C_THINK_CLOSE), false, true, &n_close, &err);
    bool closed = false;
    *produced = 0;
    *stopped = false;
    cli_gen g;
    cli_gen_start(&g, ch->s, ch->smp, ch->spec, ch->ctx - 1);
    while (*produced < ch->o->max_reply) {
        if (interrupted) {
            *stopped = true;
            break;
        }
        bool thinking = rb.sh.think.phase == LFM2C_THINK_IN;
        if (thinking && ch->o->think_budget >= 0 && in_block >= ch->o->think_budget && close && !closed) {
            /* the budget closes the block: the session takes the reply so far, then the close tag */
            closed = true;
            if (cli_gen_settle(&g, *produced - base, &err)) {
                cli_fail("%s", err.msg);
                break;
            }
            if (lfm2c_session_n_past(ch->s) + n_close >= ch->ctx - 1) break;
            if (lfm2c_session_decode(ch->s, close, n_close, LFM2C_LOGITS_LAST, &err)) {
                cli_fail("%s", err.msg);
                break;
            }
            for (int k = 0; k < n_close; k++) reply_add(ch, &rb, close[k]);
            *produced += n_close;
            base = *produced;
            cli_gen_start(&g, ch->s, ch->smp, ch->spec, ch->ctx - 1);
            continue;
        }
        int32_t tok;
        int r = cli_gen_next(&g, ch->o->max_reply - *produced, &tok, &err);
        if (r < 0) cli_fail("%s", err.msg);
        if (r <= 0 || lfm2c_token_is_eog(ch->m, tok)) break;
        in_block += thinking;
        reply_add(ch, &rb, tok);
        (*produced)++;
    }
    /* the session holds exactly the reply's tokens (drafted ones past it rolled back) */
    if (cli_gen_settle(&g, *produced - base, &err)) cli_fail("%s", err.msg);
    char buf[64];
    int nb = lfm2c_detok_flush(&rb.dt, buf, sizeof buf);
    show(ch, &rb.sh, buf, (size_t)nb, false);
    show(ch, &rb.sh, NULL, 0, true);
    free(close);
    printf(*stopped ? " [stopped]\n" : "\n");
    rb.p[rb.len] = 0;
    *len_out = rb.len;
    return rb.p;
}

/* Closes the turn in the session too, then remembers the conv state at this boundary. */
static void close_turn(chat *ch, const char *reply, size_t len) {
    lfm2c_error err = {0};
    int32_t end = ch->in->eos_id >= 0 ? ch->in->eos_id : 7;
    if (lfm2c_session_n_past(ch->s) < ch->ctx && lfm2c_session_decode(ch->s, &end, 1, LFM2C_LOGITS_NONE, &err) == 0) {
        lfm2c_session_checkpoint(ch->s);
        char endtxt[64];
        int ne = lfm2c_token_to_bytes(ch->m, end, true, endtxt, sizeof endtxt);
        ch->session_text = realloc(ch->session_text, ch->session_len + len + (size_t)ne + 1);
        memcpy(ch->session_text + ch->session_len, reply, len);
        memcpy(ch->session_text + ch->session_len + len, endtxt, (size_t)(ne < 64 ? ne : 0));
        ch->session_len += len + (size_t)(ne < 64 ? ne : 0);
    } else {
        ch->session_len = 0; /* state and text no longer agree: re-match on tokens next time */
    }
}

static void print_tool_calls(const char *reply, size_t len) {
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

static void drop_last_message(chat *ch) { json_array_remove(ch->messages, json_array_size(ch->messages) - 1); }

/* One user line: render, feed what the session lacks, reply. Returns false when the chat must end. */
static bool chat_turn(chat *ch, const char *line) {
    lfm2c_error err = {0};
    json_array_append_new(ch->messages, chat_msg_images(ch->m, ch->im, line, ch->pending));
    char *msgs = json_dumps(ch->messages, JSON_COMPACT);
    char *prompt = lfm2c_chat_render(ch->m, ch->tmpl, msgs, ch->tools_json, true, &err);
    free(msgs);
    if (!prompt) {
        cli_fail("%s", err.msg);
        drop_last_message(ch);
        return true;
    }
    int n = 0;
    int32_t *ids = prompt_tokens(ch, prompt, &n, &err);
    float *rows = NULL;
    if (!ids) {
        cli_fail("%s", err.msg);
        free(prompt);
        return true;
    }
    if (!(ids = cli_image_expand(ch->im, ch->m, ids, &n, &rows))) {
        free(prompt);
        drop_last_message(ch);
        return true;
    }
    ch->pending = 0;
    free(ch->session_text);
    ch->session_text = prompt;
    ch->session_len = strlen(prompt);
    size_t pl = ch->session_len, k = strlen(LFM2C_THINK_OPEN); /* did the template open a thinking block? */
    while (pl && strchr(" \t\r\n", prompt[pl - 1])) pl--;
    ch->opened = pl >= k && !memcmp(prompt + pl - k, LFM2C_THINK_OPEN, k);
    if (n + 1 >= ch->ctx) {
        cli_fail("the conversation (%d tokens) no longer fits in the context (%d); /reset to start over", n, ch->ctx);
        free(ids);
        free(rows);
        drop_last_message(ch);
        return true;
    }
    double t0 = lfm2c_now_s();
    int common = 0, skip = 0; /* the image rows before common are in the session already */
    if (lfm2c_session_sync(ch->s, ids, n, &common, &err) == 0)
        for (int i = 0; i < common; i++) skip += ids[i] < 0;
    if (err.code || lfm2c_session_decode_embd(ch->s, ids + common, rows ? rows + (size_t)skip * ch->in->n_embd : NULL,
                                              n - common, LFM2C_LOGITS_LAST, &err)) {
        cli_fail("%s", err.msg);
        free(ids);
        free(rows);
        return false;
    }
    free(rows);
    double t1 = lfm2c_now_s();
    int fed = n - common, produced = 0;
    free(ids);
    size_t len = 0;
    bool stopped = false;
    char *reply = generate_reply(ch, &len, &produced, &stopped);
    double t2 = lfm2c_now_s();
    close_turn(ch, reply, len);
    char *think = NULL, *answer = NULL;
    size_t nt = 0, na = 0;
    split_reply(reply, len, ch->opened, &think, &nt, &answer, &na);
    if (ch->tools_json && answer) print_tool_calls(answer, na);
    json_t *msg = json_pack("{s:s, s:s%}", "role", "assistant", "content", answer ? answer : reply, answer ? na : len);
    if (think && nt)
        json_object_set_new(msg, "thinking", json_stringn(think, nt)); /* the template decides if it is kept */
    json_array_append_new(ch->messages, msg);
    free(think);
    free(answer);
    free(reply);
    if (ch->o->verbose)
        fprintf(
            stderr,
            "[prompt: %d new tokens in %.2f s (%.1f tok/s); reply: %d tokens in %.2f s (%.1f tok/s); context %d/%d]\n",
            fed, t1 - t0, fed / (t1 - t0 > 0 ? t1 - t0 : 1), produced, t2 - t1, produced / (t2 - t1 > 0 ? t2 - t1 : 1),
            lfm2c_session_n_past(ch->s), ch->ctx);
    if (ch->o->verbose && ch->spec) cli_spec_report(ch->spec);
    return true;
}

/* /reset: the system message only, an empty session. */
static void chat_reset(chat *ch) {
    json_array_clear(ch->messages);
    if (ch->o->system) json_array_append_new(ch->messages, chat_msg(ch->m, "system", ch->o->system));
    lfm2c_session_reset(ch->s);
    ch->session_len = 0;
    cli_image_clear(ch->im);
    ch->pending = 0;
}

static const char CHAT_HELP[] =
    "commands (never sent to the model):\n"
    "  /help, /?          this list\n"
    "  /reset, /clear     forget the conversation (the system message stays)\n"
    "  /image PATH        an image for the next message (needs -mm / --mmproj)\n"
    "  /exit, /quit, /bye leave (also Ctrl-D, or Ctrl-C twice at the prompt)\n"
    "Ctrl-C stops a reply. A message that starts with '/' is sent as text when it starts with '//'\n"
    "(one '/' is dropped) or when its first word is a path such as /usr/bin.\n";

/* A slash command: '/' then letters (or "/?"), alone or before a space. "/usr/bin ..." is text. */
static bool is_command(const char *line) {
    if (line[0] != '/') return false;
    if (line[1] == '?') return !line[2] || isspace((unsigned char)line[2]);
    const char *p = line + 1;
    while (isalpha((unsigned char)*p)) p++;
    return p > line + 1 && (!*p || isspace((unsigned char)*p));
}

/* Handles a slash command; false when the chat must end. */
static bool chat_command(chat *ch, const char *line) {
    size_t n = strcspn(line, " \t");
#define IS(cmd) (n == strlen(cmd) && !strncmp(line, cmd, n))
    if (IS("/exit") || IS("/quit") || IS("/bye")) return false;
    if (IS("/help") || IS("/?")) fputs(CHAT_HELP, stdout);
    else if (IS("/image")) {
        const char *path = line + n + strspn(line + n, " \t");
        if (!*path) printf("usage: /image PATH\n");
        else if (cli_image_add(ch->im, path) == 0) {
            ch->pending++;
            printf("(image %d added to the next message)\n", ch->pending);
        }
    } else if (IS("/reset") || IS("/clear")) {
        chat_reset(ch);
        printf("(conversation reset%s)\n", ch->o->system ? "; the system message is kept" : "");
    } else
        printf("unknown command '%.*s' (/help lists them; start a message with '//' to send it as text)\n", (int)n,
               line);
#undef IS
    fflush(stdout);
    return true;
}

/* Reads lines until /exit, the end of input or a second Ctrl-C at the prompt. */
static void chat_loop(chat *ch) {
    bool tty = os_isatty(stdin) && os_isatty(stdout);
    os_on_interrupt(on_sigint); /* a Ctrl-C ends the wait for a line */
    if (tty)
        fprintf(stderr, "lfm2c chat — %s. /help for commands, /exit or Ctrl-D to leave.\n",
                ch->in->name[0] ? ch->in->name : ch->in->arch);
    bool go = true;
    int ctrl_c = 0; /* Ctrl-C at the prompt, in a row */
    while (go) {
        interrupted = 0;
        errno = 0;
        char *line = line_read(tty ? "> " : "", tty, &interrupted);
        if (!line) {
            if (!interrupted) break; /* end of input */
            clearerr(stdin);
            if (++ctrl_c >= 2) {
                fputc('\n', stderr);
                break;
            }
            fprintf(stderr, "\n(Ctrl-C again, Ctrl-D or /exit to leave)\n");
            continue;
        }
        ctrl_c = 0;
        if (is_command(line)) go = chat_command(ch, line);
        else if (*line) go = chat_turn(ch, line[0] == '/' && line[1] == '/' ? line + 1 : line);
        free(line);
    }
}

int cmd_chat(int argc, char **argv) {
    chat_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) return rc;
    if (!o.model_path)
        return cli_fail("chat: no model given: lfm2c chat MODEL, -m MODEL.gguf or -hf ORG/NAME[:QUANT]"), 2;
    char *tools_json = NULL, *tmpl = NULL;
    if (o.tools_path && !(tools_json = read_tools(o.tools_path))) return 1;
    if (o.tmpl_path && !(tmpl = cli_read_file(o.tmpl_path, NULL))) {
        free(tools_json);
        return 1;
    }
    lfm2c_model *m = cli_open_model(o.model_path, o.threads, false, o.device);
    if (!m) {
        free(tools_json);
        free(tmpl);
        return 1;
    }
    lfm2c_error err = {0};
    chat ch = {.m = m, .in = lfm2c_model_get_info(m), .o = &o, .tools_json = tools_json, .tmpl = tmpl, .im = &o.images};
    const char *force = getenv("CLICOLOR_FORCE"), *no = getenv("NO_COLOR");
    ch.color = (force && *force && strcmp(force, "0")) || (os_isatty(stdout) && !(no && *no));
    ch.ctx = o.n_ctx > 0 ? o.n_ctx : (ch.in->n_ctx_train < 8192 ? ch.in->n_ctx_train : 8192);
    ch.s = lfm2c_session_new(m, ch.ctx, &err);
    lfm2c_sampler_params sp = cli_sampling_params(&o.samp, m);
    if (o.verbose) cli_sampling_report(&sp);
    ch.smp = lfm2c_sampler_new(&sp, ch.in->n_vocab);
    lfm2c_model *draft = NULL;
    if (ch.s && ch.smp && cli_spec_on(&o.spec) &&
        !(ch.spec = cli_spec_open(&o.spec, m, ch.ctx, o.threads, o.device, sp.temperature, &draft))) {
        lfm2c_sampler_free(ch.smp);
        lfm2c_session_free(ch.s);
        lfm2c_model_free(m);
        free(tools_json);
        free(tmpl);
        return 1;
    }
    ch.messages = json_array();
    if (o.system) json_array_append_new(ch.messages, chat_msg(m, "system", o.system));
    rc = 0;
    cli_lora_verbose(o.verbose);
    if (!ch.s) rc = cli_fail("%s", err.msg);
    else if (cli_lora_attach(m, ch.s) || cli_image_open(&o.images, m)) rc = 1;
    ch.pending = o.images.n;
    if (!rc && ch.smp) chat_loop(&ch);
    free(ch.session_text);
    json_decref(ch.messages);
    lfm2c_spec_free(ch.spec);
    lfm2c_model_free(draft);
    lfm2c_sampler_free(ch.smp);
    lfm2c_session_free(ch.s);
    cli_lora_forget();
    cli_image_close(&o.images);
    lfm2c_model_free(m);
    free(tools_json);
    free(tmpl);
    return rc;
}
