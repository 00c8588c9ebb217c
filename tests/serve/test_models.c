/* test_models.c — the models registry of `lfm2c serve` (src/serve/models.c) on the tiny
 * fixtures, without HTTP: names (the id, the file name with and without .gguf, NAME:latest, any
 * case, a cache's ORG/NAME:QUANT and ORG/NAME for its preferred quant, adapters as NAME and
 * MODEL:NAME), one load shared by concurrent first holds, keep-alive 0 unloading at the last
 * release and a short keep-alive by the reaper, the least recently used idle model evicted past
 * --max-loaded or the memory budget, a busy model never evicted (503 after the wait), every wait
 * ended at the request's own deadline (503, naming --load-timeout), a corrupt
 * file's failed load (500 naming the file; the other model still served), a cache's model
 * deleted (its files gone, 404 after), a file given to the server not deleted; and the parsers
 * of durations (keep_alive) and sizes (--memory-budget). */
#include "serve/models.h"
#include "base/clock.h"
#include "test.h"
#include "base/os.h"

#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DENSE "data/lfm2-tiny-dense-q8_0.gguf"
#define MOE "data/lfm2-tiny-moe-q8_0.gguf"

static serve_shared sh;

static models_params params(void) {
    models_params p = {.mp = lfm2c_model_default_params(),
                       .sp = {.n_slots = 1, .n_ctx = 256, .queue_max = 4, .prefill_chunk = 64},
                       .keep_alive = -1,
                       .wait_s = 0.3};
    p.mp.n_threads = 1;
    return p;
}

static int state_of(serve_models *r, const char *name) {
    model_row row;
    return models_row(r, name, &row) ? row.state : -1;
}

static uint64_t loads_of(serve_models *r, const char *name) {
    model_row row;
    return models_row(r, name, &row) ? row.loads : 0;
}

static serve_api *hold(serve_models *r, const char *name, double keep_alive, int *status) {
    int lora;
    char msg[400];
    *status = 0;
    return models_acquire(r, name, keep_alive, &lora, status, msg, sizeof msg);
}

static void test_parsers(void) {
    static const struct {
        const char *s;
        double v;
    } good[] = {{"5m", 300}, {"1h30m", 5400}, {"300ms", 0.3}, {"-1", -1},     {"-5m", -1},
                {"0", 0},    {"120", 120},    {"1.5h", 5400}, {"2m30s", 150}, {"0s", 0}};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        double v = -99;
        CHECK(dl_parse_duration(good[i].s, &v) && fabs(v - good[i].v) < 1e-9, "duration '%s' -> %g", good[i].s, v);
    }
    static const char *const bad[] = {"", "m", "5x", "abc", "5m3", "--1", "1e999h", "5 m"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        double v;
        CHECK(!dl_parse_duration(bad[i], &v), "duration '%s' is refused", bad[i]);
    }
    size_t b = 0;
    CHECK(models_parse_bytes("8G", &b) && b == 8ull << 30, "8G -> %zu", b);
    CHECK(models_parse_bytes("512MiB", &b) && b == 512ull << 20, "512MiB -> %zu", b);
    CHECK(models_parse_bytes("1024", &b) && b == 1024, "1024 -> %zu", b);
    CHECK(models_parse_bytes("50%", &b) && b > 0 && b < models_default_budget(), "50%% of RAM -> %zu", b);
    CHECK(!models_parse_bytes("x", &b) && !models_parse_bytes("5Q", &b) && !models_parse_bytes("-1", &b) &&
              !models_parse_bytes("120%", &b) && !models_parse_bytes("5GX", &b),
          "bad sizes are refused");
}

