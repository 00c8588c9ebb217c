/* cmd_run.c — `lfm2c run`: answer a prompt, printed as it is produced. The prompt is a user
 * message rendered with the model's chat template when the file has one (as ollama run and
 * llama.cpp's conversation mode do); --raw continues it as plain text. */
#include "cli.h"
#include "base/clock.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char USAGE[] =
    "usage: lfm2c run -m MODEL.gguf (-p PROMPT | -f FILE) [options]\n"
    "       lfm2c run MODEL [PROMPT] [options]   (MODEL: a .gguf file or a Hub repository ORG/NAME[:QUANT];\n"
    "                                             without a prompt: the interactive chat)\n"
    "  -n N               tokens to generate (default 256; -1 = until EOS or context end)\n"
    "  --temp T           temperature (0 = greedy)     --top-k K   --top-p P   --min-p M\n"
    "  --repeat-penalty R --repeat-last-n N            --seed S (default: random; -v prints it)\n"
    "  -c CTX             context size (default: prompt + n, at most the model's)\n"
    "  -t THREADS         --device " LFM2C_DEVICE_NAMES "     --reference (scalar float path)\n"
    "  -ctk / -ctv TYPE   KV cache types f16 (default), q8_0, f32 (--cache-type-k / -v)\n"
    "  --hugepages        always copy the weights into anonymous transparent huge pages\n"
    "  --no-hugepages     always map the file (default: copy when THP is on and RAM allows)\n"
    "  --no-bos           do not add BOS               --special  print special tokens\n"
    "  --ignore-eos       keep going past end-of-generation tokens\n" CLI_IMAGE_HELP CLI_AUDIO_HELP
    "  -v, --verbose      print speed (and drafted / accepted tokens) and what each LoRA adapter changes\n"
    "constrained output (one of them; not with speculative decoding):\n"
    "  -j, --json-schema SCHEMA  JSON valid against SCHEMA   --json-schema-file F  the schema from F\n"
    "  --regex R          raw text matching R as a whole    --choice S  one of the strings (repeatable)\n" CLI_LORA_HELP
    "speculative decoding (the output is the target's: token for token at --temp 0):\n"
    "  -md, --model-draft FILE  a smaller model with the same vocabulary drafts tokens\n"
    "  -hfd REPO[:QUANT]  the draft model from the Hugging Face Hub\n"
    "  --spec-lookup [N | A..B] prompt lookup: draft the continuation of the last N..1\n"
    "                     (or B..A) tokens' earlier occurrence in the context (default 3..1)\n"
    "  --draft-max N      most tokens drafted per step (16)   --draft-min N  drop shorter drafts (0)\n"
    "  --draft-p-min P    stop drafting where the draft model's top token is below P (0.75)\n"
    "  --draft-auto       each step drafts the length (0..draft-max) that yields most tokens per\n"
    "                     second, from measured costs and acceptance (default at --temp 0 only:\n"
    "                     above it a seed no longer fixes the text)   --draft-fixed  draft-max always\n"
    "the prompt is a user message rendered with the model's chat template when the file has one:\n"
    "  --raw              a plain completion: the prompt's text continued, no template\n"
    "  --chat             the template even where the file has none (the built-in LFM2 format)\n"
    "  --system TEXT      system message (implies --chat)\n"
    "  --chat-template-file F  template to use instead of the model's (implies --chat)\n"
    "Sampling defaults come from the model file, else Liquid's recommendation\n"
    "(temperature 0.1, top-k 50, repetition penalty 1.05).\n";

static int usage(void) {
    fputs(USAGE, stderr);
    return 2; /* a usage error (--help returns 0 itself) */
}

/* What run's options set. */
typedef struct run_opts {
    const char *model_path, *prompt, *prompt_file, *device, *system, *tmpl_path;
    int n_gen, n_ctx, threads;
    bool chat, raw, reference, no_bos, special, ignore_eos, verbose;
    cli_sampling samp;
    cli_spec spec;
    cli_images images;                        /* --mmproj, --image */
    cli_audio audio;                          /* --audio (with --mmproj) */
    const char *schema, *schema_file, *regex; /* constrained output */
    const char *choices[64];
    int n_choices;
} run_opts;

