/* models.c — the registry of the models one server serves (models.h): entries added from the
 * command line and the Hugging Face cache, names resolved (id, aliases, NAME:latest, a
 * repository's preferred quant, LoRA adapters), a model loaded by the first request that names
 * it while later ones wait for that one load, held by requests, unloaded when its keep-alive
 * expires (the reaper thread), when room is needed (least recently used idle model first, past
 * the memory budget or the count), when deleted. One mutex guards the entries; no model is
 * opened, loaded or freed under it (an entry in LOADING or UNLOADING is its loader's alone).
 *
 * The states: AVAILABLE -> LOADING (a request that found it available: its loader) -> LOADED, or
 * back to AVAILABLE when the load fails or finds no room; LOADED -> UNLOADING (whoever unloads
 * it: the last release of keep-alive 0, the reaper, a loader making room, an unload or delete
 * of an idle model) -> AVAILABLE. Only the thread that moved an entry into LOADING or UNLOADING
 * moves it out, on every path, and every change is broadcast (set_state). A LOADING entry holds
 * room (counts against the budget and --max-loaded) only once its loader made room for it
 * (`room`): two loaders waiting for room never wait for each other. Every wait has a deadline
 * (wait_s, --load-timeout, from the request's start): past it the request gets 503. */
#include "serve/models.h"
#include "base/clock.h"
#include "base/error.h"
#include "hub/hub.h"
#include "base/os.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct serve_entry {
    serve_models *reg;
    char id[SERVER_MAX_MODEL_NAME + 1];
    char *alias[MODELS_MAX_ALIAS];
    int n_alias;
    char *path, *real;                    /* as given; its canonical path (duplicates) */
    char file[256], repo[256], quant[32]; /* repo: ORG/NAME when the file is in a cache ("" else) */
    uint64_t file_bytes;
    time_t mtime;
    bool from_cache, deleted, first;
    int state; /* MODEL_*: changed by set_state only */
    bool room; /* LOADING: its loader made room for it (it counts as loaded) */
    lfm2c_model *model, *draft;
    lfm2c_mmproj *mm;        /* its vision tower (-mm, the first model's; a cached one's beside it), or NULL */
    lfm2c_audio_mmproj *amm; /* or its audio encoder (an LFM2-Audio mmproj), or NULL */
    sched *s;
    int n_lora;
    char *lora_names[MODELS_MAX_LORA], *lora_paths[MODELS_MAX_LORA];
    float lora_scales[MODELS_MAX_LORA];
    lfm2c_lora *loras[MODELS_MAX_LORA];
    int refs;
    double last_use, expires, keep_alive; /* monotonic seconds; keep_alive < 0: forever */
    uint64_t loads, load_gen, failed_gen;
    char error[400]; /* the last load's failure */
    size_t bytes;    /* loaded: file + KV caches (+ the draft); before: the estimate */
    bool facts_read;
    model_facts facts;
    sched_stats retired; /* the counters of its schedulers already freed */
    bool have_retired;
    serve_api api;
};

struct serve_models {
    models_params p;
    serve_shared *sh;
    pthread_mutex_t mu, facts_mu;
    pthread_cond_t changed, wake; /* any entry's state or holds; the reaper's alarm */
    serve_entry **e;
    int n, cap;
    char *cache; /* watched: listings look at it again */
    bool stopping, reaper_on;
    pthread_t reaper;
};

/* lfm2c_set_error as an expression of value -1 */
#define SET_ERR(err, code, ...) (lfm2c_set_error(err, code, __VA_ARGS__), -1)

static void say(serve_models *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(serve_models *r, const char *fmt, ...) {
    if (!r->p.log) return;
    char line[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    r->p.log(r->p.log_user, line);
}

/* ---- parsing: sizes ----------------------------------------------------------- */

static uint64_t machine_memory(void) { return os_phys_mem(); }

size_t models_default_budget(void) { return (size_t)(machine_memory() / 10 * 8); }

bool models_parse_bytes(const char *s, size_t *bytes) {
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : -1;
    if (!s || end == s || errno || !(v >= 0)) return false;
    double mul = 1;
    if (*end == '%') {
        if (end[1] || v > 100) return false;
        *bytes = (size_t)((double)machine_memory() * v / 100);
        return true;
    }
    switch (toupper((unsigned char)*end)) {
    case 0: break;
    case 'K': mul = 1024.0; break;
    case 'M': mul = 1024.0 * 1024; break;
    case 'G': mul = 1024.0 * 1024 * 1024; break;
    case 'T': mul = 1024.0 * 1024 * 1024 * 1024; break;
    default: return false;
    }
    if (*end && end[1] && strcasecmp(end + 1, "B") && strcasecmp(end + 1, "iB")) return false;
    if (v * mul > (double)SIZE_MAX / 2) return false;
    *bytes = (size_t)(v * mul);
    return true;
}

/* ---- entries ---------------------------------------------------------------------------------- */

static void add_alias(serve_entry *e, const char *a) {
    if (!a || !*a || !strcasecmp(a, e->id) || e->n_alias == MODELS_MAX_ALIAS) return;
    for (int i = 0; i < e->n_alias; i++)
        if (!strcasecmp(e->alias[i], a)) return;
    char *c = strdup(a);
    if (c) e->alias[e->n_alias++] = c;
}

/* CACHE/models--ORG--NAME/snapshots/COMMIT/FILE: ORG/NAME into repo (false when the path is not
 * in a cache's layout). */
static bool cache_repo_of(const char *path, char *repo, size_t cap) {
    const char *m = strstr(path, "/models--");
    while (m && strstr(m + 1, "/models--")) m = strstr(m + 1, "/models--");
    if (!m) return false;
    const char *name = m + 9, *sep = strstr(name, "--"), *snap = strstr(name, "/snapshots/");
    if (!sep || !snap || sep > snap || sep == name || sep + 2 == snap) return false;
    snprintf(repo, cap, "%.*s/%.*s", (int)(sep - name), name, (int)(snap - sep - 2), sep + 2);
    return true;
}

static void entry_free(serve_entry *e) {
    if (!e) return;
    for (int i = 0; i < e->n_alias; i++) free(e->alias[i]);
    for (int i = 0; i < e->n_lora; i++) {
        free(e->lora_names[i]);
        free(e->lora_paths[i]);
    }
    free(e->facts.tmpl);
    free(e->path);
    free(e->real);
    free(e);
}

/* A new entry of path (its names filled; not in the registry yet); NULL with err set. */
static serve_entry *entry_new(serve_models *r, const char *path, const char *id, lfm2c_error *err) {
    os_stat_t st;
    if (os_stat(path, &st) || !st.is_file) {
        lfm2c_set_error(err, LFM2C_EIO, "cannot read model '%s': %s", path, errno ? strerror(errno) : "not a file");
        return NULL;
    }
    serve_entry *e = calloc(1, sizeof *e);
    if (!e || !(e->path = strdup(path)) || !(e->real = os_realpath(path))) {
        entry_free(e);
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return NULL;
    }
    e->reg = r;
    e->file_bytes = (uint64_t)st.size;
    e->mtime = st.mtime;
    e->keep_alive = r->p.keep_alive;
    const char *base = strrchr(path, '/');
    dl_copy_text(e->file, sizeof e->file, base ? base + 1 : path);
    if (!lfm2c_hub_quant_of(e->file, e->quant, sizeof e->quant)) e->quant[0] = 0;
    bool cached = cache_repo_of(e->path, e->repo, sizeof e->repo) || cache_repo_of(e->real, e->repo, sizeof e->repo);
    size_t n = strlen(e->file);
    char stem[256], listed[600];
    snprintf(stem, sizeof stem, "%.*s", (int)(n > 5 && !strcasecmp(e->file + n - 5, ".gguf") ? n - 5 : n), e->file);
    snprintf(listed, sizeof listed, "%s:%s", e->repo, e->quant[0] ? e->quant : stem);
    dl_copy_text(e->id, sizeof e->id, id ? id : e->file);
    add_alias(e, e->file);
    add_alias(e, stem);
    if (cached) add_alias(e, listed);
    e->bytes = (size_t)e->file_bytes;
    return e;
}

static serve_entry *find_real(serve_models *r, const char *real) {
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->e[i]->real, real)) return r->e[i];
    return NULL;
}

