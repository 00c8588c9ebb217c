/* lfm2c.h — the one public header of liblfm2c, an inference engine for Liquid AI's LFM2 models.
 *
 * Flow: open a model (GGUF), create sessions (one per conversation: its own KV cache and conv
 * state), feed tokens, read logits, sample. Nothing here prints or exits: every fallible call
 * takes an lfm2c_error* and returns NULL / a negative value with err->msg set. A NULL handle (a
 * model, session, mmproj, image, adapter, sampler, constraint, speculator, detokenizer or
 * thinking state) is refused by every function: LFM2C_EINVAL where it takes err, else an empty
 * result (0, NULL, false, a zeroed struct) or nothing done.
 * A model may be shared by many sessions; decode calls on one model must not run concurrently
 * (the server's scheduler serializes them and batches sessions into one forward instead). */
#ifndef LFM2C_H
#define LFM2C_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ---------------------------------------------------------------------------- */
typedef struct lfm2c_error {
    int code;      /* 0 = ok, else one of LFM2C_E* */
    char msg[512]; /* one line naming the problem */
} lfm2c_error;

enum {
    LFM2C_OK = 0,
    LFM2C_EIO = 1,          /* file missing / unreadable */
    LFM2C_EFORMAT = 2,      /* not a GGUF, truncated, corrupt, bad shapes */
    LFM2C_EUNSUPPORTED = 3, /* unknown architecture / tensor type / feature */
    LFM2C_ENOMEM = 4,
    LFM2C_EINVAL = 5,   /* bad argument (token id out of range, …) */
    LFM2C_ECONTEXT = 6, /* would exceed the session's context */
    LFM2C_ECANCELLED = 7,
    LFM2C_ETOOLARGE = 8, /* an input over a limit (an image's bytes or pixels) */
};

/* ---- model ------------------------------------------------------------------------------ */
typedef struct lfm2c_model lfm2c_model;

typedef struct lfm2c_model_params {
    int n_threads;      /* 0 = one per physical core (affinity respected); at most 512 */
    bool reference;     /* plain scalar float path (dequantized weights, float activations) */
    int device;         /* LFM2C_DEVICE_CPU, _CUDA or _VULKAN (never chosen automatically) */
    bool no_populate;   /* do not map all weight pages at open (for inspection only) */
    int hugepages;      /* LFM2C_HUGEPAGES_AUTO (0, the default): the weights are copied into
                           anonymous memory in transparent huge pages when the kernel offers THP
                           (enabled: always or madvise) and MemAvailable exceeds the file by 1 GiB,
                           else mapped; _ON: always copied; _OFF: always mapped (page cache shared
                           between processes, madvised MADV_HUGEPAGE). RSS is the file's size
                           either way; the copy keeps decode off 4 KB pages when the page cache
                           is fragmented. CUDA models and no_populate opens map in AUTO. */
    int type_k, type_v; /* KV cache types of the sessions on the CPU: LFM2C_KV_* (0 = F16);
                           the CUDA backend keeps its own F32 cache and ignores them */
    /* Run on one thread pool with every other model opened so in this process (a server
     * holding several models): their forward passes take turns, first come first served, so a
     * pass of one waits at most for the others' current ones. The first such model sizes the
     * pool (n_threads); each model's own decode calls still must not run concurrently. */
    bool shared_threads;
} lfm2c_model_params;

enum { LFM2C_DEVICE_CPU = 0, LFM2C_DEVICE_CUDA = 1, LFM2C_DEVICE_VULKAN = 2 };
/* "cpu" / "cuda" / "vulkan" -> LFM2C_DEVICE_*, or -1; whether this build has that device's
 * backend is lfm2c_model_open's to say. */
int lfm2c_device_from_name(const char *name);
/* LFM2C_DEVICE_* -> "cpu" / "cuda" / "vulkan", or NULL for another value. */
const char *lfm2c_device_name(int device);
/* The names lfm2c_device_from_name takes, for help texts (a test checks each against it). */
#define LFM2C_DEVICE_NAMES "cpu|cuda|vulkan"
enum { LFM2C_HUGEPAGES_AUTO = 0, LFM2C_HUGEPAGES_ON = 1, LFM2C_HUGEPAGES_OFF = -1 };
enum { LFM2C_KV_F16 = 0, LFM2C_KV_F32 = 1, LFM2C_KV_Q8_0 = 2 };
/* "f16" / "f32" / "q8_0" -> LFM2C_KV_*, or -1 */
int lfm2c_kv_type_from_name(const char *name);
const char *lfm2c_kv_type_name(int type);
/* Bytes of CPU KV cache that n_tokens positions of one sequence take with the model's types. */
size_t lfm2c_kv_cache_bytes(const lfm2c_model *model, int n_tokens);
/* The GPU memory plan: what a CUDA card holds of the model for n_slots sequences of n_ctx
 * positions (the weights as stored, the KV cache, BF16 copies of the non-expert linears and of
 * the experts, docs/CUDA.md), as text in buf. free_bytes: the card's free memory, 0 for the CUDA
 * device's own (an error where there is none); cap_bytes: at most that (0: none). The KV cache is
 * F32 where the model's -ctk and -ctv both are, else F16. Returns the text's length, or -1. */
/* "80G", "80GB", "512M", "1073741824" -> bytes (K / M / G / T as powers of 1024, a fraction
 * allowed: "79.5G"); 0 for anything else. */
uint64_t lfm2c_parse_size(const char *s);
int lfm2c_memory_plan(const lfm2c_model *model, uint64_t free_bytes, uint64_t cap_bytes, int n_slots, int n_ctx,
                      char *buf, size_t cap, lfm2c_error *err);

lfm2c_model_params lfm2c_model_default_params(void);
lfm2c_model *lfm2c_model_open(const char *path, const lfm2c_model_params *params, lfm2c_error *err);
void lfm2c_model_free(lfm2c_model *model);

#define LFM2C_MAX_LAYERS 256

typedef struct lfm2c_model_info {
    char arch[32];  /* "lfm2" or "lfm2moe" */
    char name[128]; /* general.name, may be empty */
    int n_vocab, n_embd, n_layer, n_head, n_head_kv_max, head_dim, n_ctx_train;
    int n_ff; /* dense FFN width (from tensor shapes) */
    int n_expert, n_expert_used, n_ff_exp, n_dense_lead;
    int conv_l_cache;
    float rope_theta, norm_eps;
    bool is_attention[LFM2C_MAX_LAYERS];
    bool is_moe[LFM2C_MAX_LAYERS];
    int n_head_kv[LFM2C_MAX_LAYERS];
    int file_type;                /* general.file_type, -1 if absent */
    uint64_t n_params;            /* total parameters */
    uint64_t n_params_active;     /* parameters touched per token (MoE: only k experts) */
    uint64_t weight_bytes;        /* bytes of all tensors */
    uint64_t weight_bytes_active; /* bytes of weights read per decoded token */
    int bos_id, eos_id, pad_id;   /* -1 if absent */
    bool add_bos;
    /* sampling defaults carried by the file (general.sampling.*), NAN / -1 when absent */
    float def_temp, def_top_p, def_min_p, def_repeat_penalty;
    int def_top_k;
    bool weights_copied; /* the weights sit in an anonymous huge-page copy (see hugepages) */
    int weights_packed;  /* matrices rearranged in that copy into the kernels' interleaved layout */
} lfm2c_model_info;

