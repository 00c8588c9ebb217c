/* cli.h — what the subcommands of the lfm2c program share: one entry point per command and
 * small argument helpers (tools/cli.c; the generation loop cli_gen.c, LoRA flags cli_lora.c).
 * Each command lives in tools/cmd_<name>.c; tools/lfm2c.c dispatches to them. */
#ifndef LFM2C_CLI_H
#define LFM2C_CLI_H
#include "lfm2c.h"
#include <stdbool.h>

#define CLI_COMMANDS(X) \
    X(run, "answer a prompt (the model's chat template; --raw: continue the text)") \
    X(transcribe, "an audio file's speech as text (LFM2-Audio)") \
    X(chat, "interactive multi-turn chat") \
    X(serve, "HTTP server of your models (OpenAI, Responses, Anthropic, Ollama APIs)") \
    X(ps, "models a running server has loaded") \
    X(stop, "unload a model from a running server") \
    X(logits, "write the logits at every position (float32)") \
    X(perplexity, "perplexity of a text; KL divergence against another quant's logits") \
    X(imatrix, "importance matrix of a text (llama-imatrix's GGUF and .dat files)") \
    X(embed, "one vector per text: a hidden state, pooled") \
    X(info, "architecture, layer plan, tensor types, memory") \
    X(tokenize, "text -> token ids") \
    X(detokenize, "token ids -> text") \
    X(template, "render a conversation with the model's chat template") \
    X(toolcalls, "parse tool calls out of model output") \
    X(bench, "prefill / decode speed (llama-bench style)") \
    X(synth, "write a random-weight model of a real architecture") \
    X(quantize, "requantize a GGUF") \
    X(convert, "Hugging Face checkpoint -> GGUF") \
    X(pull, "download a GGUF model from the Hugging Face Hub") \
    X(list, "models in the Hugging Face cache") \
    X(rm, "remove a model from the Hugging Face cache")

#define CLI_DECLARE(name, help) int cmd_##name(int argc, char **argv);
CLI_COMMANDS(CLI_DECLARE)
#undef CLI_DECLARE

/* -hf REPO[:QUANT] / -hff FILE / --hf-token / --offline / --revision / -hfd REPO[:QUANT] (the
 * draft model) / --no-mmproj on run, chat, serve, bench: pulls the models (exits on failure) and
 * returns argv with those replaced by "-m PATH" / "-md PATH", and "-mm PATH" where the repository
 * has an mmproj and the command (run, chat, serve) was given none (*model_path / *draft_path /
 * *mmproj_path: the malloc'd paths, NULL when not given; with neither, argv is returned as is). */
char **cli_hub_rewrite(int *argc, char **argv, char **model_path, char **draft_path, char **mmproj_path);

/* An unknown option of CMD: one line naming it, the closest option found in the command's usage
 * text ("did you mean ...?") and where the options are listed. Returns 2 (a usage error). */
int cli_unknown_option(const char *cmd, const char *arg, const char *usage_text);
/* The word of candidates (space-separated words; those of a usage text starting with '-', when
 * dashes) closest to word, within a few edits; NULL if none is close. Copied into out. */
const char *cli_closest(const char *word, const char *candidates, bool dashes, char *out, size_t cap);

/* Prints "lfm2c: <msg>" to stderr; returns 1 so commands can `return cli_fail(...)`. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Parses an int / float argument or exits with a clear message. */
int cli_int(const char *flag, const char *value);
/* -t: 0 (one thread per physical core) .. THREADPOOL_MAX_THREADS, else fails and exits */
int cli_threads(const char *flag, const char *value);
double cli_float(const char *flag, const char *value);
/* --device: a name lfm2c_device_from_name takes, else exits 2 with a message */
const char *cli_device(const char *flag, const char *value);
/* an integer >= 1 (-c, -b, ...) / >= -1 (-n: -1 = no limit), else exits 2 with a message */
int cli_positive(const char *flag, const char *value);
int cli_n_predict(const char *flag, const char *value);
/* argv[*i] is a flag that needs a value: returns argv[++*i] or exits with a message. */
const char *cli_value(int argc, char **argv, int *i);
/* Sampling flags shared by run and chat (--temp --top-k --top-p --min-p --repeat-penalty
 * --repeat-last-n --seed): parsed first, applied over the model's defaults once it is open. */
typedef struct cli_sampling {
    double temp, top_p, min_p, rep; /* NAN = not given */
    int top_k, rep_n;               /* -1 / -2 = not given */
    long long seed;                 /* -1 = not given or --seed -1: random, a new one each run */
} cli_sampling;
cli_sampling cli_sampling_init(void);
/* If argv[*i] is a sampling flag, consumes it (and its value) and returns true. */
bool cli_sampling_flag(cli_sampling *s, int argc, char **argv, int *i);
lfm2c_sampler_params cli_sampling_params(const cli_sampling *s, const lfm2c_model *m);
/* -v's line for the sampling in use: the seed (which --seed repeats) and the temperature. */
void cli_sampling_report(const lfm2c_sampler_params *p);
/* KV cache types: -ctk / -ctv / --cache-type-k / --cache-type-v f16|q8_0|f32 (llama.cpp's flags).
 * cli_kv_flag consumes one if argv[*i] is one; cli_open_model / cli_kv_apply use the types given,
 * else the command's default (F16; cli_kv_set_default changes it, e.g. F32 for `logits`).
 * cli_kv_flag also takes --hugepages / --no-hugepages (the weights always copied into anonymous
 * huge pages / always mapped; by default the library decides: lfm2c_model_params.hugepages). */