/* Does a name (not deleted) collide with e's? */
static serve_entry *named(serve_models *r, const char *name) {
    for (int i = 0; i < r->n; i++) {
        serve_entry *x = r->e[i];
        if (x->deleted) continue;
        if (!strcasecmp(x->id, name)) return x;
        for (int k = 0; k < x->n_alias; k++)
            if (!strcasecmp(x->alias[k], name)) return x;
    }
    return NULL;
}

/* Appends e (lock held): -1 when the array cannot grow. */
static int push(serve_models *r, serve_entry *e) {
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 8;
        serve_entry **ne = realloc(r->e, (size_t)cap * sizeof *ne);
        if (!ne) return -1;
        r->e = ne;
        r->cap = cap;
    }
    e->first = r->n == 0;
    r->e[r->n++] = e;
    return 0;
}

int models_add_file(serve_models *r, const char *path, const char *id, lfm2c_error *err) {
    serve_entry *e = entry_new(r, path, id, err);
    if (!e) return -1;
    pthread_mutex_lock(&r->mu);
    serve_entry *same = find_real(r, e->real), *clash = same ? NULL : named(r, e->id);
    int rc = 0;
    if (same) rc = SET_ERR(err, LFM2C_EINVAL, "model '%s' is given twice (as '%s')", path, same->id);
    else if (clash)
        rc = SET_ERR(err, LFM2C_EINVAL, "two models are named '%s' ('%s' and '%s'): rename one file", e->id,
                     clash->path, path);
    else if (push(r, e)) rc = SET_ERR(err, LFM2C_ENOMEM, "out of memory");
    pthread_mutex_unlock(&r->mu);
    if (rc) entry_free(e);
    return rc ? -1 : 0;
}

/* A cached file into the registry (lock held): its id ORG/NAME:QUANT; a file already there (by
 * path or id) is left alone, a deleted one of the same id comes back. */
static int add_cached(serve_models *r, const lfm2c_hub_file *f) {
    if (f->later_part || f->mmproj || f->companion) return 0; /* an mmproj goes with its model (entry_new) */
    char id[600], stem[256];
    size_t n = strlen(f->file);
    snprintf(stem, sizeof stem, "%.*s", (int)(n > 5 ? n - 5 : n), f->file);
    snprintf(id, sizeof id, "%s:%s", f->repo, *f->quant ? f->quant : stem);
    char *real = os_realpath(f->path);
    serve_entry *same = real ? find_real(r, real) : NULL;
    free(real);
    if (same && !same->deleted) return 0;
    if (named(r, id)) return 0; /* another snapshot of the same model */
    if (same && same->state == MODEL_AVAILABLE) {
        same->deleted = false;
        return 1;
    }
    serve_entry *e = entry_new(r, f->path, id, NULL);
    if (!e) return 0;
    e->from_cache = true;
    if (push(r, e)) {
        entry_free(e);
        return 0;
    }
    return 1;
}

static void cached_visit(void *u, const lfm2c_hub_file *f) {
    void **a = u;
    *(int *)a[1] += add_cached(a[0], f);
}

/* Cached entries whose file is gone (lock held) are forgotten (unloaded once idle). */
static void forget_vanished(serve_models *r) {
    for (int i = 0; i < r->n; i++) {
        serve_entry *e = r->e[i];
        os_stat_t st;
        if (!e->from_cache || e->deleted || !os_stat(e->path, &st)) continue;
        e->deleted = true;
        e->expires = lfm2c_now_s();
        pthread_cond_signal(&r->wake);
    }
}

/* The watched cache looked at again (lock held). */
static void rescan_locked(serve_models *r) {
    if (!r->cache) return;
    int added = 0;
    void *a[2] = {r, &added};
    lfm2c_hub_list(r->cache, NULL, cached_visit, a);
    forget_vanished(r);
}

int models_add_cache(serve_models *r, const char *cache_dir, bool watch) {
    int added = 0;
    void *a[2] = {r, &added};
    pthread_mutex_lock(&r->mu);
    lfm2c_hub_list(cache_dir, NULL, cached_visit, a);
    if (watch && !r->cache) r->cache = strdup(cache_dir);
    pthread_mutex_unlock(&r->mu);
    return added;
}

