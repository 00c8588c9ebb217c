/* models.h — the models one server serves (`lfm2c serve -m A -m B`, `--models`): a registry of
 * entries {id (ORG/NAME:QUANT as `lfm2c list` prints it, or the file's name), aliases, file,
 * state (available / loading / loaded / unloading), the loaded model with its LoRA adapters and
 * its own scheduler (slots, queue, thread), the requests holding it, its keep-alive}. A request
 * names a model; models_acquire finds its entry (case-insensitive: the id, an alias, NAME:latest,
 * ORG/NAME for the repository's preferred quant, an adapter as NAME or MODEL:NAME), loads it
 * when it is not loaded (concurrent first requests wait for the same one load, up to a
 * deadline) and holds it until models_release, which arms its keep-alive: an idle model is unloaded when that expires
 * (a timer thread), at once for keep-alive 0, never for < 0. Before a load, idle models are
 * unloaded least recently used first while the loaded ones would pass the memory budget (the
 * files' bytes and the slots' KV caches) or --max-loaded. A load that fails is the request's
 * error (500, the library's message); the other models serve on. Internal to the server. */
#ifndef LFM2C_MODELS_H
#define LFM2C_MODELS_H
#include "lfm2c.h"
#include "serve/job.h"
#include "serve/scheduler.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum { MODEL_AVAILABLE, MODEL_LOADING, MODEL_LOADED, MODEL_UNLOADING };

#define MODELS_MAX_LORA 64
#define MODELS_MAX_ALIAS 6
#define MODELS_FOREVER 1e18 /* a keep-alive that never expires (seconds) */

typedef struct models_params {
    lfm2c_model_params mp;   /* how every model opens (threads, device, KV types, pages) */
    sched_params sp;         /* each loaded model's scheduler; n_ctx: the asked context, cut to the model's */
    const char *draft_path;  /* -md: the draft model of the first model (speculative decoding) */
    const char *mmproj_path; /* -mm: the first model's vision tower (images, lfm2c_mmproj) */
    bool no_mmproj;          /* a cached model is not paired with the mmproj*.gguf beside it */
    size_t memory_budget;    /* bytes the loaded models may hold (0: no bound) */
    int max_loaded;          /* models loaded at once (0: no bound) */
    double keep_alive;       /* seconds an idle model stays loaded by default; < 0: forever */
    double wait_s;           /* how long a request waits for its model: another's load or unload of it,
                                busy models leaving room (--load-timeout; then 503) */
    void (*log)(void *user, const char *line);
    void *log_user;
} models_params;

/* What the server knows of a model without loading its weights (read from the file's header,
 * kept once read): for /api/show, /api/tags, /v1/models and the memory estimate. */
typedef struct model_facts {
    bool ok;
    lfm2c_model_info info;
    char *tmpl; /* the file's chat template (NULL: none) */
    lfm2c_sampler_params sampling;
    int n_ctx;       /* each slot's context */
    size_t kv_bytes; /* KV cache of all slots at n_ctx */
    int mmproj;      /* what its mmproj makes it take besides text: LFM2C_MMPROJ_IMAGE or _AUDIO (0: none);
                        the file's, a row of a loaded model the one it holds */
} model_facts;

/* A model as a listing shows it (models_list), a copy made under the registry's lock. */
typedef struct model_row {
    char id[SERVER_MAX_MODEL_NAME + 1], file[256], digest[72], device[256];
    int state, refs, n_lora;
    const char *lora_names[MODELS_MAX_LORA]; /* the entry's, which live as long as the registry */
    uint64_t file_bytes, bytes;              /* the file; what it holds loaded (file + KV caches) */
    time_t mtime;
    double expires; /* wall clock seconds (MODELS_FOREVER: never), while loaded */
    bool from_cache, device_memory;
    uint64_t loads;
    model_facts facts; /* facts.tmpl borrowed: valid while the registry lives */
    sched_stats stats; /* its scheduler's counters (kept across unloads) */
    bool have_stats;
} model_row;

typedef struct serve_models serve_models;

serve_models *models_new(const models_params *p, serve_shared *sh);
/* Unloads every model (their requests must be released first: after the server stopped). */
void models_free(serve_models *r);
/* Ends every loaded model's running requests (their streams finish) and refuses new ones. */
void models_shutdown(serve_models *r);

/* A model file: id NULL is its file name; its other names (the file name without .gguf, and
 * ORG/NAME:QUANT when the file is in a Hugging Face cache) become aliases. The first model
 * added is the default (a request naming none) and the draft model's. 0, or -1 with err set (the
 * same id twice, an unreadable file). */
int models_add_file(serve_models *r, const char *path, const char *id, lfm2c_error *err);
/* Every GGUF of the cache `lfm2c list` shows (split files by their first part); `watch`: later
 * listings look again (models pulled or removed meanwhile). Returns the number added. */
int models_add_cache(serve_models *r, const char *cache_dir, bool watch);
/* A LoRA adapter bound to model (NULL: the first) under name (unique in the server). */
int models_add_lora(serve_models *r, const char *model, const char *name, const char *path, float scale,
                    lfm2c_error *err);
int models_count(serve_models *r);

/* The model a request names (NULL or "": the default one), loaded and held; *lora: the adapter
 * it names (-1: none). keep_alive: seconds it stays loaded once idle (NAN: the default). Waits
 * at most wait_s in all. NULL with *status 404 (no such model; msg empty), 500 (its load
 * failed: msg says why) or 503 (shutting down; no room while other models are busy, or another
 * request's load or unload of it not done, within wait_s: msg says which). */
serve_api *models_acquire(serve_models *r, const char *name, double keep_alive, int *lora, int *status, char *msg,
                          size_t cap);
/* Drops a hold (NULL: nothing); the last one arms the model's keep-alive. */
void models_release(serve_api *api);
/* Unloads a model now, or once its requests end: 0, or -1 when no model has that name. */
int models_unload(serve_models *r, const char *name);
/* Whether a name resolves to a model (and its id into id, when given). */
bool models_exists(serve_models *r, const char *name, char *id, size_t cap);
/* A copy of the model's row: false when there is no such model. Reads its facts (the file's
 * header) when it never did. */
bool models_row(serve_models *r, const char *name, model_row *row);
/* Rows of every model (loaded_only: those loaded), in the order they were added; the count
 * (*rows malloc'd, NULL when 0). */
int models_list(serve_models *r, bool loaded_only, model_row **rows);
/* The default model's id ("" when the registry is empty). */
void models_default_id(serve_models *r, char *out, size_t cap);
/* The summed scheduler counters of every model (loaded or not), for /metrics and drain. */
void models_stats(serve_models *r, sched_stats *out);
/* A model pulled (or removed) while serving: adds it (ORG/NAME:QUANT of the cache at path) /
 * forgets it (unloaded once idle); a model given as a file is never removed: -1, 400. */
int models_add_pulled(serve_models *r, const char *path, char *id, size_t cap);
/* Removes a cached model's files (its quant, every snapshot, from the cache the file lies in)
 * and forgets it: 0; -1 with *status 404 / 400 / 500 and msg. */
int models_delete(serve_models *r, const char *name, int *status, char *msg, size_t cap);

/* Ollama's model management routes (api_models.c), in the server's route table. */
extern const http_route models_routes[];
extern const int models_n_routes;

/* A byte count with an optional K, M, G or T (binary) or a percentage of the machine's memory. */
bool models_parse_bytes(const char *s, size_t *bytes);
/* The default memory budget: 80% of the machine's memory. */
size_t models_default_budget(void);
#endif