const lfm2c_model_info *lfm2c_model_get_info(const lfm2c_model *model);
/* The device a model runs on: its LFM2C_DEVICE_*, a name ("CPU"; on Vulkan the driver's name
 * for the device, e.g. "AMD Radeon 780M" or "llvmpipe (LLVM 15.0.6, 256 bits)"; on CUDA the
 * GPU's, e.g. "NVIDIA H100 80GB HBM3"), and
 * is_cpu: the device is the CPU itself — the CPU backend, or a Vulkan driver that runs on the
 * CPU (lavapipe), where the CPU backend runs the same model much faster. */
typedef struct lfm2c_device_info {
    int device;
    char name[256];
    bool is_cpu;
} lfm2c_device_info;
lfm2c_device_info lfm2c_model_device(const lfm2c_model *model);
/* The name of a general.file_type (llama.cpp's ids: 15 -> "Q4_K_M", 0 -> "F32"); NULL if unknown. */
const char *lfm2c_file_type_name(int file_type);

/* Where decode spends its time: the weight products of the CPU backend's one-token forward
 * passes (decode of one sequence) since the model was opened, as wall seconds inside them and
 * bytes of weights they read. Against a clock around the steps (lfm2c bench) this gives the share of
 * decode time in the products and the rate the kernels stream at, to set beside the machine's
 * read bandwidth (build/membw); the rest is everything between products. Zero on the CUDA
 * backend. steps / solo_steps: the forward passes a thread pool of two or more threads timed
 * for its busy-machine check (each after one of the same size), and how many of them it ran on
 * the calling thread alone, having measured that faster while other processes held the cores
 * (on a quiet machine only a probe of that mode now and then, 5 steps, which loses).
 * device_seconds / device_passes: on the Vulkan backend, the time every forward pass (decode or
 * prefill) took on the device by its timestamp queries, and how many passes; zero where the
 * device has no timestamps and on the other backends. */
typedef struct lfm2c_decode_profile {
    double matmul_seconds, matmul_bytes;
    long matmul_calls; /* matmul jobs (one per product, or per group of independent ones) */
    long steps, solo_steps;
    double device_seconds;
    long device_passes;
} lfm2c_decode_profile;
lfm2c_decode_profile lfm2c_model_decode_profile(const lfm2c_model *model);
/* ---- the inputs of the weight products (importance matrices) -----------------------------------
 * A hook the forward calls with the input of each weight product just before the product: the
 * weight's GGUF name ("blk.3.ffn_up.weight"; the tied output head is "token_embd.weight"), which
 * of its n_mat matrices (an expert tensor, ffn_{gate,up,down}_exps: one call per expert that has
 * tokens, expert 0..n_mat-1, its rows those of the (token, expert) pairs routed to it; every other
 * weight: expert -1, n_mat 1), and the rows, n_rows of n_cols floats (the weight's input width):
 * row i at x + (rows ? rows[i] : i) * ld. They are the float activations, before the kernels
 * quantize them. It is called on the thread that decodes, inside lfm2c_session_decode /
 * lfm2c_decode_batch, once per product and forward pass (a long prompt runs in passes of at most
 * 512 tokens), in the forward's order; the pointers are valid during the call only, and it must
 * not call the library. The output head sees only the rows that want logits. `lfm2c imatrix`
 * collects importance matrices with it. CPU backend only (LFM2C_EUNSUPPORTED elsewhere); NULL
 * removes it; without a hook the forward does nothing more. */
typedef void (*lfm2c_matmul_hook)(void *user, const char *weight, int expert, int n_mat, const float *x, size_t ld,
                                  const int *rows, int n_rows, int n_cols);
int lfm2c_model_set_matmul_hook(lfm2c_model *model, lfm2c_matmul_hook hook, void *user, lfm2c_error *err);

/* ---- host memory: what running a model takes --------------------------------------------------
 * The estimate `lfm2c info` prints and the server's --memory-budget counts: the file (its
 * weights, mapped or copied: resident either way once loaded), the KV cache of n_seq sequences of
 * n_ctx positions at type_k / type_v, the per-sequence state (the conv columns, the token history,
 * up to ckpt_max checkpoints with ckpt_logits logits rows), the forward's buffers for passes of
 * n_batch tokens (at most the backend's pass size, 512 on the CPU), logits_rows logits rows per
 * sequence, and the rest (tokenizer tables, threads' stacks), estimated from the vocabulary. */
typedef struct lfm2c_memory_request {
    int n_ctx, n_seq, n_batch;
    int type_k, type_v;        /* LFM2C_KV_* */
    int ckpt_max, ckpt_logits; /* checkpoints kept per sequence; logits rows among them */
    int logits_rows;           /* logits rows per sequence (1: the last; a prompt's length: all) */
} lfm2c_memory_request;
typedef struct lfm2c_memory_need {
    uint64_t file, kv, state, scratch, logits, other;
    uint64_t total; /* the sum */
} lfm2c_memory_need;
/* n_ctx: a session's default (4096, or the training context when smaller), one sequence,
 * n_batch 512, the model's KV types, a session's default checkpoints (16, no logits), 1 row. */
lfm2c_memory_request lfm2c_memory_default_request(const lfm2c_model *model);
/* 0, or -1 (EINVAL) for a request out of range (a count below 0, an unknown KV type, q8_0 where
 * the head dimension is not a multiple of 32). */
int lfm2c_memory_estimate(const lfm2c_model *model, const lfm2c_memory_request *rq, lfm2c_memory_need *need,
                          lfm2c_error *err);
/* The estimate's total less the file, for n_seq sequences of n_ctx positions, the rest of the
 * request the default (the server's --memory-budget adds it to the file's size); 0 for sizes out
 * of range. */
uint64_t lfm2c_memory_need_bytes(const lfm2c_model *model, int n_ctx, int n_seq);

/* Number of tensors and a description of tensor i (name, type name, shape), for `info`. */
int lfm2c_model_n_tensors(const lfm2c_model *model);
void lfm2c_model_tensor_desc(const lfm2c_model *model, int i, const char **name, const char **type_name, int64_t ne[4],
                             int *n_dims, uint64_t *nbytes);