int models_count(serve_models *r) {
    pthread_mutex_lock(&r->mu);
    int n = 0;
    for (int i = 0; i < r->n; i++) n += !r->e[i]->deleted;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* ---- names -------------------------------------------------------------------------------------- */

/* The adapter of e named name; -1: none. */
static int lora_of(const serve_entry *e, const char *name) {
    for (int i = 0; i < e->n_lora; i++)
        if (!strcmp(e->lora_names[i], name)) return i;
    return -1;
}

/* How much a quant is preferred when a request names a repository alone (the pull's default). */
static int quant_rank(const char *q) {
    static const char *const order[] = {"Q4_K_M", "Q4_K_S", "Q4_0", "Q5_K_M", "Q6_K", "Q8_0", "F16", "BF16", "F32"};
    for (size_t i = 0; i < sizeof order / sizeof *order; i++)
        if (!strcasecmp(q, order[i])) return (int)i;
    return 100;
}

/* The base model a name gives: the id or an alias, NAME:latest, hf.co/ORG/NAME:QUANT, or
 * ORG/NAME for its preferred quant (lock held). */
static serve_entry *resolve_base(serve_models *r, const char *name) {
    if (!strncasecmp(name, "hf.co/", 6)) name += 6;
    else if (!strncasecmp(name, "huggingface.co/", 15)) name += 15;
    serve_entry *e = named(r, name);
    if (e) return e;
    size_t n = strlen(name);
    if (n > 7 && !strcasecmp(name + n - 7, ":latest")) {
        char base[SERVER_MAX_MODEL_NAME + 1];
        snprintf(base, sizeof base, "%.*s", (int)(n - 7), name);
        return resolve_base(r, base);
    }
    if (strchr(name, ':') || !strchr(name, '/')) return NULL;
    serve_entry *best = NULL;
    for (int i = 0; i < r->n; i++) {
        serve_entry *x = r->e[i];
        if (!x->deleted && x->repo[0] && !strcasecmp(x->repo, name) &&
            (!best || quant_rank(x->quant) < quant_rank(best->quant)))
            best = x;
    }
    return best;
}

/* The entry a request's name gives, and the adapter it names (lock held). */
static serve_entry *resolve(serve_models *r, const char *name, int *lora) {
    *lora = -1;
    if (!name || !*name) {
        for (int i = 0; i < r->n; i++)
            if (!r->e[i]->deleted) return r->e[i];
        return NULL;
    }
    serve_entry *e = resolve_base(r, name);
    if (e) return e;
    for (int i = 0; i < r->n; i++) /* an adapter's name alone */
        if (!r->e[i]->deleted && (*lora = lora_of(r->e[i], name)) >= 0) return r->e[i];
    const char *colon = strrchr(name, ':');
    if (!colon || colon == name || !colon[1]) return NULL;
    char base[SERVER_MAX_MODEL_NAME + 1];
    snprintf(base, sizeof base, "%.*s", (int)(colon - name), name);
    e = resolve_base(r, base);
    if (e && (*lora = lora_of(e, colon + 1)) >= 0) return e;
    *lora = -1;
    return NULL;
}

int models_add_lora(serve_models *r, const char *model, const char *name, const char *path, float scale,
                    lfm2c_error *err) {
    pthread_mutex_lock(&r->mu);
    int li, rc = 0;
    serve_entry *e = model ? resolve(r, model, &li) : (r->n ? r->e[0] : NULL);
    for (int i = 0; i < r->n && !rc; i++)
        if (lora_of(r->e[i], name) >= 0) rc = SET_ERR(err, LFM2C_EINVAL, "the name '%s' is given twice", name);
    if (!rc && !e)
        rc = SET_ERR(err, LFM2C_EINVAL, "no model '%s' to bind the adapter '%s' to", model ? model : "", name);
    if (!rc && e->n_lora == MODELS_MAX_LORA)
        rc = SET_ERR(err, LFM2C_EINVAL, "at most %d adapters per model", MODELS_MAX_LORA);
    if (!rc) {
        int k = e->n_lora;
        e->lora_names[k] = strdup(name);
        e->lora_paths[k] = strdup(path);
        e->lora_scales[k] = scale;
        if (!e->lora_names[k] || !e->lora_paths[k]) rc = SET_ERR(err, LFM2C_ENOMEM, "out of memory");
        else e->n_lora++;
    }
    pthread_mutex_unlock(&r->mu);
    return rc ? -1 : 0;
}

/* ---- facts: the file's header, without its weights ------------------------------------------- */

static void facts_of(serve_models *r, lfm2c_model *m, model_facts *f) {
    const lfm2c_model_info *mi = lfm2c_model_get_info(m);
    f->info = *mi;
    const char *t = lfm2c_model_meta_str(m, "tokenizer.chat_template");
    f->tmpl = t ? strdup(t) : NULL;
    f->sampling = lfm2c_sampler_params_for_model(m);
    f->n_ctx = mi->n_ctx_train > 0 && r->p.sp.n_ctx > mi->n_ctx_train ? mi->n_ctx_train : r->p.sp.n_ctx;
    int slots = r->p.sp.n_slots > 0 ? r->p.sp.n_slots : 1;
    f->kv_bytes = (size_t)lfm2c_memory_need_bytes(m, f->n_ctx, slots); /* KV, state, scratch: lfm2c_memory_estimate */
    f->ok = true;
}

/* e's mmproj (malloc'd; NULL: none): -mm is the first model's; a model of the cache takes its
 * repository's mmproj beside it (none with --no-mmproj). */
static char *mmproj_of(const serve_models *r, const serve_entry *e) {
    if (e->first && r->p.mmproj_path) return strdup(r->p.mmproj_path);
    return e->repo[0] && !r->p.no_mmproj ? lfm2c_hub_mmproj_beside(e->path) : NULL;
}

/* Reads e's facts once (the file's header: no lock held but facts_mu). */
static void read_facts(serve_models *r, serve_entry *e) {
    pthread_mutex_lock(&r->facts_mu);
    pthread_mutex_lock(&r->mu);
    bool done = e->facts_read;
    pthread_mutex_unlock(&r->mu);
    if (!done) {
        lfm2c_model_params mp = lfm2c_model_default_params();
        mp.n_threads = 1;
        mp.no_populate = true;
        mp.hugepages = LFM2C_HUGEPAGES_OFF;
        mp.type_k = r->p.mp.type_k;
        mp.type_v = r->p.mp.type_v;
        model_facts f = {0};
        lfm2c_model *m = lfm2c_model_open(e->path, &mp, NULL);
        if (m) facts_of(r, m, &f);
        lfm2c_model_free(m);
        char *mmproj = f.ok ? mmproj_of(r, e) : NULL;
        const int kind = mmproj ? lfm2c_mmproj_kind(mmproj, NULL) : 0; /* its header alone */
        f.mmproj = kind > 0 ? kind : 0;
        free(mmproj);
        pthread_mutex_lock(&r->mu);
        if (!e->facts.ok) e->facts = f;
        else free(f.tmpl);
        e->facts_read = true;
        if (e->state == MODEL_AVAILABLE || e->state == MODEL_LOADING) /* the estimate a load makes room for */
            e->bytes = (size_t)e->file_bytes + e->facts.kv_bytes;
        pthread_mutex_unlock(&r->mu);
    }
    pthread_mutex_unlock(&r->facts_mu);
}

/* ---- loading and unloading --------------------------------------------------------------------- */

/* What a loaded model holds of the server's state: its handles, its adapters, the view. */
typedef struct loaded {
    lfm2c_model *model, *draft;
    lfm2c_mmproj *mm;
    lfm2c_audio_mmproj *amm;
    sched *s;
    lfm2c_lora *loras[MODELS_MAX_LORA];
    int n_ctx;
} loaded;

static void loaded_free(loaded *l, int n_lora) {
    if (l->s) sched_shutdown(l->s);
    sched_free(l->s);
    for (int k = 0; k < n_lora; k++) lfm2c_lora_free(l->loras[k]);
    lfm2c_mmproj_free(l->mm);
    lfm2c_audio_mmproj_free(l->amm);
    lfm2c_model_free(l->model);
    lfm2c_model_free(l->draft);
}

/* An adapter loaded: the modules and layers it changes (lfm2c_lora_describe), in the log. */
static void say_lora(serve_models *r, const serve_entry *e, int k, const lfm2c_lora *lo) {
    int n = lfm2c_lora_describe(lo, NULL, 0);
    char *text = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (text) lfm2c_lora_describe(lo, text, (size_t)n + 1);
    say(r, "LoRA adapter %s of %s (scale %g, %d matrices): %s", e->lora_names[k], e->id, e->lora_scales[k],
        lfm2c_lora_n_matrices(lo), text ? text : "(out of memory)");
    free(text);
}

/* The mmproj at path for l's model, as what its header says it is: a vision tower (images) or an
 * LFM2-Audio encoder (audio): 0, or -1 with err. */
static int open_mmproj(serve_models *r, const serve_entry *e, loaded *l, const char *path, lfm2c_error *err) {
    const int kind = lfm2c_mmproj_kind(path, err);
    if (kind == LFM2C_MMPROJ_AUDIO && (l->amm = lfm2c_audio_mmproj_open(path, l->model, err)))
        say(r, "%s hears: its audio mmproj %s", e->id, path);
    else if (kind == LFM2C_MMPROJ_IMAGE) l->mm = lfm2c_mmproj_open(path, l->model, err);
    return l->mm || l->amm ? 0 : -1;
}

/* Opens e's model, adapters, draft and scheduler (no lock: e is LOADING, its loader's): 0, or
 * -1 with msg. */
static int open_entry(serve_models *r, serve_entry *e, loaded *l, char *msg, size_t cap) {
    lfm2c_error err = {0};
    if (!(l->model = lfm2c_model_open(e->path, &r->p.mp, &err)))
        return snprintf(msg, cap, "cannot load model '%s' (%s): %s", e->id, e->file, err.msg), -1;
    const lfm2c_model_info *mi = lfm2c_model_get_info(l->model);
    l->n_ctx = mi->n_ctx_train > 0 && r->p.sp.n_ctx > mi->n_ctx_train ? mi->n_ctx_train : r->p.sp.n_ctx;
    for (int k = 0; k < e->n_lora; k++) {
        if (!(l->loras[k] = lfm2c_lora_load(l->model, e->lora_paths[k], &err)))
            return snprintf(msg, cap, "--lora %s: %s", e->lora_names[k], err.msg), -1;
        say_lora(r, e, k, l->loras[k]);
    }
    char *mmproj = mmproj_of(r, e);
    if (mmproj && open_mmproj(r, e, l, mmproj, &err)) {
        snprintf(msg, cap, "--mmproj %s: %s", mmproj, err.msg);
        free(mmproj);
        return -1;
    }
    free(mmproj);
    if (e->first && r->p.draft_path && !(l->draft = lfm2c_model_open(r->p.draft_path, &r->p.mp, &err)))
        return snprintf(msg, cap, "draft model: %s", err.msg), -1;
    sched_params sp = r->p.sp;
    sp.n_ctx = l->n_ctx;
    sp.draft = l->draft;
    if (!e->first) sp.draft = NULL; /* -md is the first model's; prompt lookup is every model's */
    if (sp.spec_on && !sp.draft && r->p.draft_path) sp.spec_on = false;
    if (!(l->s = sched_new(l->model, &sp, &err)))
        return snprintf(msg, cap, "%s%s", l->draft ? "draft model: " : "", err.msg), -1;
    return 0;
}

/* e's view for the requests holding it (lock held; e's loader). */
static void publish(serve_models *r, serve_entry *e, loaded *l) {
    e->model = l->model;
    e->draft = l->draft;
    e->mm = l->mm;
    e->amm = l->amm;
    e->s = l->s;
    memcpy(e->loras, l->loras, sizeof e->loras);
    serve_api_set(&e->api, r->sh, l->model, l->s, l->n_ctx);
    e->api.mm = l->mm;
    e->api.amm = l->amm;
    e->api.entry = e;
    e->api.p.n_lora = e->n_lora;
    e->api.p.lora_names = (const char *const *)e->lora_names;
    e->api.p.loras = e->loras;
    e->api.p.lora_scales = e->lora_scales;
    dl_copy_text(e->api.alias, sizeof e->api.alias, e->id);
    dl_copy_text(e->api.model_file, sizeof e->api.model_file, e->file);
    if (!e->facts.ok) facts_of(r, l->model, &e->facts);
    e->facts.mmproj = l->amm ? LFM2C_MMPROJ_AUDIO : l->mm ? LFM2C_MMPROJ_IMAGE : 0; /* what it found */
    e->facts_read = true;
    os_stat_t st;
    uint64_t draft = l->draft && r->p.draft_path && !os_stat(r->p.draft_path, &st) ? (uint64_t)st.size : 0;
    e->bytes = (size_t)(e->file_bytes + draft) +
               (size_t)lfm2c_memory_need_bytes(l->model, l->n_ctx, r->p.sp.n_slots > 0 ? r->p.sp.n_slots : 1);
}

static void stats_add(sched_stats *a, const sched_stats *b) {
    const double slots = a->n_slots + b->n_slots;
    a->kv_usage = slots > 0 ? (a->kv_usage * a->n_slots + b->kv_usage * b->n_slots) / slots : 0;
    a->requests += b->requests, a->prompt_tokens += b->prompt_tokens, a->cached_tokens += b->cached_tokens;
    a->generated_tokens += b->generated_tokens, a->prefill_tokens += b->prefill_tokens;
    a->prefill_seconds += b->prefill_seconds, a->decode_seconds += b->decode_seconds;
    a->queue_depth += b->queue_depth, a->active_slots += b->active_slots, a->n_slots += b->n_slots;
    a->steps += b->steps, a->batch_tokens += b->batch_tokens, a->spec_drafted += b->spec_drafted;
    a->spec_accepted += b->spec_accepted, a->spec_steps += b->spec_steps, a->prefix_copies += b->prefix_copies;
    a->t_admit += b->t_admit, a->t_plan += b->t_plan, a->t_forward += b->t_forward, a->t_lock += b->t_lock;
    a->t_sample += b->t_sample, a->t_idle += b->t_idle, a->t_render += b->t_render;
    a->ckpt_count += b->ckpt_count, a->ckpt_bytes += b->ckpt_bytes;
    if (b->ckpt_max > a->ckpt_max) a->ckpt_max = b->ckpt_max;
    for (int i = 0; i < SCHED_N_LAT; i++) {
        a->ttft_bucket[i] += b->ttft_bucket[i];
        a->tpot_bucket[i] += b->tpot_bucket[i];
        a->e2e_bucket[i] += b->e2e_bucket[i];
    }
    a->ttft_count += b->ttft_count, a->tpot_count += b->tpot_count, a->e2e_count += b->e2e_count;
    a->ttft_sum += b->ttft_sum, a->tpot_sum += b->tpot_sum, a->e2e_sum += b->e2e_sum;
}

/* Every state change (lock held): whoever waits for one sees it. */
static void set_state(serve_models *r, serve_entry *e, int state) {
    e->state = state;
    if (state != MODEL_LOADING) e->room = false;
    pthread_cond_broadcast(&r->changed);
}

/* Unloads an idle loaded e (lock held on entry and return; dropped while freeing). */
static void unload_locked(serve_models *r, serve_entry *e, const char *why) {
    set_state(r, e, MODEL_UNLOADING);
    loaded l = {.model = e->model, .draft = e->draft, .mm = e->mm, .amm = e->amm, .s = e->s};
    memcpy(l.loras, e->loras, sizeof l.loras);
    e->model = e->draft = NULL;
    e->mm = NULL;
    e->amm = NULL;
    e->api.mm = NULL;
    e->api.amm = NULL;
    e->s = NULL;
    memset(e->loras, 0, sizeof e->loras);
    e->api.model = NULL;
    e->api.sched = NULL;
    pthread_mutex_unlock(&r->mu);
    sched_shutdown(l.s);
    sched_stats st;
    sched_get_stats(l.s, &st);
    st.queue_depth = st.active_slots = st.n_slots = 0;
    st.ckpt_count = 0, st.ckpt_bytes = 0, st.kv_usage = 0;
    loaded_free(&l, e->n_lora);
    say(r, "unloaded model %s (%s)", e->id, why);
    pthread_mutex_lock(&r->mu);
    stats_add(&e->retired, &st);
    e->have_retired = true;
    set_state(r, e, MODEL_AVAILABLE);
}

/* Entries other than e that hold room (lock held): their count and bytes. Loaded and unloading
 * ones hold theirs; a loading one only once its loader made room for it (one still waiting for
 * room holds none, or two such loaders would each wait for the other to go). */
static int in_memory(serve_models *r, const serve_entry *e, size_t *bytes) {
    int n = 0;
    *bytes = 0;
    for (int i = 0; i < r->n; i++) {
        const serve_entry *x = r->e[i];
        if (x == e || x->state == MODEL_AVAILABLE || (x->state == MODEL_LOADING && !x->room)) continue;
        n++;
        *bytes += x->bytes;
    }
    return n;
}

/* The least recently used idle loaded model other than e (lock held). */
static serve_entry *lru_idle(serve_models *r, const serve_entry *e) {
    serve_entry *v = NULL;
    for (int i = 0; i < r->n; i++) {
        serve_entry *x = r->e[i];
        if (x != e && x->state == MODEL_LOADED && x->refs == 0 && (!v || x->last_use < v->last_use)) v = x;
    }
    return v;
}

static void wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, double when) {
    double left = when - lfm2c_now_s();
    if (left <= 0) return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double at = (double)ts.tv_sec + ts.tv_nsec * 1e-9 + left;
    ts.tv_sec = (time_t)at;
    ts.tv_nsec = (long)((at - (double)ts.tv_sec) * 1e9);
    pthread_cond_timedwait(cv, mu, &ts);
}