bool cli_kv_flag(int argc, char **argv, int *i);
int cli_kv_type(const char *flag, const char *value); /* a name, or fails and exits */
void cli_kv_set_default(int type_k, int type_v);
void cli_kv_apply(lfm2c_model_params *p);
void cli_kv_current(int *type_k, int *type_v); /* the types cli_kv_apply sets */
/* LoRA adapters (cli_lora.c): --lora PATH[:SCALE] (repeatable) and --lora-scaled PATH SCALE.
 * cli_lora_flag consumes one if argv[*i] is one; cli_lora_attach loads them for m (once per
 * model) and sets them on s, printing the library's error and returning 1 on failure;
 * cli_lora_forget frees them (call it before freeing their model). */
#define CLI_LORA_HELP \
    "  --lora PATH[:S]     LoRA adapter (PEFT folder or GGUF), scale S (default 1); repeatable\n" \
    "  --lora-scaled PATH S  the same with an explicit scale\n"
bool cli_lora_flag(int argc, char **argv, int *i);
int cli_lora_count(void);
int cli_lora_list(lfm2c_lora **los, float *scales); /* the loaded adapters and their scales; count */
int cli_lora_load(lfm2c_model *m);                  /* loads them now (attach does it when needed) */
int cli_lora_attach(lfm2c_model *m, lfm2c_session *s);
void cli_lora_forget(void);
/* -v: each adapter, once loaded, is described on stderr (the modules and layers it changes:
 * lfm2c_lora_describe). */
void cli_lora_verbose(bool on);
/* Prints "lfm2c: LoRA adapter NAME: <what it changes>" to stderr. */
void cli_lora_describe(const char *name, const lfm2c_lora *lo);
/* The build: its version, its git commit, and "COMMIT (lfm2c VERSION)" for bench's build line. */
const char *cli_build_version(void);
const char *cli_build_commit(void);
const char *cli_build_string(void);
/* Opens a model, printing the library's error on failure, and the device (cli_report_device). */
lfm2c_model *cli_open_model(const char *path, int n_threads, bool reference, const char *device);
/* On a device other than the CPU backend: its name on stderr, once a process, with a warning
 * where that device is the CPU itself (lavapipe), where --device cpu is much faster. */
void cli_report_device(const lfm2c_model *m);
/* a device name -> LFM2C_DEVICE_* (lfm2c_device_from_name); -1 (after cli_fail) for another name */
int cli_device_id(const char *name);
/* Parses "1,2,3" / "1 2 3" / "[1, 2, 3]" into a malloc'd id array; NULL + message on bad input. */
int32_t *cli_parse_ids(const char *s, int *n_out);
/* A progress bar on stderr when it is a terminal (nothing otherwise): "WHAT [####    ] done/total,
 * N s left" redrawn in place; cli_progress_end ends its line once one was drawn. */
void cli_progress(const char *what, long done, long total, double t_start);
void cli_progress_end(void);
/* One chunk of a text (cli_chunks.c): chunk[0..n_ctx) decoded by s (reset first) with the first
 * token replaced by BOS where m adds one, in passes of at most n_batch tokens; fn gets the logits
 * of every position j >= first_out, in order. 0, or -1 with err set. */
typedef void (*cli_chunk_row)(void *ud, int j, const float *logits);
int cli_chunk_eval(const lfm2c_model *m, lfm2c_session *s, const int32_t *chunk, int n_ctx, int n_batch, int first_out,
                   cli_chunk_row fn, void *ud, lfm2c_error *err);
/* Reads a whole file (binary); NULL + message on failure. Caller frees. */
char *cli_read_file(const char *path, size_t *len);

/* Speculative decoding on run / chat / bench (cli_gen.c): -md/--model-draft FILE, --draft-max N,
 * --draft-min N, --draft-p-min P, --spec-lookup [N | A..B], --draft-auto / --draft-fixed. */
typedef struct cli_spec {
    const char *draft_path;
    int draft_max, draft_min, lookup_min, lookup_max; /* lookup_max 0: no prompt lookup */
    double p_min, force_accept;                       /* force_accept < 0: off (bench only) */
    int draft_auto; /* 1 --draft-auto, 0 --draft-fixed, -1 neither: auto at temperature 0 only */
} cli_spec;
cli_spec cli_spec_init(void);
bool cli_spec_flag(cli_spec *s, int argc, char **argv, int *i);
bool cli_spec_on(const cli_spec *s);
/* Opens the draft model (if any) and the speculator for a sampler at temperature; NULL with a
 * message on failure. */