static void test_names(void) {
    serve_models *r = models_new(&(models_params){.keep_alive = -1}, &sh);
    lfm2c_error err = {0};
    CHECK(models_add_file(r, DENSE, NULL, &err) == 0, "add: %s", err.msg);
    CHECK(models_add_file(r, MOE, "moe", &err) == 0, "add: %s", err.msg);
    CHECK(models_add_file(r, DENSE, NULL, &err) == -1 && strstr(err.msg, "twice"), "the same file twice: %s", err.msg);
    CHECK(models_add_file(r, "data/none.gguf", NULL, &err) == -1 && strstr(err.msg, "none.gguf"), "a missing file: %s",
          err.msg);
    CHECK(models_add_lora(r, NULL, "one", "x.gguf", 1, &err) == 0, "adapter of the first model: %s", err.msg);
    CHECK(models_add_lora(r, "moe", "two", "y.gguf", 0.5f, &err) == 0, "adapter of moe: %s", err.msg);
    CHECK(models_add_lora(r, "moe", "one", "z.gguf", 1, &err) == -1 && strstr(err.msg, "twice"), "%s", err.msg);
    CHECK(models_add_lora(r, "nope", "three", "z.gguf", 1, &err) == -1 && strstr(err.msg, "nope"), "%s", err.msg);
    char id[300];
    static const char *const dense_names[] = {NULL,
                                              "",
                                              "lfm2-tiny-dense-q8_0.gguf",
                                              "lfm2-tiny-dense-q8_0",
                                              "LFM2-TINY-DENSE-Q8_0",
                                              "lfm2-tiny-dense-q8_0:latest",
                                              "one"};
    for (size_t i = 0; i < sizeof dense_names / sizeof *dense_names; i++)
        CHECK(models_exists(r, dense_names[i], id, sizeof id) && !strcmp(id, "lfm2-tiny-dense-q8_0.gguf"),
              "'%s' names the first model (%s)", dense_names[i] ? dense_names[i] : "(none)", id);
    static const char *const moe_names[] = {"moe", "MOE:latest", "lfm2-tiny-moe-q8_0.gguf", "two", "moe:two"};
    for (size_t i = 0; i < sizeof moe_names / sizeof *moe_names; i++)
        CHECK(models_exists(r, moe_names[i], id, sizeof id) && !strcmp(id, "moe"), "'%s' names moe (%s)", moe_names[i],
              id);
    static const char *const none[] = {"nope", "moe:one", "lfm2-tiny-dense", "moe:", ":latest", "moe:three"};
    for (size_t i = 0; i < sizeof none / sizeof *none; i++)
        CHECK(!models_exists(r, none[i], NULL, 0), "'%s' names no model", none[i]);
    CHECK(models_count(r) == 2, "two models");
    models_free(r);
}

typedef struct holder {
    serve_models *r;
    serve_api *api;
    int status;
} holder;

static void *hold_main(void *arg) {
    holder *h = arg;
    h->api = hold(h->r, "moe", NAN, &h->status);
    return NULL;
}

/* Eight first requests at once: one load, every one served by it. */
static void test_one_load(void) {
    models_params p = params();
    serve_models *r = models_new(&p, &sh);
    models_add_file(r, DENSE, NULL, NULL);
    models_add_file(r, MOE, "moe", NULL);
    CHECK(state_of(r, "moe") == MODEL_AVAILABLE, "not loaded before a request");
    holder h[8];
    pthread_t t[8];
    for (int i = 0; i < 8; i++) {
        h[i] = (holder){.r = r};
        pthread_create(&t[i], NULL, hold_main, &h[i]);
    }
    int served = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        served += h[i].api != NULL && h[i].api == h[0].api && h[i].api->model != NULL;
    }
    CHECK(served == 8 && loads_of(r, "moe") == 1, "8 first holds at once: %d served, %llu loads", served,
          (unsigned long long)loads_of(r, "moe"));
    model_row row;
    CHECK(models_row(r, "moe", &row) && row.refs == 8 && row.state == MODEL_LOADED, "8 holds (%d)", row.refs);
    for (int i = 0; i < 8; i++) models_release(h[i].api);
    CHECK(state_of(r, "moe") == MODEL_LOADED, "keep-alive -1: still loaded when idle");
    CHECK(state_of(r, "lfm2-tiny-dense-q8_0.gguf") == MODEL_AVAILABLE, "the other model never loaded");
    models_free(r);
}