/* The command line into o: -1 to go on, else the exit code (0 after --help, 2 on an error). */
static int run_parse(int argc, char **argv, run_opts *o) {
    *o = (run_opts){.n_gen = 256, .samp = cli_sampling_init(), .spec = cli_spec_init()};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_sampling_flag(&o->samp, argc, argv, &i) || cli_spec_flag(&o->spec, argc, argv, &i)) continue;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) o->prompt = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) o->prompt_file = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) o->n_gen = cli_n_predict(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) o->n_ctx = cli_positive(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) o->threads = cli_threads(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--device")) o->device = cli_device(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--reference")) o->reference = true;
        else if (cli_kv_flag(argc, argv, &i) || cli_lora_flag(argc, argv, &i)) continue;
        else if (cli_image_flag(&o->images, argc, argv, &i) || cli_audio_flag(&o->audio, argc, argv, &i)) continue;
        else if (!strcmp(a, "--chat")) o->chat = true;
        else if (!strcmp(a, "--raw")) o->raw = true;
        else if (!strcmp(a, "--system") || !strcmp(a, "-sys")) {
            o->system = cli_value(argc, argv, &i);
            o->chat = true;
        } else if (!strcmp(a, "--chat-template-file")) {
            o->tmpl_path = cli_value(argc, argv, &i);
            o->chat = true;
        } else if (!strcmp(a, "--no-bos")) o->no_bos = true;
        else if (!strcmp(a, "--special")) o->special = true;
        else if (!strcmp(a, "--ignore-eos")) o->ignore_eos = true;
        else if (!strcmp(a, "-j") || !strcmp(a, "--json-schema")) o->schema = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--json-schema-file")) o->schema_file = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--regex")) o->regex = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--choice")) {
            if (o->n_choices == 64) return cli_fail("--choice: at most 64"), 2;
            o->choices[o->n_choices++] = cli_value(argc, argv, &i);
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) o->verbose = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(), 0;
        else return cli_unknown_option("run", a, USAGE);
    }
    if (!o->model_path)
        return cli_fail("run: no model given: lfm2c run MODEL, -m MODEL.gguf or -hf ORG/NAME[:QUANT]"), 2;
    if (!o->prompt == !o->prompt_file)
        return cli_fail("run: give one prompt: -p PROMPT or -f FILE (or lfm2c run MODEL PROMPT); 'lfm2c run --help' "
                        "lists the options"),
               2;
    if (o->raw && o->chat)
        return cli_fail("run: --raw (no template) cannot be combined with --chat, --system or --chat-template-file"), 2;
    if (o->n_ctx < 0) return cli_fail("-c must be positive");
    if (!!o->schema + !!o->schema_file + !!o->regex + (o->n_choices > 0) > 1)
        return cli_fail("run: give one of --json-schema, --json-schema-file, --regex or --choice"), 2;
    if ((o->schema || o->schema_file || o->regex || o->n_choices) && cli_spec_on(&o->spec))
        return cli_fail("run: constrained output cannot be combined with speculative decoding"), 2;
    return -1;
}

/* The output constraint the options ask for: 0 (and *c NULL when none), or 1 with the message
 * said. */
static int run_constraint(const run_opts *o, const lfm2c_model *m, lfm2c_constraint **c) {
    lfm2c_error err = {0};
    *c = NULL;
    if (o->schema_file) {
        char *text = cli_read_file(o->schema_file, NULL);
        if (!text) return 1;
        *c = lfm2c_constraint_schema(m, text, &err);
        free(text);
    } else if (o->schema) *c = lfm2c_constraint_schema(m, o->schema, &err);
    else if (o->regex) *c = lfm2c_constraint_regex(m, o->regex, strlen(o->regex), &err);
    else if (o->n_choices) *c = lfm2c_constraint_choices(m, o->choices, o->n_choices, &err);
    else return 0;
    return *c ? 0 : cli_fail("cannot constrain the output: %s", err.msg);
}

/* --chat: [system], user rendered with the template (which writes BOS itself); a new string, or
 * NULL with the message said. */
static char *run_render(const run_opts *o, lfm2c_model *m, const char *prompt, size_t len) {
    lfm2c_error err = {0};
    char *tmpl = o->tmpl_path ? cli_read_file(o->tmpl_path, NULL) : NULL;
    json_t *msgs = json_array();
    if (o->system) json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content", o->system));
    json_array_append_new(msgs, json_pack("{s:s, s:s%}", "role", "user", "content", prompt, len));
    char *mj = json_dumps(msgs, JSON_COMPACT);
    char *rendered = (tmpl || !o->tmpl_path) ? lfm2c_chat_render(m, tmpl, mj, NULL, true, &err) : NULL;
    free(mj);
    free(tmpl);
    json_decref(msgs);
    if (!rendered && err.code) cli_fail("%s", err.msg);
    return rendered;
}