/* GGUF metadata string by key (e.g. "tokenizer.chat_template"), NULL if absent. */
const char *lfm2c_model_meta_str(const lfm2c_model *model, const char *key);
bool lfm2c_token_is_eog(const lfm2c_model *model, int32_t token);

/* ---- session: one sequence's state (attention KV cache + conv state + token history) ------ */
typedef struct lfm2c_session lfm2c_session;

lfm2c_session *lfm2c_session_new(lfm2c_model *model, int n_ctx, lfm2c_error *err);
void lfm2c_session_free(lfm2c_session *s);
int lfm2c_session_n_ctx(const lfm2c_session *s);
int lfm2c_session_n_past(const lfm2c_session *s);
const int32_t *lfm2c_session_tokens(const lfm2c_session *s); /* the n_past tokens fed so far */

enum { LFM2C_LOGITS_NONE = 0, LFM2C_LOGITS_LAST = 1, LFM2C_LOGITS_ALL = 2 };

/* Feed n tokens (a prompt as one batch, or one token while decoding). Returns 0 or -1. */
int lfm2c_session_decode(lfm2c_session *s, const int32_t *tokens, int n, int logits_mode, lfm2c_error *err);
/* Logits of the last decode: row i of the rows it produced (LAST: row 0 only). */
const float *lfm2c_session_logits(const lfm2c_session *s, int row);
int lfm2c_session_n_logits_rows(const lfm2c_session *s);

/* Forget everything (n_past = 0). */
void lfm2c_session_reset(lfm2c_session *s);
/* Keep the first n_keep tokens. Conv state cannot be rewound, so the session restores the
 * nearest checkpoint at or before n_keep and re-feeds the tokens after it. */
int lfm2c_session_truncate(lfm2c_session *s, int n_keep, lfm2c_error *err);
/* How many leading tokens of tokens[0..n) lfm2c_session_sync would keep: the position of the
 * newest checkpoint within the common prefix of the session's history and tokens, short of the
 * last token (whose logits must come out) -- or n, when the session keeps logits
 * (lfm2c_session_set_checkpoints) and holds a checkpoint with them after the whole of tokens.
 * Every token kept is one not computed again. Reads only. */
int lfm2c_session_reusable(const lfm2c_session *s, const int32_t *tokens, int n);
/* Prompt-prefix reuse: the session resumes at the point lfm2c_session_reusable names (its conv
 * checkpoint restored, the KV entries before it kept), dropping the rest of its history; with
 * nothing usable it is reset. *n_reused (may be NULL) gets the number of tokens kept: the caller
 * feeds tokens[*n_reused..n) next. When *n_reused == n, nothing is fed: lfm2c_session_logits(s, 0)
 * is already the row after the last token. Returns 0, or -1 with err set and the session reset. */
int lfm2c_session_sync(lfm2c_session *s, const int32_t *tokens, int n, int *n_reused, lfm2c_error *err);
/* Remember the conv state at the current position (cheap: 2 columns per conv layer); with logits
 * kept (lfm2c_session_set_checkpoints), also the logits row of the last token when the last
 * decode produced it. */
void lfm2c_session_checkpoint(lfm2c_session *s);
/* The checkpoint policy: one every `every` positions, taken inside the forward (and one after
 * each end-of-turn token) on backends that can (the CPU's; 0: only lfm2c_session_checkpoint's);
 * at most `max` per session, thinned so that the spacing grows with the distance from the newest
 * position; the newest `logits` explicit checkpoints keep their logits row (0: none). A new
 * session: every 0, max 16, logits 0. Memory: see lfm2c_session_checkpoint_usage. */
int lfm2c_session_set_checkpoints(lfm2c_session *s, int every, int max, int logits, lfm2c_error *err);
/* The checkpoints a session holds now and their bytes (conv states and logits rows). */
void lfm2c_session_checkpoint_usage(const lfm2c_session *s, int *count, size_t *bytes);
/* Make dst an exact copy of src (history, KV cache, conv state, checkpoints, last logits), so
 * several continuations of one prompt share its prefill. Same model; CPU sessions only. */
int lfm2c_session_copy(lfm2c_session *dst, const lfm2c_session *src, lfm2c_error *err);

/* Several sessions in ONE forward (continuous batching): item i feeds n[i] tokens to
 * sessions[i]. Answers equal those of separate decodes. */
int lfm2c_decode_batch(lfm2c_session **sessions, const int32_t *const *tokens, const int *n, const int *logits_mode,
                       int n_items, lfm2c_error *err);

/* ---- images (LFM2-VL): an mmproj, images encoded into rows, the prompt with them ----------------
 * A vision model is a language model plus an mmproj file (the vision tower and projector, as
 * llama.cpp writes it). lfm2c_image_encode decodes an image file's bytes (JPEG, PNG, WebP, the
 * first frame of a GIF; a format the build lacks is LFM2C_EUNSUPPORTED), checks its bytes and the
 * header's pixels against the limits before decoding (LFM2C_ETOOLARGE), resizes and tiles it as
 * the model's processor does and encodes it on the CPU into embedding rows, one per image
 * token. Its tokens (lfm2c_image_tokens) are what the prompt's image placeholder becomes: the
 * image start and end tokens, the tile markers, the thumbnail marker, and for each row an id
 * below 0 computed from the SHA-256 of the image's pixels, so that the session's history, and
 * prefix reuse (lfm2c_session_sync, which reuses a run of such ids whole or not at all), tell two
 * images apart however alike their placeholders. Decode such a
 * sequence with lfm2c_session_decode_embd / lfm2c_decode_batch_embd: each id below 0 takes the
 * next row of the item's rows (feeding a suffix: skip the rows of the ids below 0 before it).
 * CPU backend only for now (others: LFM2C_EUNSUPPORTED). */
typedef struct lfm2c_mmproj lfm2c_mmproj;
typedef struct lfm2c_image lfm2c_image;
typedef struct lfm2c_image_limits {
    size_t max_bytes;   /* the file (default 32 MiB) */
    int64_t max_pixels; /* width x height from its header (default 40 Mi) */
    int max_side;       /* default 16384 */
} lfm2c_image_limits;
lfm2c_image_limits lfm2c_image_default_limits(void);
/* Opens an mmproj for `model` (its projection must match the model's width; the model's
 * tokenizer must have the image tokens). The model outlives it. model NULL: only to describe
 * it (lfm2c_image_encode refuses). */
lfm2c_mmproj *lfm2c_mmproj_open(const char *path, const lfm2c_model *model, lfm2c_error *err);
void lfm2c_mmproj_free(lfm2c_mmproj *mm);
/* One line describing the mmproj (tower, patch, tokens, projector, tensor types); returns the
 * length it wanted (cut to cap). */