/* keep-alive 0 unloads at the last release; a short one by the reaper; a later hold loads again. */
static void test_keep_alive(void) {
    models_params p = params();
    serve_models *r = models_new(&p, &sh);
    models_add_file(r, MOE, "moe", NULL);
    int st;
    serve_api *a = hold(r, "moe", 0, &st), *b = hold(r, "moe", 0, &st);
    CHECK(a && a == b, "two holds");
    models_release(a);
    CHECK(state_of(r, "moe") == MODEL_LOADED, "keep-alive 0: loaded while held");
    models_release(b);
    CHECK(state_of(r, "moe") == MODEL_AVAILABLE, "keep-alive 0: unloaded at the last release");
    a = hold(r, "moe", 0.2, &st);
    models_release(a);
    CHECK(state_of(r, "moe") == MODEL_LOADED && loads_of(r, "moe") == 2, "loaded again (%llu loads)",
          (unsigned long long)loads_of(r, "moe"));
    double t0 = lfm2c_now_s();
    while (state_of(r, "moe") != MODEL_AVAILABLE && lfm2c_now_s() - t0 < 5) usleep(20000);
    double took = lfm2c_now_s() - t0;
    CHECK(state_of(r, "moe") == MODEL_AVAILABLE && took >= 0.1 && took < 2, "keep-alive 0.2 s: unloaded after %.2f s",
          took);
    CHECK(models_unload(r, "nope") == -1, "unloading an unknown model");
    a = hold(r, "moe", -1, &st);
    models_release(a);
    CHECK(models_unload(r, "moe") == 0 && state_of(r, "moe") == MODEL_AVAILABLE, "an idle model unloaded at once");
    models_free(r);
}

/* --max-loaded 1: the idle model goes; a busy one stays and the other request gets 503. */
static void test_evict(void) {
    models_params p = params();
    p.max_loaded = 1;
    serve_models *r = models_new(&p, &sh);
    models_add_file(r, DENSE, "dense", NULL);
    models_add_file(r, MOE, "moe", NULL);
    int st;
    serve_api *a = hold(r, "dense", NAN, &st);
    models_release(a);
    serve_api *b = hold(r, "moe", NAN, &st);
    CHECK(b && state_of(r, "dense") == MODEL_AVAILABLE && state_of(r, "moe") == MODEL_LOADED,
          "the idle model evicted for the other");
    double t0 = lfm2c_now_s();
    a = hold(r, "dense", NAN, &st);
    CHECK(!a && st == 503 && lfm2c_now_s() - t0 >= 0.25, "the busy model stays: 503 after the wait (%d)", st);
    models_release(b);
    a = hold(r, "dense", NAN, &st);
    CHECK(a && state_of(r, "moe") == MODEL_AVAILABLE, "once idle it is evicted");
    models_release(a);
    models_free(r);

    /* the memory budget: both models' bytes but one */
    p = params();
    r = models_new(&p, &sh);
    models_add_file(r, DENSE, "dense", NULL);
    models_add_file(r, MOE, "moe", NULL);
    model_row ra, rb;
    CHECK(models_row(r, "dense", &ra) && models_row(r, "moe", &rb) && ra.facts.ok && ra.bytes > ra.file_bytes,
          "facts read before loading: %llu bytes (file %llu)", (unsigned long long)ra.bytes,
          (unsigned long long)ra.file_bytes);
    models_free(r);
    p.memory_budget = ra.bytes + rb.bytes - 1;
    r = models_new(&p, &sh);
    models_add_file(r, DENSE, "dense", NULL);
    models_add_file(r, MOE, "moe", NULL);
    a = hold(r, "dense", NAN, &st);
    models_release(a);
    b = hold(r, "moe", NAN, &st);
    CHECK(b && state_of(r, "dense") == MODEL_AVAILABLE, "past the budget the idle model goes");
    models_release(b);
    models_free(r);
}

typedef struct timed_hold {
    serve_models *r;
    double delay, took;
    int status;
    char msg[400];
} timed_hold;