/* The session's context: -c, else the prompt and the tokens asked for (up to the model's); 0
 * with the message said when it cannot hold the prompt. */
static int run_context(const run_opts *o, const lfm2c_model_info *in, int n_prompt) {
    if (o->n_ctx > in->n_ctx_train && in->n_ctx_train > 0)
        return cli_fail("-c %d is above the model's trained context of %d tokens", o->n_ctx, in->n_ctx_train), 0;
    int ctx = o->n_ctx ? o->n_ctx
                       : (o->n_gen < 0 ? in->n_ctx_train
                                       : n_prompt + (o->n_gen > 0 ? o->n_gen : 1)); /* -n 0: read the prompt only */
    if (ctx > in->n_ctx_train && !o->n_ctx) ctx = in->n_ctx_train;
    if (n_prompt >= ctx)
        return cli_fail("prompt is %d tokens, longer than the context of %d (raise -c)", n_prompt, ctx), 0;
    return ctx;
}

/* Reads the prompt, then writes tokens to stdout until -n, an end of generation or a full
 * context: 0, or 1 with the message said. */
static int run_generate(const run_opts *o, lfm2c_model *m, lfm2c_session *s, lfm2c_sampler *smp, lfm2c_spec *spec,
                        lfm2c_constraint *c, const int32_t *ids, const float *rows, int n_prompt, int ctx) {
    lfm2c_error err = {0};
    double t0 = lfm2c_now_s();
    if (lfm2c_session_decode_embd(s, ids, rows, n_prompt, LFM2C_LOGITS_LAST, &err)) return cli_fail("%s", err.msg);
    double t1 = lfm2c_now_s();
    lfm2c_detok dt;
    lfm2c_detok_init(&dt, o->special);
    char buf[1024];
    int produced = 0;
    cli_gen g;
    cli_gen_start(&g, s, smp, spec, ctx);
    while (o->n_gen < 0 || produced < o->n_gen) {
        int32_t tok;
        int r = cli_gen_next(&g, o->n_gen < 0 ? CLI_GEN_MAX : o->n_gen - produced, &tok, &err);
        if (r < 0) return cli_fail("%s", err.msg);
        if (r == 0) {
            fprintf(stderr, "\nlfm2c: the context of %d tokens is full: generation stopped (raise -c)\n", ctx);
            break;
        }
        if ((c || !o->ignore_eos) && lfm2c_token_is_eog(m, tok)) break;
        if (c && lfm2c_constraint_accept(c, tok, &err)) return cli_fail("%s", err.msg);
        int nb = lfm2c_detok_push(&dt, m, tok, buf, sizeof buf);
        fwrite(buf, 1, (size_t)(nb < (int)sizeof buf ? nb : (int)sizeof buf), stdout);
        fflush(stdout);
        produced++;
        if (c && lfm2c_constraint_done(c)) break; /* nothing may follow */
    }
    int nb = lfm2c_detok_flush(&dt, buf, sizeof buf);
    fwrite(buf, 1, (size_t)nb, stdout);
    printf("\n");
    double t2 = lfm2c_now_s();
    if (o->verbose)
        fprintf(stderr, "prompt: %d tokens in %.3f s (%.1f tok/s); generated: %d tokens in %.3f s (%.1f tok/s)\n",
                n_prompt, t1 - t0, n_prompt / (t1 - t0), produced, t2 - t1, produced / (t2 - t1 > 0 ? t2 - t1 : 1));
    if (o->verbose && spec) cli_spec_report(spec);
    return 0;
}

/* The --image or --audio files opened and encoded, a placeholder per image or clip put in front
 * of the prompt unless it places them itself: 0, or 1 with the message said. */
static int run_media(run_opts *o, lfm2c_model *m, const char **prompt, size_t *len, char **file_text) {
    if (o->audio.n_files && o->images.n_files)
        return cli_fail("--image and --audio together: a model sees (LFM2-VL) or hears (LFM2-Audio), not both");
    if (o->audio.n_files ? cli_audio_open(&o->audio, o->images.mmproj_path, m) : cli_image_open(&o->images, m))
        return 1;
    if (!o->images.n && !o->audio.n) return 0;
    size_t n = 0;
    char *t = o->audio.n ? cli_audio_text(&o->audio, *prompt, *len, &n)
                         : cli_image_text(&o->images, o->images.n, *prompt, *len, &n);
    if (!t) return cli_fail("out of memory");
    free(*file_text);
    *prompt = *file_text = t;
    *len = n;
    return 0;
}