int lfm2c_mmproj_describe(const lfm2c_mmproj *mm, char *buf, size_t cap);
/* lim NULL: the defaults. Encodes on the mmproj's own threads (as many as the model's), one
 * image at a time: callers on several threads take turns. */
lfm2c_image *lfm2c_image_encode(lfm2c_mmproj *mm, const void *data, size_t n, const lfm2c_image_limits *lim,
                                lfm2c_error *err);
/* A memory budget an encode draws on (a server's request budget): before each stage allocates,
 * charge(user, bytes) is asked for what it will hold, each amount computed before the stage runs
 * (the decode's from the file's header, before a pixel is decoded: the pixels, the decoder's own
 * buffers or an EXIF turn's copy; then the resized tiles and thumbnail; the image's rows; the
 * encoder's buffers, once the mmproj's turn is the caller's): 0 to go on, non-zero to refuse (the
 * encode then fails, LFM2C_ENOMEM, nothing decoded past what was granted). release(user, bytes)
 * gives back what a stage freed; everything charged is released before the encode returns (the
 * image it returns holds its rows and tokens: the caller's to count). charge and release may be
 * NULL. max_rows > 0: an image of more rows than that (the context left for it), known from its
 * header, is refused before it is decoded (LFM2C_ECONTEXT). */
typedef struct lfm2c_image_budget {
    int (*charge)(void *user, size_t bytes);
    void (*release)(void *user, size_t bytes);
    void *user;
    int max_rows;
} lfm2c_image_budget;
/* lfm2c_image_encode within budget (NULL: none). */
lfm2c_image *lfm2c_image_encode_budget(lfm2c_mmproj *mm, const void *data, size_t n, const lfm2c_image_limits *lim,
                                       const lfm2c_image_budget *budget, lfm2c_error *err);
void lfm2c_image_free(lfm2c_image *img);
const int32_t *lfm2c_image_tokens(const lfm2c_image *img, int *n);  /* the placeholder's expansion */
const float *lfm2c_image_rows(const lfm2c_image *img, int *n_rows); /* n_rows x n_embd floats */
/* The image's source size, tile grid (0 x 0: one image) and its identity: the SHA-256 of the
 * width and height (32-bit little-endian each) and the decoded RGB pixels (any pointer may be NULL). */
void lfm2c_image_info(const lfm2c_image *img, int *w, int *h, int *cols, int *rows, unsigned char digest[32]);
/* The model's image placeholder token (the chat template's "<image>"), or -1 if none. */
int32_t lfm2c_image_placeholder(const lfm2c_model *model);
/* tokens[0..n) with the k-th placeholder replaced by images[k]'s tokens: *out (malloc'd, n_out
 * ids) and *rows (malloc'd, the images' rows in order; NULL without images). The count of
 * placeholders must equal n_images (LFM2C_EINVAL). */
int lfm2c_prompt_images(const lfm2c_model *model, const int32_t *tokens, int n, lfm2c_image *const *images,
                        int n_images, int32_t **out, int *n_out, float **rows, lfm2c_error *err);
/* As lfm2c_session_decode / lfm2c_decode_batch, with the items' embedding rows (see above). */
int lfm2c_session_decode_embd(lfm2c_session *s, const int32_t *tokens, const float *rows, int n, int logits_mode,
                              lfm2c_error *err);
int lfm2c_decode_batch_embd(lfm2c_session **sessions, const int32_t *const *tokens, const float *const *rows,
                            const int *n, const int *logits_mode, int n_items, lfm2c_error *err);

/* ---- embeddings --------------------------------------------------------------------------------
 * An embedding session's rows (the LFM2C_LOGITS_LAST / ALL rows of its decodes) are the final
 * RMSNorm's output, n_embd floats: the hidden state the output head reads, which it then skips.
 * lfm2c_session_embedding reads them (lfm2c_session_logits gives NULL for such a session). The
 * mode changes no state: a session may switch between embedding and generating and keep its
 * cache. CPU and Vulkan backends (LFM2C_EUNSUPPORTED on CUDA). */
int lfm2c_session_set_embeddings(lfm2c_session *s, bool on, lfm2c_error *err);
const float *lfm2c_session_embedding(const lfm2c_session *s, int row);

/* How lfm2c_embed makes one vector of a sequence: the last token's row (it has seen every
 * token: a causal model's summary), or the mean of every token's row. */
enum { LFM2C_POOL_LAST = 0, LFM2C_POOL_MEAN = 1 };
/* The embedding of tokens[0..n) (1 <= n <= the session's context) into out[0..n_embd): s is
 * reset and fed the tokens in chunks, pooled, scaled to unit length when normalize. s keeps the
 * tokens afterwards, and its mode (embedding or not) is what it was. Returns 0 or -1 (a vector
 * that is not finite, from weights that overflow, is LFM2C_EFORMAT). */
int lfm2c_embed(lfm2c_session *s, const int32_t *tokens, int n, int pooling, bool normalize, float *out,
                lfm2c_error *err);
/* Scales v[0..n) to unit Euclidean length (left as is when all zero). */
void lfm2c_embedding_normalize(float *v, int n);

/* ---- LoRA adapters ---------------------------------------------------------------------------
 * A LoRA adapter changes weight matrices by a low-rank update, W' = W + s B A, without touching
 * the model file: the CPU backend adds s B (A x) after each adapted product. An adapter is a PEFT
 * folder (adapter_config.json + adapter_model.safetensors, as PEFT / TRL / Unsloth save it) or a
 * GGUF adapter (llama.cpp's format; `lfm2c convert --lora-out` writes one). Adapted modules: conv
 * in/out projections, attention q/k/v/out, the FFN (w1/w2/w3) and the experts' w1/w2/w3.
 * s = user scale * alpha / r (alpha / sqrt(r) with use_rslora; PEFT's rank_pattern and
 * alpha_pattern per module; a GGUF adapter without alpha: 1). */
typedef struct lfm2c_lora lfm2c_lora;
#define LFM2C_MAX_LORA 8
/* Loads the adapter at path (a PEFT folder or a GGUF file) for model: every tensor must name a
 * module the model has, with the model's shapes, one rank per matrix (the config's, for PEFT)
 * and finite values, and every scale must be finite and at most 1e4 in size; otherwise NULL with
 * err naming the first problem (LFM2C_EFORMAT, LFM2C_EUNSUPPORTED for modules or features LoRA
 * here does not adapt: embeddings, lm_head, DoRA, biases). A GGUF adapter has A and B of each
 * matrix. A PEFT folder is read as PEFT loads it: the config's target_modules, exclude_modules,
 * layers_to_transform and layers_pattern say which modules carry LoRA (tensors of others are
 * ignored), a targeted module without tensors or with lora_A alone is unchanged, lora_B alone
 * is refused, and rank_pattern / alpha_pattern set ranks and alphas (Python regular expressions
 * in their common subset, compiled under a work budget; at most 4096 keys of 512 bytes). The
 * adapter does not hold the model but must only be used with it. */