lfm2c_spec *cli_spec_open(const cli_spec *s, lfm2c_model *target, int n_ctx, int threads, const char *device,
                          float temperature, lfm2c_model **draft_out);
void cli_spec_report(const lfm2c_spec *sp); /* drafted / accepted to stderr (-v) */

/* A token source over a session whose last decode left the logits of the next token: plain
 * steps, or speculative steps when spec is set. A token i (from 0) comes out only while the
 * session would then hold fewer than `limit` tokens before it (run: the context size; chat: one
 * less, room for the end of turn). */
enum { CLI_GEN_MAX = 257 }; /* --draft-max 256 + 1 */
typedef struct cli_gen {
    lfm2c_session *s;
    lfm2c_sampler *smp;
    lfm2c_spec *spec;
    int limit, start, emitted;
    int32_t pend[CLI_GEN_MAX]; /* tokens out of the last step; pend[ip..np) not handed out yet */
    int np, ip;
} cli_gen;
void cli_gen_start(cli_gen *g, lfm2c_session *s, lfm2c_sampler *smp, lfm2c_spec *spec, int limit);
/* The next token in *tok (1), 0 when the context rule stops generation, -1 on error. `want`:
 * how many more tokens the caller may take (bounds a draft). */
int cli_gen_next(cli_gen *g, int want, int32_t *tok, lfm2c_error *err);
/* Makes the session hold exactly the first n_tokens handed out (after the start): rolls back
 * drafted tokens past them, feeds the ones not fed yet. */
int cli_gen_settle(cli_gen *g, int n_tokens, lfm2c_error *err);

/* Images (cli_image.c): -mm / --mmproj FILE and --image FILE (repeatable) for run and chat. */
enum { CLI_MAX_IMAGES = 16 };
#define CLI_IMAGE_HELP \
    "  -mm, --mmproj FILE a vision model's mmproj (LFM2-VL: the vision tower and projector); with\n" \
    "                     -hf the repository's mmproj*.gguf unless given one or --no-mmproj\n" \
    "  --image FILE       an image (JPEG, PNG, WebP, GIF) for the prompt; repeatable; needs --mmproj\n"
typedef struct cli_images {
    const char *mmproj_path;
    const char *files[CLI_MAX_IMAGES];
    int n_files;
    lfm2c_mmproj *mm;
    lfm2c_image *img[CLI_MAX_IMAGES]; /* encoded, in the order of the prompt's placeholders */
    int n;
} cli_images;
bool cli_image_flag(cli_images *ci, int argc, char **argv, int *i);
/* Opens the mmproj for m and encodes the --image files: 0, or 1 with the message said (an
 * image without --mmproj included). */
int cli_image_open(cli_images *ci, lfm2c_model *m);
int cli_image_add(cli_images *ci, const char *path); /* one more image: 0, or 1 said */
/* text with n_new "<image>" placeholders in front unless it has one itself (malloc'd). */
char *cli_image_text(const cli_images *ci, int n_new, const char *text, size_t len, size_t *out_len);
/* ids (taken) with every placeholder replaced by the images' tokens; *rows their rows (NULL
 * without images). NULL with the message said. */
int32_t *cli_image_expand(const cli_images *ci, const lfm2c_model *m, int32_t *ids, int *n, float **rows);
void cli_image_clear(cli_images *ci); /* forgets the images (keeps the mmproj) */
void cli_image_close(cli_images *ci);

/* Audio (cli_audio.c): --audio FILE (repeatable) for run, with -mm / --mmproj an LFM2-Audio
 * model's audio mmproj (the same flag as the images': a model hears or sees). */
enum { CLI_MAX_AUDIO = 16 };
#define CLI_AUDIO_HELP \
    "  --audio FILE       an audio clip (WAV, FLAC, MP3, Ogg Vorbis / Opus) for the prompt; repeatable;\n" \
    "                     needs --mmproj (an LFM2-Audio model's audio mmproj)\n"
typedef struct cli_audio {
    const char *files[CLI_MAX_AUDIO];
    int n_files;
    lfm2c_audio_mmproj *am;
    lfm2c_audio *clip[CLI_MAX_AUDIO];
    int n;
    double seconds, encode_s; /* the clips' length; the time decoding and encoding them took */
} cli_audio;
bool cli_audio_flag(cli_audio *ca, int argc, char **argv, int *i);
/* Opens the audio mmproj for m and encodes the --audio files (a progress bar on a terminal):
 * 0, or 1 with the message said. */
int cli_audio_open(cli_audio *ca, const char *mmproj_path, lfm2c_model *m);
/* text with a marker per clip in front unless it has one itself, as llama-mtmd-cli (malloc'd). */
char *cli_audio_text(const cli_audio *ca, const char *text, size_t len, size_t *out_len);
/* The rendered prompt's ids with the clips' rows (lfm2c_prompt_audio); NULL with the message said. */
int32_t *cli_audio_ids(const cli_audio *ca, const lfm2c_model *m, const char *text, size_t len, bool add_bos, int *n,
                       float **rows);
void cli_audio_close(cli_audio *ca);
#endif