/* Room for e: idle models unloaded, least recently used first, while the loaded ones and e would
 * pass the budget or the count; with busy ones in the way, waits for them until the deadline
 * (lock held): 0 with e->room set, or 503 with msg. Alone, a model is loaded whatever its size. */
static int make_room(serve_models *r, serve_entry *e, double deadline, char *msg, size_t cap) {
    for (;;) {
        if (r->stopping) return snprintf(msg, cap, "the server is shutting down"), 503;
        size_t used;
        int n = in_memory(r, e, &used);
        bool fits =
            (!r->p.memory_budget || used + e->bytes <= r->p.memory_budget) && (!r->p.max_loaded || n < r->p.max_loaded);
        if (fits || n == 0) {
            e->room = true;
            return 0;
        }
        serve_entry *v = lru_idle(r, e);
        if (v) {
            char why[SERVER_MAX_MODEL_NAME + 40];
            snprintf(why, sizeof why, "to make room for %s", e->id);
            unload_locked(r, v, why);
            continue;
        }
        if (lfm2c_now_s() >= deadline)
            return snprintf(msg, cap,
                            "no room to load '%s' within %g s: %d models are loaded and busy (--memory-budget, "
                            "--max-loaded, --load-timeout); retry later",
                            e->id, r->p.wait_s, n),
                   503;
        double t = lfm2c_now_s() + 1;
        wait_until(&r->changed, &r->mu, t < deadline ? t : deadline);
    }
}