/* -v with audio: its length, its encode time, the real-time factor of everything (`all` s). */
static void run_audio_report(const cli_audio *ca, double all) {
    fprintf(stderr,
            "audio: %.2f s heard, decoded and encoded in %.3f s; real-time factor %.3f (decoding to the last token: "
            "%.3f s)\n",
            ca->seconds, ca->encode_s, all / ca->seconds, all);
}

int cmd_run(int argc, char **argv) {
    run_opts o;
    int rc = run_parse(argc, argv, &o);
    if (rc >= 0) return rc;
    char *file_text = NULL;
    const char *prompt = o.prompt;
    size_t prompt_len = prompt ? strlen(prompt) : 0;
    if (o.prompt_file && !(file_text = cli_read_file(o.prompt_file, &prompt_len))) return 1;
    if (file_text) prompt = file_text;

    lfm2c_model *m = cli_open_model(o.model_path, o.threads, o.reference, o.device);
    if (!m) {
        free(file_text);
        return 1;
    }
    const lfm2c_model_info *in = lfm2c_model_get_info(m);
    lfm2c_error err = {0};
    lfm2c_session *s = NULL;
    lfm2c_sampler *smp = NULL;
    lfm2c_spec *spec = NULL;
    lfm2c_constraint *con = NULL;
    lfm2c_model *draft = NULL;
    int32_t *ids = NULL;
    float *rows = NULL;
    int n_prompt = 0, ctx = 0;
    rc = 1;
    const double t_start = lfm2c_now_s();
    if (run_media(&o, m, &prompt, &prompt_len, &file_text)) goto done;
    if (!o.raw && lfm2c_model_meta_str(m, "tokenizer.chat_template")) o.chat = true; /* the default */
    if (o.verbose)
        fprintf(stderr, "prompt: %s\n",
                o.chat  ? "a user message in the chat template (--raw: a plain completion)"
                : o.raw ? "plain text continued (--raw)"
                        : "plain text continued (the file has no chat template)");
    if (o.chat) {
        char *rendered = run_render(&o, m, prompt, prompt_len);
        if (!rendered) goto done;
        free(file_text);
        prompt = file_text = rendered;
        prompt_len = strlen(rendered);
        o.no_bos = true;
    }
    if (o.audio.n) { /* the text split at the markers, the clips' rows between (as libmtmd) */
        if (!(ids = cli_audio_ids(&o.audio, m, prompt, prompt_len, in->add_bos && !o.no_bos, &n_prompt, &rows)))
            goto done;
    } else if (!(ids = lfm2c_tokenize(m, prompt, prompt_len, in->add_bos && !o.no_bos, true, &n_prompt, &err))) {
        cli_fail("%s", err.msg);
        goto done;
    }
    if (n_prompt == 0) {
        cli_fail("empty prompt");
        goto done;
    }
    if (!o.audio.n && !(ids = cli_image_expand(&o.images, m, ids, &n_prompt, &rows))) goto done;
    if (!(ctx = run_context(&o, in, n_prompt))) goto done;
    if (!(s = lfm2c_session_new(m, ctx, &err))) {
        cli_fail("%s", err.msg);
        goto done;
    }
    cli_lora_verbose(o.verbose);
    if (cli_lora_attach(m, s)) goto done;
    lfm2c_sampler_params sp = cli_sampling_params(&o.samp, m);
    if (o.verbose) cli_sampling_report(&sp);
    if (!(smp = lfm2c_sampler_new(&sp, in->n_vocab))) {
        cli_fail("out of memory");
        goto done;
    }
    if (cli_spec_on(&o.spec) && !(spec = cli_spec_open(&o.spec, m, ctx, o.threads, o.device, sp.temperature, &draft)))
        goto done;
    if (run_constraint(&o, m, &con)) goto done;
    if (con) lfm2c_sampler_set_filter(smp, lfm2c_constraint_filter, con);
    rc = run_generate(&o, m, s, smp, spec, con, ids, rows, n_prompt, ctx) ? 1 : 0;
    if (!rc && o.verbose && o.audio.n) run_audio_report(&o.audio, lfm2c_now_s() - t_start);
done:
    free(rows);
    cli_image_close(&o.images);
    cli_audio_close(&o.audio);
    lfm2c_constraint_free(con);
    lfm2c_spec_free(spec);
    lfm2c_model_free(draft);
    lfm2c_sampler_free(smp);
    lfm2c_session_free(s);
    free(ids);
    free(file_text);
    cli_lora_forget();
    lfm2c_model_free(m);
    return rc;
}