lfm2c_lora *lfm2c_lora_load(const lfm2c_model *model, const char *path, lfm2c_error *err);
void lfm2c_lora_free(lfm2c_lora *lora);
int lfm2c_lora_n_matrices(const lfm2c_lora *lora); /* adapted (layer, module) matrices */
/* What the adapter changes, in one line: "N matrices", then per module its HF name, the layers
 * (ranges) and its rank and scale ("; self_attn.q_proj layers 0-2,5 (rank 8, scale 2)"), then
 * what a PEFT folder had that is not applied. Written as snprintf does (buf may be NULL with
 * cap 0); returns the length of the whole text, -1 when out of memory. */
int lfm2c_lora_describe(const lfm2c_lora *lora, char *buf, size_t cap);
/* The adapters (at most LFM2C_MAX_LORA, each with its user scale) the session's tokens run with
 * from now on; n = 0 removes them. Sessions with different adapters may share a batch
 * (lfm2c_decode_batch). A change of adapters resets the session (its cache was computed with the
 * old weights); setting the same list again keeps it. The adapters must outlive their use. CPU
 * backend only (LFM2C_EUNSUPPORTED elsewhere). A copied session (lfm2c_session_copy) keeps the
 * source's adapters. */
int lfm2c_session_set_lora(lfm2c_session *s, lfm2c_lora *const *loras, const float *scales, int n, lfm2c_error *err);

/* Exact rollback for speculative decoding. lfm2c_session_mark starts a conv trail at the
 * current position: the CPU forward then records, for each of the next n_ahead positions, what
 * the conv state needs (one column per conv layer), beside a copy of the state at the mark.
 * lfm2c_session_rollback(s, n_keep) then drops the tokens past n_keep: the KV entries past it
 * are forgotten (rewritten before anything reads them) and the conv state becomes exactly the
 * one after n_keep tokens, rebuilt from the trail without running the model. Past the trail's
 * n_ahead positions, or on a backend that keeps the conv state on a device (CUDA: no columns
 * are recorded), the state at the mark is restored and the kept tokens after it re-fed; before
 * the mark it falls back to lfm2c_session_truncate (checkpoint + re-feed). A mark holds until
 * the next mark, a reset, or a truncate/rollback before it. Both return 0 or -1. */
int lfm2c_session_mark(lfm2c_session *s, int n_ahead, lfm2c_error *err);
int lfm2c_session_rollback(lfm2c_session *s, int n_keep, lfm2c_error *err);

/* ---- audio (LFM2-Audio): an audio mmproj, clips encoded into rows, the prompt with them ------
 * An LFM2-Audio model is a language model plus an audio mmproj file (a FastConformer encoder
 * and its adapter, as llama.cpp writes it: projector type "lfm2a"). lfm2c_audio_encode decodes
 * an audio file's bytes (WAV, FLAC, MP3, Ogg Vorbis / Opus, where the build has libsndfile),
 * checks the limits from the header before decoding, down-mixes and resamples it to 16 kHz and
 * computes its log-mel features as llama.cpp's libmtmd does, and encodes them on the model's
 * backend (the CPU) into embedding rows, one per audio token (one per 80 ms). LFM2-Audio has no
 * audio marker tokens: the rows stand where the prompt's text has LFM2C_AUDIO_MARKER
 * (lfm2c_prompt_audio splits the text there and tokenizes each part as libmtmd does). A row's
 * id is below 0 and derived from the SHA-256 of the 16 kHz samples and its index, so the
 * session's history, and prefix reuse, tell two clips apart. Decode such a prompt with
 * lfm2c_session_decode_embd / lfm2c_decode_batch_embd. One clip is at most as many tokens as
 * the mmproj's audio code table has rows (llama.cpp's bound): about 5.5 minutes for
 * LFM2-Audio-1.5B; lfm2c_audio_limits bound it further. */
#define LFM2C_AUDIO_MARKER "<__media__>"
typedef struct lfm2c_audio_mmproj lfm2c_audio_mmproj;
typedef struct lfm2c_audio lfm2c_audio;
typedef struct lfm2c_audio_limits {
    size_t max_bytes;       /* of the file */
    double max_seconds;     /* the declared duration, read from the header before decoding */
    int max_channels;       /* declared channels */
    int min_rate, max_rate; /* declared sample rate, Hz */
    int64_t max_samples;    /* frames x channels decoded */
} lfm2c_audio_limits;
/* 64 MiB, 300 s, 8 channels, 1 kHz .. 384 kHz, 300 s of 48 kHz stereo */
lfm2c_audio_limits lfm2c_audio_default_limits(void);
/* What a file is, read from its header (the limits checked), and what encoding it costs. */
typedef struct lfm2c_audio_facts {
    int channels, rate;
    int64_t frames; /* as declared */
    double seconds;
    int n_tokens; /* audio tokens (rows) it becomes */
    size_t bytes; /* peak memory of decoding, resampling, features and encoding it (a budget's
                        charge) */
} lfm2c_audio_facts;
/* What an mmproj file is, read from its header alone (nothing loaded): LFM2C_MMPROJ_IMAGE (an
 * LFM2-VL vision tower: lfm2c_mmproj_open), LFM2C_MMPROJ_AUDIO (an LFM2-Audio encoder:
 * lfm2c_audio_mmproj_open), or -1 with err saying what it is instead (not a GGUF, not a clip
 * file, another projector type). The full checks are the opener's. */
enum { LFM2C_MMPROJ_IMAGE = 1, LFM2C_MMPROJ_AUDIO = 2 };
int lfm2c_mmproj_kind(const char *path, lfm2c_error *err);
/* Opens an audio mmproj for `model` (its projection must match the model's width; the model's
 * backend must run encoders: the CPU does). The model outlives it. model NULL: only to
 * describe it (lfm2c_audio_encode refuses). */
lfm2c_audio_mmproj *lfm2c_audio_mmproj_open(const char *path, const lfm2c_model *model, lfm2c_error *err);
void lfm2c_audio_mmproj_free(lfm2c_audio_mmproj *am);
/* One line describing the mmproj (encoder, features, adapter); returns snprintf's count. */
int lfm2c_audio_mmproj_describe(const lfm2c_audio_mmproj *am, char *buf, size_t cap);
/* The facts of an audio file from its header alone; 0, or -1 (LFM2C_ETOOLARGE over a limit,
 * LFM2C_EFORMAT not audio, LFM2C_EUNSUPPORTED no decoder in this build). lim NULL: defaults. */