/* Loads e, whose state this caller set to LOADING (lock held on entry and return): 0, or the
 * status with msg. The caller moves e out of LOADING whatever this returns. */
static int load_locked(serve_models *r, serve_entry *e, double deadline, char *msg, size_t cap) {
    if (!e->facts_read) {
        pthread_mutex_unlock(&r->mu);
        read_facts(r, e);
        pthread_mutex_lock(&r->mu);
    }
    int status = make_room(r, e, deadline, msg, cap);
    if (status) return status;
    pthread_mutex_unlock(&r->mu);
    double t0 = lfm2c_now_s();
    loaded l = {0};
    int rc = open_entry(r, e, &l, msg, cap);
    if (rc) loaded_free(&l, e->n_lora);
    else say(r, "loaded model %s (%s, %.2f s)", e->id, e->file, lfm2c_now_s() - t0);
    pthread_mutex_lock(&r->mu);
    if (rc) return 500;
    publish(r, e, &l);
    e->loads++;
    return 0;
}

/* ---- holds ------------------------------------------------------------------------------------ */

static int fail(int status, int *out, char *msg, size_t cap, const char *text) {
    *out = status;
    if (text) snprintf(msg, cap, "%s", text);
    return 0;
}

/* Loads e, which this request found available, for it (lock held): e's api, or NULL with
 * *status and msg. e leaves LOADING on every path. */