static void *timed_hold_main(void *arg) {
    timed_hold *h = arg;
    usleep((useconds_t)(h->delay * 1e6));
    int lora;
    double t0 = lfm2c_now_s();
    serve_api *a = models_acquire(h->r, "moe", NAN, &lora, &h->status, h->msg, sizeof h->msg);
    h->took = lfm2c_now_s() - t0;
    models_release(a);
    return NULL;
}

/* Every wait ends at the request's own deadline (wait_s from its start): a request that waits
 * for another's load of its model, which itself waits for room, is refused 503 once its own time
 * is up, not after the other's wait and then a wait of its own. */
static void test_deadline(void) {
    models_params p = params();
    p.max_loaded = 1;
    p.wait_s = 1.0;
    serve_models *r = models_new(&p, &sh);
    models_add_file(r, DENSE, "dense", NULL);
    models_add_file(r, MOE, "moe", NULL);
    int st;
    serve_api *busy = hold(r, "dense", NAN, &st);
    timed_hold first = {.r = r}, second = {.r = r, .delay = 0.5};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, timed_hold_main, &first);
    pthread_create(&t2, NULL, timed_hold_main, &second);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK(first.status == 503 && strstr(first.msg, "no room") && strstr(first.msg, "--load-timeout") &&
              first.took >= 0.95 && first.took < 1.3,
          "the loader waiting for room: 503 after %.2f s: %s", first.took, first.msg);
    CHECK(second.status == 503 && second.took >= 0.95 && second.took < 1.3,
          "the request waiting for its load: 503 at its own deadline, after %.2f s (%s)", second.took, second.msg);
    CHECK(state_of(r, "moe") == MODEL_AVAILABLE && state_of(r, "dense") == MODEL_LOADED,
          "nothing left loading: moe %d, dense %d", state_of(r, "moe"), state_of(r, "dense"));
    models_release(busy);
    serve_api *a = hold(r, "moe", NAN, &st);
    CHECK(a && state_of(r, "dense") == MODEL_AVAILABLE, "once the busy model is idle, the other loads");
    models_release(a);
    models_free(r);
}

/* A truncated file: its load fails with a clear message; the other model serves on. */
static void test_corrupt(const char *dir) {
    char bad[600];
    snprintf(bad, sizeof bad, "%s/broken-q8_0.gguf", dir);
    size_t n = 0;
    char *bytes = test_read_file(MOE, &n);
    FILE *f = fopen(bad, "wb");
    if (f && bytes) fwrite(bytes, 1, n / 2, f);
    if (f) fclose(f);
    free(bytes);
    models_params p = params();
    serve_models *r = models_new(&p, &sh);
    models_add_file(r, bad, "broken", NULL);
    models_add_file(r, DENSE, "dense", NULL);
    int lora, st = 0;
    char msg[400];
    serve_api *a = models_acquire(r, "broken", NAN, &lora, &st, msg, sizeof msg);
    CHECK(!a && st == 500 && strstr(msg, "broken-q8_0.gguf") && strstr(msg, "broken"), "a failed load: %d %s", st, msg);
    serve_api *b = hold(r, "dense", NAN, &st);
    CHECK(b && b->model, "the other model loads and serves");
    models_release(b);
    a = models_acquire(r, "broken", NAN, &lora, &st, msg, sizeof msg);
    CHECK(!a && st == 500 && state_of(r, "broken") == MODEL_AVAILABLE, "tried again, failed again: %s", msg);
    models_free(r);
    unlink(bad);
}

/* A Hugging Face cache: CACHE/models--ORG--NAME/snapshots/C/FILE -> ../../blobs/SHA. */
static void make_cached(const char *cache, const char *repo_dir, const char *file, const char *src) {
    char path[1200], blob[1300], link[1300];
    snprintf(path, sizeof path, "%s/%s/snapshots/c0ffee", cache, repo_dir);
    char cmd[2800];
    snprintf(cmd, sizeof cmd, "mkdir -p %s %s/%s/blobs", path, cache, repo_dir);
    CHECK(system(cmd) == 0, "%s", cmd);
    snprintf(blob, sizeof blob, "%s/%s/blobs/%.8s%056d", cache, repo_dir, file, 0);
    snprintf(cmd, sizeof cmd, "cp %s %s", src, blob);
    CHECK(system(cmd) == 0, "%s", cmd);
    snprintf(link, sizeof link, "%s/%s", path, file);
    char target[400];
    snprintf(target, sizeof target, "../../blobs/%s", strrchr(blob, '/') + 1);
    CHECK(os_symlink(target, link) == 0, "link %s", link);
}