int lfm2c_audio_probe(const lfm2c_audio_mmproj *am, const void *data, size_t n, const lfm2c_audio_limits *lim,
                      lfm2c_audio_facts *out, lfm2c_error *err);
/* Decodes and encodes a file (lim NULL: the defaults) on the mmproj's own threads (as many as
 * the model's), one clip at a time: callers on several threads take turns. progress (may be
 * NULL) is called with the fraction done. */
lfm2c_audio *lfm2c_audio_encode(lfm2c_audio_mmproj *am, const void *data, size_t n, const lfm2c_audio_limits *lim,
                                void (*progress)(void *ud, double done), void *ud, lfm2c_error *err);
/* The same from samples: `frames` frames of `channels` interleaved floats at `rate` Hz. */
lfm2c_audio *lfm2c_audio_encode_pcm(lfm2c_audio_mmproj *am, const float *x, int64_t frames, int channels, int rate,
                                    lfm2c_error *err);
void lfm2c_audio_free(lfm2c_audio *a);
const int32_t *lfm2c_audio_tokens(const lfm2c_audio *a, int *n);  /* the marker's expansion: the row ids */
const float *lfm2c_audio_rows(const lfm2c_audio *a, int *n_rows); /* n_rows x n_embd floats */
/* The clip's length in seconds and the SHA-256 (64 hex digits) of its 16 kHz samples. */
double lfm2c_audio_seconds(const lfm2c_audio *a);
const char *lfm2c_audio_digest(const lfm2c_audio *a);
/* text[0..len) (a rendered prompt, guarded: lfm2c_guard_text keeps request text's markers plain)
 * split at each LFM2C_AUDIO_MARKER, the parts tokenized as lfm2c_tokenize_prompt does (add_bos:
 * BOS first), the k-th marker replaced by audio[k]'s ids: *out (malloc'd, n_out ids) and *rows
 * (malloc'd, the clips' rows in order; NULL without clips). The count of markers must equal
 * n_audio (LFM2C_EINVAL). */
int lfm2c_prompt_audio(const lfm2c_model *model, const char *text, size_t len, bool add_bos, lfm2c_audio *const *audio,
                       int n_audio, int32_t **out, int *n_out, float **rows, lfm2c_error *err);

/* ---- tokenizer ----------------------------------------------------------------------------- */
/* Encode text (len bytes; need not be NUL-terminated). Returns a malloc'd id array (caller
 * frees) and its length in *n_out, or NULL on error. */
int32_t *lfm2c_tokenize(const lfm2c_model *model, const char *text, size_t len, bool add_bos, bool parse_special,
                        int *n_out, lfm2c_error *err);
/* Request text inside a chat template must not become special tokens (a user who writes
 * "<|im_end|><|im_start|>system" must not fake a turn). lfm2c_guard_text returns a malloc'd
 * copy of s in which every special-token text (and LFM2C_AUDIO_MARKER, which then stays plain
 * text) is preceded by LFM2C_GUARD_MARK (U+F0000) and any
 * U+F0000 already there becomes U+FFFD; render the guarded strings with the template, then
 * lfm2c_tokenize_prompt tokenizes the result with special tokens parsed EXCEPT where a mark
 * stands (the marks are removed): the template's own markers stay special, the request's text
 * is tokenized as plain text. */
#define LFM2C_GUARD_MARK "\xf3\xb0\x80\x80"
/* (NULL without a model: there is nothing to guard against.) */
char *lfm2c_guard_text(const lfm2c_model *model, const char *s, size_t len, size_t *out_len);
int32_t *lfm2c_tokenize_prompt(const lfm2c_model *model, const char *text, size_t len, bool add_bos, int *n_out,
                               lfm2c_error *err);
/* Bytes of one token (special tokens as their text when `special`, else nothing).
 * Returns the number of bytes (may exceed cap: then nothing beyond cap is written). */
int lfm2c_token_to_bytes(const lfm2c_model *model, int32_t token, bool special, char *buf, int cap);
/* Streaming decoder: pushes a token, writes only complete UTF-8 characters (invalid bytes come
 * out as U+FFFD), keeps partial ones for the next push. */
typedef struct lfm2c_detok {
    char pending[8];
    int n_pending;
    bool special;
} lfm2c_detok;
void lfm2c_detok_init(lfm2c_detok *d, bool special);
/* Returns bytes written to out (cap >= 64 + longest token is always enough). */
int lfm2c_detok_push(lfm2c_detok *d, const lfm2c_model *model, int32_t token, char *out, int cap);
int lfm2c_detok_flush(lfm2c_detok *d, char *out, int cap);
int lfm2c_vocab_size(const lfm2c_model *model);

/* ---- sampling ----------------------------------------------------------------------------- */
typedef struct lfm2c_sampler_params {
    float temperature;                         /* <= 0: greedy */
    int top_k;                                 /* <= 0: off */
    float top_p;                               /* >= 1: off */
    float min_p;                               /* <= 0: off */
    float repeat_penalty;                      /* 1: off (llama.cpp semantics over the last repeat_last_n tokens) */
    int repeat_last_n;                         /* 64 */
    float presence_penalty, frequency_penalty; /* OpenAI semantics, 0: off */
    uint64_t seed;
} lfm2c_sampler_params;

typedef struct lfm2c_sampler lfm2c_sampler;
lfm2c_sampler_params lfm2c_sampler_default_params(void);
/* Defaults: the file's general.sampling.* when present, else Liquid's recommendation. */
lfm2c_sampler_params lfm2c_sampler_params_for_model(const lfm2c_model *model);
lfm2c_sampler *lfm2c_sampler_new(const lfm2c_sampler_params *p, int n_vocab);
void lfm2c_sampler_free(lfm2c_sampler *s);
/* Sample from logits (not modified). history = tokens seen so far (for penalties). Returns -1
 * when no token is left (logit_bias / the filter excluded every one), LFM2C_SAMPLE_NOT_FINITE
 * when the logits hold NaN or +infinity (a model's or an adapter's weights overflow: no token
 * drawn from them would mean anything). */
#define LFM2C_SAMPLE_NOT_FINITE (-2)
int32_t lfm2c_sampler_sample(lfm2c_sampler *s, const float *logits, const int32_t *history, int n_history);
/* Optional per-token additive bias (OpenAI logit_bias); NULL clears. Copied. */
void lfm2c_sampler_set_logit_bias(lfm2c_sampler *s, const float *bias);
/* Optional mask hook (constrained decoding): called with the logits copy before sampling;
 * it sets disallowed entries to -INFINITY. */