static serve_api *load_for(serve_models *r, serve_entry *e, double deadline, int *status, char *msg, size_t cap) {
    set_state(r, e, MODEL_LOADING);
    e->load_gen++;
    int st = load_locked(r, e, deadline, msg, cap);
    set_state(r, e, st ? MODEL_AVAILABLE : MODEL_LOADED);
    if (st == 500) {
        e->failed_gen = e->load_gen;
        snprintf(e->error, sizeof e->error, "%s", msg);
    }
    if (st) return fail(st, status, msg, cap, NULL), NULL;
    /* loaded as the server stops: it stays loaded for models_free, unused */
    if (r->stopping) return fail(503, status, msg, cap, "the server is shutting down"), NULL;
    return &e->api;
}

/* e for a request: loaded already, loaded by this request, or after another request's load or
 * unload ends, waiting until the deadline (lock held): e's api, or NULL with *status and msg. */
static serve_api *hold_locked(serve_models *r, serve_entry *e, double deadline, int *status, char *msg, size_t cap) {
    uint64_t waited = 0; /* the load this request waited for */
    for (;;) {
        if (r->stopping) return fail(503, status, msg, cap, "the server is shutting down"), NULL;
        if (e->deleted) return fail(404, status, msg, cap, NULL), NULL;
        if (waited && e->failed_gen == waited) return fail(500, status, msg, cap, e->error), NULL;
        if (e->state == MODEL_LOADED) return &e->api;
        if (e->state == MODEL_AVAILABLE) return load_for(r, e, deadline, status, msg, cap);
        if (lfm2c_now_s() >= deadline) { /* another request loads or unloads it, and takes too long */
            snprintf(msg, cap,
                     "model '%s' was not ready within %g s (another request %s it; --load-timeout); retry later", e->id,
                     r->p.wait_s, e->state == MODEL_LOADING ? "is loading" : "is unloading");
            *status = 503;
            return NULL;
        }
        if (e->state == MODEL_LOADING) waited = e->load_gen;
        wait_until(&r->changed, &r->mu, deadline);
    }
}

serve_api *models_acquire(serve_models *r, const char *name, double keep_alive, int *lora, int *status, char *msg,
                          size_t cap) {
    msg[0] = 0;
    const double deadline = lfm2c_now_s() + r->p.wait_s;
    pthread_mutex_lock(&r->mu);
    serve_entry *e = resolve(r, name, lora);
    if (!e && r->cache) {
        rescan_locked(r);
        e = resolve(r, name, lora);
    }
    serve_api *out = e ? hold_locked(r, e, deadline, status, msg, cap) : NULL;
    if (!e) fail(404, status, msg, cap, NULL);
    if (out) {
        e->refs++;
        e->last_use = lfm2c_now_s();
        e->keep_alive = isnan(keep_alive) ? r->p.keep_alive : keep_alive;
    }
    pthread_mutex_unlock(&r->mu);
    return out;
}

void models_release(serve_api *api) {
    if (!api || !api->entry) return;
    serve_entry *e = api->entry;
    serve_models *r = e->reg;
    pthread_mutex_lock(&r->mu);
    e->refs--;
    e->last_use = lfm2c_now_s();
    if (e->refs == 0) {
        double ka = e->deleted ? 0 : e->keep_alive;
        e->expires = ka < 0 ? MODELS_FOREVER : e->last_use + ka;
        if (ka == 0 && e->state == MODEL_LOADED && !r->stopping)
            unload_locked(r, e, e->deleted ? "deleted" : "keep_alive 0");
        else pthread_cond_signal(&r->wake);
    }
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->mu);
}