static void test_cache(const char *dir) {
    char cache[600];
    snprintf(cache, sizeof cache, "%s/hub", dir);
    make_cached(cache, "models--org--tiny-GGUF", "tiny-Q8_0.gguf", DENSE);
    make_cached(cache, "models--org--tiny-GGUF", "tiny-Q4_K_M.gguf", DENSE);
    make_cached(cache, "models--org--moe-GGUF", "moe-Q8_0.gguf", MOE);
    models_params p = params();
    serve_models *r = models_new(&p, &sh);
    lfm2c_error err = {0};
    CHECK(models_add_file(r, DENSE, NULL, &err) == 0, "%s", err.msg);
    CHECK(models_add_cache(r, cache, true) == 3, "three cached models");
    char id[300];
    CHECK(models_exists(r, "org/tiny-GGUF", id, sizeof id) && !strcmp(id, "org/tiny-GGUF:Q4_K_M"),
          "ORG/NAME: the preferred quant (%s)", id);
    CHECK(models_exists(r, "hf.co/org/moe-GGUF:q8_0", id, sizeof id) && !strcmp(id, "org/moe-GGUF:Q8_0"),
          "hf.co/ORG/NAME:quant (%s)", id);
    CHECK(models_exists(r, "tiny-Q8_0", id, sizeof id) && !strcmp(id, "org/tiny-GGUF:Q8_0"), "a cached file's name");
    int st;
    serve_api *a = hold(r, "org/moe-GGUF:Q8_0", NAN, &st);
    CHECK(a && a->model && !strcmp(a->alias, "org/moe-GGUF:Q8_0"), "a cached model loads under its id");
    models_release(a);
    char msg[400];
    CHECK(models_delete(r, "lfm2-tiny-dense-q8_0.gguf", &st, msg, sizeof msg) == -1 && st == 400 &&
              access(DENSE, F_OK) == 0,
          "a file given to the server is not deleted: %d %s", st, msg);
    CHECK(models_delete(r, "org/moe-GGUF:Q8_0", &st, msg, sizeof msg) == 0, "delete: %s", msg);
    CHECK(!models_exists(r, "org/moe-GGUF:Q8_0", NULL, 0) && state_of(r, "org/moe-GGUF:Q8_0") == -1,
          "deleted: no longer named (and unloaded)");
    char link[800];
    snprintf(link, sizeof link, "%s/models--org--moe-GGUF/snapshots/c0ffee/moe-Q8_0.gguf", cache);
    CHECK(access(link, F_OK) != 0, "its file is gone");
    CHECK(models_delete(r, "org/moe-GGUF:Q8_0", &st, msg, sizeof msg) == -1 && st == 404, "deleted twice: 404");
    make_cached(cache, "models--org--new-GGUF", "new-F16.gguf", MOE);
    model_row *rows = NULL;
    int n = models_list(r, false, &rows);
    bool seen = false;
    for (int i = 0; i < n; i++) seen |= !strcmp(rows[i].id, "org/new-GGUF:F16");
    free(rows);
    CHECK(n == 4 && seen, "a model added to the cache meanwhile is listed (%d)", n);
    models_free(r);
}

int main(void) {
    char dir[] = "/tmp/lfm2c-models-XXXXXX";
    CHECK(os_mkdtemp(dir) != NULL, "temp dir");
    server_params sp = {.alias = "m", .n_ctx = 256, .max_messages = 64, .max_stop_bytes = 1024};
    serve_shared_init(&sh, &sp);
    test_parsers();
    test_names();
    test_one_load();
    test_keep_alive();
    test_evict();
    test_deadline();
    test_corrupt(dir);
    test_cache(dir);
    serve_shared_free(&sh);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    TEST_MAIN_END();
}