typedef void (*lfm2c_logits_filter)(void *user, float *logits, int n_vocab);
void lfm2c_sampler_set_filter(lfm2c_sampler *s, lfm2c_logits_filter f, void *user);

/* ---- constrained output ------------------------------------------------------------------ */
/* The output held to a JSON schema (the subset `lfm2c serve` enforces, docs/SERVING.md), to a
 * regular expression matched as a whole (raw text), or to one of a list of strings: the server's
 * token mask, for a program's own loop. Each step: mask the logits (lfm2c_constraint_mask, or
 * hand lfm2c_constraint_filter to lfm2c_sampler_set_filter), sample, feed the token back with
 * lfm2c_constraint_accept; stop at an end-of-generation token or once lfm2c_constraint_done.
 * End-of-generation tokens are allowed only where the output may end. Not for speculative
 * decoding (see there). A constraint belongs to one output at a time (lfm2c_constraint_reset
 * starts the next). */
typedef struct lfm2c_constraint lfm2c_constraint;
lfm2c_constraint *lfm2c_constraint_schema(const lfm2c_model *model, const char *schema_json, lfm2c_error *err);
lfm2c_constraint *lfm2c_constraint_regex(const lfm2c_model *model, const char *regex, size_t len, lfm2c_error *err);
lfm2c_constraint *lfm2c_constraint_choices(const lfm2c_model *model, const char *const *choices, int n,
                                           lfm2c_error *err);
void lfm2c_constraint_free(lfm2c_constraint *c);
/* Sets the logits of the tokens not allowed next to -INFINITY; returns how many are allowed. */
int lfm2c_constraint_mask(lfm2c_constraint *c, float *logits, int n_vocab);
/* lfm2c_constraint_mask as a sampler filter hook (user: the constraint). */
void lfm2c_constraint_filter(void *c, float *logits, int n_vocab);
/* Feeds the token chosen; LFM2C_EINVAL (nothing changed) when it is not allowed here. */
int lfm2c_constraint_accept(lfm2c_constraint *c, int32_t token, lfm2c_error *err);
/* The output is complete: nothing may follow, or an end-of-generation token was accepted. */
bool lfm2c_constraint_done(const lfm2c_constraint *c);
void lfm2c_constraint_reset(lfm2c_constraint *c);

/* ---- speculative decoding -------------------------------------------------------------- */
/* A drafter proposes tokens; the target verifies them all in one forward over k+1 tokens of its
 * session (the batched prefill path) and keeps the longest accepted run, rolling back exactly
 * (lfm2c_session_rollback). Two drafters behind one loop: a draft model (a second, smaller
 * lfm2c model with the same vocabulary), or prompt lookup (the continuation of the most recent
 * earlier occurrence of the context's last n tokens; no second model).
 * Exact: at temperature 0 the output is token for token the target's greedy output; above it,
 * a drafted token d is accepted with probability min(1, p(d) / q(d)) (p: the target sampler's
 * distribution, q: the drafter's; a lookup draft has q(d) = 1), a rejected one replaced by a
 * draw from max(0, p - q) renormalised: every token out is distributed as the target's sampler
 * would draw it (the RNG is consumed differently, so a seed gives another, equally likely text).
 * A sampler with a filter hook (constrained decoding) must not be used: the filter would see
 * tokens that are later rejected. */
typedef struct lfm2c_spec_params {
    int draft_max;              /* most tokens drafted per step (16; llama.cpp's --draft-max) */
    int draft_min;              /* a draft shorter than this is dropped: plain decode (0) */
    float draft_p_min;          /* draft model: stop drafting where the draft model's most likely
                            next token has a probability (softmax of its logits) below this (0.75) */
    int lookup_min, lookup_max; /* prompt lookup: n-gram sizes tried, longest first; 0 0 = off
                            (a draft model, when given, is used instead) */
    float force_accept;         /* benchmarks only: < 0 (default) off; a in [0, 1]: accept each drafted
                            token with probability a whatever the models say (output is then NOT
                            the target's), to measure what an acceptance rate buys; prompt
                            lookup then drafts draft_max tokens every step (padding a short or
                            missing match), to measure a drafter that costs nothing */
    uint64_t seed;              /* force_accept's RNG */
    bool draft_auto;            /* lfm2c_spec_step: each step drafts the k in 0..draft_max that
                            yields most tokens per second, from the measured cost of the target's
                            forward over k+1 tokens, of a drafted token, and the acceptance so
                            far (false: draft_max every step). At temperature 0 it changes no
                            token; above it the text stays distributed as the target's, but a
                            seed no longer fixes it (k depends on timings). The server's
                            batched verification ignores it */
} lfm2c_spec_params;
lfm2c_spec_params lfm2c_spec_default_params(void);

typedef struct lfm2c_spec lfm2c_spec;
/* A speculator for sessions of `target` (n_ctx: their context, for the draft model's session).
 * draft: a draft model, or NULL for prompt lookup (then lookup_max >= lookup_min >= 1 needed).
 * Fails (LFM2C_EINVAL) when the draft's vocabulary differs from the target's. The draft model
 * must outlive the speculator; one speculator serves one sequence at a time (it keeps the draft
 * model's session in step with the target's history, re-syncing by common prefix). */
lfm2c_spec *lfm2c_spec_new(lfm2c_model *target, lfm2c_model *draft, int n_ctx, const lfm2c_spec_params *p,
                           lfm2c_error *err);
void lfm2c_spec_free(lfm2c_spec *sp);
/* One step: `last` is the token just chosen and not yet fed to s (s's last decode gave the
 * logits it was sampled from). Drafts up to min(draft_max, max_out - 1) tokens, feeds last and
 * the draft in one forward, and writes to out the accepted drafted tokens and one more token
 * from the target (1 to k+1 tokens, at most max_out). s then holds last and the accepted
 * tokens; the final token of out is the next `last`. The caller stops at an end-of-generation
 * token among them. Returns the number written, or -1 (err set; LFM2C_ECONTEXT when s cannot
 * take `last`). */
int lfm2c_spec_step(lfm2c_spec *sp, lfm2c_session *s, lfm2c_sampler *smp, int32_t last, int32_t *out, int max_out,
                    lfm2c_error *err);
/* The same step in two halves, for a caller that runs the forward itself (the server puts the
 * verification of several sessions in one lfm2c_decode_batch): lfm2c_spec_draft writes up to
 * max drafted tokens to draft and marks s (lfm2c_session_mark); the caller then feeds
 * last, draft[0..k) to s with LFM2C_LOGITS_ALL, and lfm2c_spec_accept reads the k+1 logits rows,
 * writes 1..k+1 tokens to out and rolls s back to last + the accepted tokens. */