int models_unload(serve_models *r, const char *name) {
    int lora;
    pthread_mutex_lock(&r->mu);
    serve_entry *e = resolve(r, name, &lora);
    if (e) {
        e->keep_alive = 0; /* its last hold unloads it */
        e->expires = lfm2c_now_s();
        if (e->state == MODEL_LOADED && e->refs == 0) unload_locked(r, e, "stopped");
    }
    pthread_mutex_unlock(&r->mu);
    return e ? 0 : -1;
}

bool models_exists(serve_models *r, const char *name, char *id, size_t cap) {
    int lora;
    pthread_mutex_lock(&r->mu);
    serve_entry *e = resolve(r, name, &lora);
    if (e && id) snprintf(id, cap, "%s", e->id);
    pthread_mutex_unlock(&r->mu);
    return e != NULL;
}

/* ---- the reaper: idle models whose keep-alive expired ------------------------------------------ */

#define REAPER_TICK_S 1.0 /* the reaper looks at least this often (a missed alarm costs no more) */

static void *reaper_main(void *arg) {
    serve_models *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stopping) {
        const double now = lfm2c_now_s();
        double next = now + REAPER_TICK_S;
        serve_entry *v = NULL;
        for (int i = 0; i < r->n && !v; i++) {
            serve_entry *x = r->e[i];
            if (x->state != MODEL_LOADED || x->refs) continue;
            if (x->expires <= now) v = x;
            else if (x->expires < next) next = x->expires;
        }
        if (v) unload_locked(r, v, v->deleted ? "deleted" : "keep-alive expired");
        else wait_until(&r->wake, &r->mu, next);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- listings -------------------------------------------------------------------------------- */

/* The digest of a cached file: its blob's name (the content's sha256); else a hash of the id. */
static void digest_of(const serve_entry *e, char out[72]) {
    char target[4096];
    int n = os_readlink(e->path, target, sizeof target);
    if (n > 0) {
        const char *b = strrchr(target, '/');
        b = b ? b + 1 : target;
        if (strlen(b) == 64 && strspn(b, "0123456789abcdef") == 64) {
            memcpy(out, b, 64);
            out[64] = 0;
            return;
        }
    }
    uint64_t h = 1469598103934665603ull ^ e->file_bytes;
    for (const char *p = e->id; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    for (int i = 0; i < 4; i++) {
        h ^= h >> 31;
        h *= 0xBF58476D1CE4E5B9ull;
        snprintf(out + 16 * i, 17, "%016llx", (unsigned long long)h);
    }
}

/* e's row (lock held). */
static void row_of(serve_models *r, serve_entry *e, model_row *w) {
    memset(w, 0, sizeof *w);
    snprintf(w->id, sizeof w->id, "%s", e->id);
    snprintf(w->file, sizeof w->file, "%s", e->file);
    digest_of(e, w->digest);
    w->state = e->state;
    w->refs = e->refs;
    w->n_lora = e->n_lora;
    for (int i = 0; i < e->n_lora; i++) w->lora_names[i] = e->lora_names[i];
    w->file_bytes = e->file_bytes;
    w->bytes = e->bytes;
    w->mtime = e->mtime;
    w->from_cache = e->repo[0] != 0;
    w->loads = e->loads;
    w->facts = e->facts;
    const double now = lfm2c_now_s(), ka = e->keep_alive;
    double until = e->refs ? (ka < 0 ? MODELS_FOREVER : now + ka) : e->expires;
    w->expires = until >= MODELS_FOREVER ? MODELS_FOREVER : (double)time(NULL) + (until - now);
    if (e->have_retired) w->stats = e->retired;
    w->have_stats = e->have_retired;
    if (e->state == MODEL_LOADED) {
        sched_stats st;
        sched_get_stats(e->s, &st);
        stats_add(&w->stats, &st);
        w->have_stats = true;
        lfm2c_device_info d = lfm2c_model_device(e->model);
        snprintf(w->device, sizeof w->device, "%s", d.name[0] ? d.name : "CPU");
        w->device_memory = !d.is_cpu;
        w->facts.mmproj = e->amm ? LFM2C_MMPROJ_AUDIO : e->mm ? LFM2C_MMPROJ_IMAGE : 0; /* what it holds now */
    }
    (void)r;
}

bool models_row(serve_models *r, const char *name, model_row *row) {
    int lora;
    pthread_mutex_lock(&r->mu);
    serve_entry *e = resolve(r, name, &lora);
    bool need = e && !e->facts_read;
    pthread_mutex_unlock(&r->mu);
    if (need) read_facts(r, e);
    pthread_mutex_lock(&r->mu);
    if (e) row_of(r, e, row);
    pthread_mutex_unlock(&r->mu);
    return e != NULL;
}

int models_list(serve_models *r, bool loaded_only, model_row **rows) {
    *rows = NULL;
    pthread_mutex_lock(&r->mu);
    if (!loaded_only) rescan_locked(r);
    pthread_mutex_unlock(&r->mu);
    for (int i = 0;; i++) { /* facts first, unlocked (entries are never freed while the registry lives) */
        pthread_mutex_lock(&r->mu);
        serve_entry *e = i < r->n ? r->e[i] : NULL;
        bool need = e && !e->deleted && !e->facts_read && !loaded_only;
        pthread_mutex_unlock(&r->mu);
        if (!e) break;
        if (need) read_facts(r, e);
    }
    pthread_mutex_lock(&r->mu);
    int n = 0;
    model_row *out = r->n ? calloc((size_t)r->n, sizeof *out) : NULL;
    for (int i = 0; out && i < r->n; i++) {
        serve_entry *e = r->e[i];
        if (e->deleted || (loaded_only && e->state != MODEL_LOADED)) continue;
        row_of(r, e, &out[n++]);
    }
    pthread_mutex_unlock(&r->mu);
    *rows = out;
    return out ? n : 0;
}

void models_default_id(serve_models *r, char *out, size_t cap) {
    int lora;
    pthread_mutex_lock(&r->mu);
    serve_entry *e = resolve(r, NULL, &lora);
    snprintf(out, cap, "%s", e ? e->id : "");
    pthread_mutex_unlock(&r->mu);
}

void models_stats(serve_models *r, sched_stats *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n; i++) {
        serve_entry *e = r->e[i];
        if (e->have_retired) stats_add(out, &e->retired);
        if (e->state != MODEL_LOADED) continue;
        sched_stats st;
        sched_get_stats(e->s, &st);
        stats_add(out, &st);
    }
    pthread_mutex_unlock(&r->mu);
}

/* ---- pulls and deletes -------------------------------------------------------------------------- */

int models_add_pulled(serve_models *r, const char *path, char *id, size_t cap) {
    char repo[256];
    char *real = os_realpath(path);
    if (!real || !cache_repo_of(path, repo, sizeof repo)) {
        free(real);
        return -1;
    }
    os_stat_t st;
    const char *base = strrchr(path, '/');
    lfm2c_hub_file f = {.repo = repo, .file = base ? base + 1 : path, .path = path};
    char q[32] = "";
    if (!lfm2c_hub_quant_of(f.file, q, sizeof q)) q[0] = 0;
    f.quant = q;
    f.bytes = os_stat(path, &st) ? 0 : (uint64_t)st.size;
    pthread_mutex_lock(&r->mu);
    add_cached(r, &f);
    serve_entry *e = find_real(r, real);
    if (e) snprintf(id, cap, "%s", e->id);
    pthread_mutex_unlock(&r->mu);
    free(real);
    if (e) { /* the pull may have brought its mmproj: the listing says so once it is not loaded without */
        pthread_mutex_lock(&r->facts_mu); /* (a first read of its facts is done or not begun) */
        char *mmproj = mmproj_of(r, e);
        const int kind = mmproj ? lfm2c_mmproj_kind(mmproj, NULL) : 0;
        free(mmproj);
        pthread_mutex_lock(&r->mu);
        if (e->facts.ok) e->facts.mmproj = kind > 0 ? kind : 0;
        pthread_mutex_unlock(&r->mu);
        pthread_mutex_unlock(&r->facts_mu);
    }
    return e ? 0 : -1;
}

/* The cache directory a cached file lies in: the path before its models--ORG--NAME. */
static char *cache_of(const char *real) {
    const char *m = strstr(real, "/models--");
    while (m && strstr(m + 1, "/models--")) m = strstr(m + 1, "/models--");
    return m ? strndup(real, (size_t)(m - real)) : NULL;
}

int models_delete(serve_models *r, const char *name, int *status, char *msg, size_t cap) {
    int lora;
    pthread_mutex_lock(&r->mu);
    serve_entry *e = resolve(r, name, &lora);
    char repo[256] = "", quant[32] = "", *cache = NULL;
    if (e && lora < 0 && e->from_cache && e->repo[0] && e->quant[0]) { /* found in the cache, not given */
        snprintf(repo, sizeof repo, "%s", e->repo);
        snprintf(quant, sizeof quant, "%s", e->quant);
        cache = cache_of(e->path);
        if (!cache) cache = cache_of(e->real);
    }
    pthread_mutex_unlock(&r->mu);
    if (!e) return fail(404, status, msg, cap, NULL), -1;
    if (!cache)
        return snprintf(msg, cap,
                        "'%s' is %s, not a model of the Hugging Face cache: it is not deleted (remove the file "
                        "yourself)",
                        name, lora >= 0 ? "a LoRA adapter" : "a file given to the server"),
               *status = 400, -1;
    lfm2c_error err = {0};
    int n = lfm2c_hub_remove(cache, repo, quant, NULL, NULL, &err);
    free(cache);
    if (n < 0) return snprintf(msg, cap, "%s", err.msg), *status = 500, -1;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n; i++) { /* this quant's entries (every snapshot) are gone */
        serve_entry *x = r->e[i];
        if (x->deleted || strcasecmp(x->repo, repo) || strcasecmp(x->quant, quant)) continue;
        x->deleted = true;
        x->expires = lfm2c_now_s();
        if (x->state == MODEL_LOADED && x->refs == 0) unload_locked(r, x, "deleted");
    }
    pthread_mutex_unlock(&r->mu);
    say(r, "deleted model %s (%d files)", name, n);
    return 0;
}

/* ---- life -------------------------------------------------------------------------------------- */

serve_models *models_new(const models_params *p, serve_shared *sh) {
    serve_models *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->p = *p;
    r->sh = sh;
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->facts_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->changed, &ca);
    pthread_cond_init(&r->wake, &ca);
    pthread_condattr_destroy(&ca);
    r->reaper_on = pthread_create(&r->reaper, NULL, reaper_main, r) == 0;
    return r;
}

void models_shutdown(serve_models *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_broadcast(&r->changed);
    pthread_cond_signal(&r->wake);
    for (int i = 0; i < r->n; i++)
        if (r->e[i]->state == MODEL_LOADED) sched_shutdown(r->e[i]->s);
    pthread_mutex_unlock(&r->mu);
}

/* Entries a thread is loading or unloading (lock held). */
static int in_transition(serve_models *r) {
    int n = 0;
    for (int i = 0; i < r->n; i++) n += r->e[i]->state == MODEL_LOADING || r->e[i]->state == MODEL_UNLOADING;
    return n;
}

#define FREE_WAIT_S 3.0 /* how long models_free waits for loads and unloads still running */

void models_free(serve_models *r) {
    if (!r) return;
    models_shutdown(r);
    if (r->reaper_on) pthread_join(r->reaper, NULL);
    /* a load or unload still running (on a thread nobody joined) ends first: each is bounded */
    pthread_mutex_lock(&r->mu);
    const double until = lfm2c_now_s() + FREE_WAIT_S;
    while (in_transition(r) && lfm2c_now_s() < until) wait_until(&r->changed, &r->mu, until);
    int busy = in_transition(r);
    pthread_mutex_unlock(&r->mu);
    if (busy) { /* its thread still uses the registry: left to the process's exit, not freed */
        say(r, "%d models still loading or unloading at exit: not freed", busy);
        return;
    }
    for (int i = 0; i < r->n; i++) {
        serve_entry *e = r->e[i];
        if (e->state == MODEL_LOADED) {
            loaded l = {.model = e->model, .draft = e->draft, .mm = e->mm, .amm = e->amm, .s = e->s};
            memcpy(l.loras, e->loras, sizeof l.loras);
            loaded_free(&l, e->n_lora);
        }
        entry_free(e);
    }
    free(r->e);
    free(r->cache);
    pthread_cond_destroy(&r->changed);
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->facts_mu);
    free(r);
}