int lfm2c_spec_draft(lfm2c_spec *sp, lfm2c_session *s, lfm2c_sampler *smp, int32_t last, int32_t *draft, int max,
                     lfm2c_error *err);
int lfm2c_spec_accept(lfm2c_spec *sp, lfm2c_session *s, lfm2c_sampler *smp, const int32_t *draft, int k, int32_t *out,
                      lfm2c_error *err);
/* lfm2c_spec_draft for n sequences at once (the server's slots): item i drafts up to max[i]
 * tokens after last[i] into drafts[i], their number in k[i]. Speculators with the same draft
 * model draft together, one forward of the draft model per drafted position for all of them.
 * Returns 0, or -1 (err set, every k[i] 0). */
int lfm2c_spec_draft_batch(lfm2c_spec *const *sps, lfm2c_session *const *ss, lfm2c_sampler *const *smps,
                           const int32_t *last, int32_t *const *drafts, const int *max, int *k, int n,
                           lfm2c_error *err);
/* Changes the parameters (e.g. per request): draft_max at most the value the speculator was
 * made with; a prompt-lookup speculator keeps needing valid n-gram sizes. 0 or -1 (EINVAL). */
int lfm2c_spec_set_params(lfm2c_spec *sp, const lfm2c_spec_params *p, lfm2c_error *err);
const lfm2c_spec_params *lfm2c_spec_get_params(const lfm2c_spec *sp);
/* Counts since the speculator was made: verification forwards that carried a draft, tokens
 * drafted, and tokens of them accepted. */
typedef struct lfm2c_spec_stats {
    long steps, drafted, accepted;
} lfm2c_spec_stats;
lfm2c_spec_stats lfm2c_spec_get_stats(const lfm2c_spec *sp);

/* ---- chat templates and tool calls ------------------------------------------------------ */
/* Render a conversation with a Jinja chat template: template_src, or when NULL the model's
 * tokenizer.chat_template (or the built-in LFM2 format if the file has none).
 * messages_json: an OpenAI-style messages array, or an object {"messages": [...], "tools": [...]}
 * whose other keys are more variables of the template (chat_template_kwargs such as
 * enable_thinking); tools_json: an array or NULL (it wins over the object's "tools").
 * Returns a malloc'd UTF-8 string (caller frees) or NULL with err set. */
char *lfm2c_chat_render(const lfm2c_model *model, const char *template_src, const char *messages_json,
                        const char *tools_json, bool add_generation_prompt, lfm2c_error *err);
/* A chat template is a program from the model file, run on every request: each render has a
 * budget. A field left 0 (or a NULL limits) keeps the default: max_memory 256 MiB of values,
 * max_steps 50,000,000 units of work, max_output 32 MiB of text, max_depth 1000 nested
 * evaluations, max_seconds 5 s of wall time (the LFM2 template renders a 32K-token conversation
 * with tools in well under 1% of each). A render past a limit fails (LFM2C_EINVAL, LFM2C_ENOMEM
 * for memory); one whose cancel flag becomes non-zero (set from any thread, e.g. a server
 * shutting down) stops within a few thousand steps with LFM2C_ECANCELLED. */
typedef struct lfm2c_template_limits {
    size_t max_memory;
    uint64_t max_steps;
    size_t max_output;
    int max_depth;
    double max_seconds;
#ifdef __cplusplus
    const void *cancel; /* (C++ sees the pointer only; C: an _Atomic int) */
#else
    const _Atomic int *cancel; /* NULL: not cancellable */
#endif
} lfm2c_template_limits;
char *lfm2c_chat_render_limited(const lfm2c_model *model, const char *template_src, const char *messages_json,
                                const char *tools_json, bool add_generation_prompt, const lfm2c_template_limits *limits,
                                lfm2c_error *err);
/* Same, for a template alone (no model): bos/eos are the strings to give the template. */
char *lfm2c_chat_render_template(const char *template_src, const char *messages_json, const char *tools_json,
                                 bool add_generation_prompt, const char *bos_token, const char *eos_token,
                                 lfm2c_error *err);

/* Parse LFM2 tool calls out of model output text (special tokens as text). Returns a malloc'd
 * JSON object {"content": str, "tool_calls": [{"name": str, "arguments": {...}}], "parsed": bool}.
 * Never fails on malformed calls (parsed=false, content = the whole text). */
char *lfm2c_parse_tool_calls(const char *text, size_t len);

/* ---- reasoning (thinking models) ---------------------------------------------------------- */
/* A thinking model (LFM2.5) writes "<think>...</think>" before its answer. lfm2c_think splits
 * the output text, fed in pieces as it is generated (a tag may be split between pieces), into
 * the thinking and the answer, with the tags removed:
 * - a block opens only at the start of the output (after whitespace); init with `opened` when
 *   the prompt already opened it (the output then starts inside the block);
 * - whitespace at the start and the end of the thinking and at the start of the answer after a
 *   block is dropped (a run of more than LFM2C_THINK_WS bytes at the end of the thinking is
 *   given out as it grows);
 * - text that does not start with the open tag is all answer; a "<think>" later in the answer
 *   is answer text; an unclosed block is all thinking.
 * Bytes that may begin a tag or a dropped whitespace run are held until the next piece tells.
 * Each output buffer must have room for n + LFM2C_THINK_HOLD bytes. */
#define LFM2C_THINK_OPEN "<think>"
#define LFM2C_THINK_CLOSE "</think>"
#define LFM2C_THINK_WS 64
#define LFM2C_THINK_HOLD (LFM2C_THINK_WS + 16)
enum { LFM2C_THINK_START, LFM2C_THINK_IN, LFM2C_THINK_ANSWER };
typedef struct lfm2c_think {
    int phase;       /* LFM2C_THINK_*: before the output decided, in a block, the answer */
    bool lead;       /* nothing given out yet in this phase (leading whitespace is dropped) */
    bool had_block;  /* a block was seen (the answer's leading whitespace is dropped) */
    int n_ws, n_tag; /* held: n_ws whitespace bytes, then n_tag bytes of a tag */
    char held[LFM2C_THINK_HOLD];
} lfm2c_think;
void lfm2c_think_init(lfm2c_think *t, bool opened);
/* Splits the next n bytes: thinking bytes to think (*n_think), answer bytes to answer (*n_answer). */
void lfm2c_think_push(lfm2c_think *t, const char *s, size_t n, char *think, size_t *n_think, char *answer,
                      size_t *n_answer);
/* The end of the output: gives out what is held (an open block's unfinished tag is thinking). */
void lfm2c_think_flush(lfm2c_think *t, char *think, size_t *n_think, char *answer, size_t *n_answer);

#ifdef __cplusplus
}
#endif
#endif
