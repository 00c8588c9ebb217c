/* test_models_stress.c — the models registry of `lfm2c serve` (src/serve/models.c) under churn,
 * without HTTP, bounded in time: 16 threads acquire and release three tiny models (two files and
 * one of a Hugging Face cache) with --max-loaded 1, keep-alives of 0, -1, 20 ms and the default;
 * a third of the holds generate two tokens, a third submit and cancel at once (a stream closed
 * midway), a third only hold; meanwhile a thread unloads models (`lfm2c stop`), deletes the
 * cached model and pulls it back (its files written again, models_add_pulled), and one lists
 * them (/api/ps, /api/tags, /metrics). Every wait must end: the wait deadline is far past the
 * test's own, so a hold that does not come back in time is a deadlock (the states of the models
 * are printed and the test fails at once). Every hold must succeed but for the churned model
 * (404 once deleted, 500 when its file went away during its load). Then the same churn with
 * models_shutdown (SIGTERM) in the middle: every thread returns within seconds and
 * models_free leaves nothing behind (ASan's leak check; scripts/test.sh runs it under
 * ThreadSanitizer too). LFM2C_STRESS_SECONDS sets the churn's length (default 3; up to 4 times
 * that on a slow machine, until it did enough of each). */
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
#define CACHED "org/tiny-GGUF:Q8_0"
#define N_WORKERS 16
#define WAIT_S 60.0  /* the registry's deadline: never reached unless something is stuck */
#define GRACE_S 12.0 /* the test's own: workers must be back this long after the churn ends */

static serve_shared sh;
static char cache[600], snap_file[800], blob_file[800];
static char *fixture;
static size_t fixture_n;

/* What every thread shares: the run's end, the outcomes, who is still running. */
typedef struct run {
    serve_models *r;
    bool stop, shutdown_phase; /* (atomic) the churn is over; models_shutdown is called */
    pthread_mutex_t mu;
    pthread_cond_t done;
    int running;
    long ok, gen, cancelled, gone, bad, unloads, deletes, pulls, lists, loads;
    double seconds; /* how long it ran */
    char first_bad[600];
} run;

static uint32_t next_rand(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static void tally(run *u, long *counter, const char *bad_msg) {
    pthread_mutex_lock(&u->mu);
    (*counter)++;
    if (bad_msg && !u->first_bad[0]) snprintf(u->first_bad, sizeof u->first_bad, "%s", bad_msg);
    pthread_mutex_unlock(&u->mu);
}

/* The cached model's files: CACHE/models--org--tiny-GGUF/{blobs/SHA, snapshots/c0ffee/FILE}. */
static bool write_cached(void) {
    char dir[800];
    snprintf(dir, sizeof dir, "%s/models--org--tiny-GGUF/blobs", cache);
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "mkdir -p %s %s/models--org--tiny-GGUF/snapshots/c0ffee", dir, cache);
    if (system(cmd) != 0) return false;
    char tmp[820];
    snprintf(tmp, sizeof tmp, "%s.part", blob_file);
    FILE *f = fopen(tmp, "wb");
    if (!f) return false;
    bool ok = fwrite(fixture, 1, fixture_n, f) == fixture_n;
    ok = !fclose(f) && ok && !rename(tmp, blob_file);
    unlink(snap_file);
    char target[200];
    snprintf(target, sizeof target, "../../blobs/%s", strrchr(blob_file, '/') + 1);
    return ok && !os_symlink(target, snap_file);
}

/* One hold: generate, submit and cancel, or only hold (api is the model's, held). */
static void use(run *u, serve_api *api, uint32_t *seed) {
    uint32_t how = next_rand(seed) % 3;
    if (how == 2) {
        usleep(next_rand(seed) % 2000);
        return;
    }
    sched_req *q = sched_req_new();
    q->prompt = malloc(3 * sizeof(int32_t));
    for (int i = 0; i < 3; i++) q->prompt[i] = 1 + (int32_t)(next_rand(seed) % 200);
    q->n_prompt = 3;
    q->sampling = lfm2c_sampler_default_params();
    q->sampling.temperature = 0;
    q->max_tokens = 2;
    q->n_logprobs = -1;
    q->stop_hit = -1;
    if (sched_submit(api->sched, q)) { /* the queue is full, or the server stops: a 503 of its own */
        sched_release(api->sched, q);
        return;
    }
    if (how == 0) {
        double t0 = lfm2c_now_s();
        sched_lock(api->sched);
        while (q->finish == FINISH_NONE && lfm2c_now_s() - t0 < 20) sched_wait(api->sched, q, 100);
        int fin = q->finish;
        sched_unlock(api->sched);
        tally(u, fin == FINISH_NONE ? &u->bad : &u->gen, fin == FINISH_NONE ? "a generation did not end" : NULL);
    } else tally(u, &u->cancelled, NULL);
    sched_release(api->sched, q);
}

static void *worker(void *arg) {
    run *u = arg;
    static const char *const names[] = {"dense", "moe", CACHED};
    static const double kas[] = {0, -1, 0.02, NAN};
    uint32_t seed = (uint32_t)(uintptr_t)&seed;
    while (!__atomic_load_n(&u->stop, __ATOMIC_SEQ_CST)) {
        const char *name = names[next_rand(&seed) % 3];
        int lora, status = 0;
        char msg[400], line[600];
        serve_api *api = models_acquire(u->r, name, kas[next_rand(&seed) % 4], &lora, &status, msg, sizeof msg);
        if (api) {
            use(u, api, &seed);
            models_release(api);
            tally(u, &u->ok, NULL);
        } else if ((status == 404 || status == 500) && !strcmp(name, CACHED)) tally(u, &u->gone, NULL);
        else if (status == 503 && __atomic_load_n(&u->shutdown_phase, __ATOMIC_SEQ_CST)) break;
        else {
            snprintf(line, sizeof line, "%s: %d %s", name, status, msg);
            tally(u, &u->bad, line);
        }
    }
    pthread_mutex_lock(&u->mu);
    u->running--;
    pthread_cond_broadcast(&u->done);
    pthread_mutex_unlock(&u->mu);
    return NULL;
}

/* Unloads, deletes and pulls back the cached model, lists (as the management routes do). */
static void *churner(void *arg) {
    run *u = arg;
    uint32_t seed = 7;
    for (int i = 0; !__atomic_load_n(&u->stop, __ATOMIC_SEQ_CST); i++) {
        usleep(5000 + next_rand(&seed) % 10000);
        static const char *const names[] = {"dense", "moe", CACHED};
        if (models_unload(u->r, names[next_rand(&seed) % 3]) == 0) tally(u, &u->unloads, NULL);
        model_row *rows = NULL;
        models_list(u->r, i % 2, &rows);
        free(rows);
        sched_stats st;
        models_stats(u->r, &st);
        tally(u, &u->lists, NULL);
        if (i % 8 != 7) continue;
        int status;
        char msg[400], id[300];
        if (models_delete(u->r, CACHED, &status, msg, sizeof msg) == 0) tally(u, &u->deletes, NULL);
        usleep(next_rand(&seed) % 5000);
        if (write_cached() && models_add_pulled(u->r, snap_file, id, sizeof id) == 0) tally(u, &u->pulls, NULL);
    }
    pthread_mutex_lock(&u->mu);
    u->running--;
    pthread_cond_broadcast(&u->done);
    pthread_mutex_unlock(&u->mu);
    return NULL;
}

/* Waits until every thread is back or `until` passes: true when all are back. */
static bool wait_back(run *u, double until) {
    pthread_mutex_lock(&u->mu);
    while (u->running > 0 && lfm2c_now_s() < until) {
        pthread_mutex_unlock(&u->mu);
        usleep(10000);
        pthread_mutex_lock(&u->mu);
    }
    bool back = u->running == 0;
    pthread_mutex_unlock(&u->mu);
    return back;
}

/* The deadlock's evidence: each model's state and holds, then the test fails at once (the
 * stuck threads cannot be joined). */
static void stuck(run *u, const char *when) {
    static const char *const state[] = {"available", "loading", "loaded", "unloading"};
    fprintf(stderr, "FAIL %s: %d threads still waiting %.0f s after the churn ended (a deadlock); the models:\n", when,
            u->running, GRACE_S);
    model_row *rows = NULL;
    int n = models_list(u->r, false, &rows);
    for (int i = 0; i < n; i++)
        fprintf(stderr, "  %s: %s, %d holds, %llu loads\n", rows[i].id,
                rows[i].state >= 0 && rows[i].state < 4 ? state[rows[i].state] : "?", rows[i].refs,
                (unsigned long long)rows[i].loads);
    free(rows);
    fprintf(stderr, "(%ld holds served before)\n", u->ok);
    printf("%d passed, %d failed\n", test_passed, test_failed + 1);
    fflush(stdout);
    _exit(1);
}

static serve_models *new_registry(void) {
    models_params p = {.mp = lfm2c_model_default_params(),
                       .sp = {.n_slots = 1, .n_ctx = 64, .queue_max = 4, .prefill_chunk = 64},
                       .keep_alive = 0.05,
                       .max_loaded = 1,
                       .wait_s = WAIT_S};
    p.mp.n_threads = 2;
    p.mp.shared_threads = true; /* as the server runs them: one pool, the models' steps take turns */
    serve_models *r = models_new(&p, &sh);
    lfm2c_error err = {0};
    CHECK(models_add_file(r, DENSE, "dense", &err) == 0, "%s", err.msg);
    CHECK(models_add_file(r, MOE, "moe", &err) == 0, "%s", err.msg);
    CHECK(models_add_cache(r, cache, true) == 1, "the cached model");
    model_row *rows = NULL; /* their headers read, as the server's start does (its listing) */
    CHECK(models_list(r, false, &rows) == 3, "three models");
    free(rows);
    return r;
}

/* The models' loads so far (those not deleted). */
static long loads(serve_models *r) {
    model_row *rows = NULL;
    long n = 0;
    for (int i = 0, k = models_list(r, false, &rows); i < k; i++) n += (long)rows[i].loads;
    free(rows);
    return n;
}

/* Whether the churn did all it should (a slow machine or sanitizer takes longer). */
static bool enough(run *u) {
    pthread_mutex_lock(&u->mu);
    bool done = u->ok >= 40 && u->gen >= 5 && u->cancelled >= 5 && u->deletes && u->pulls && u->unloads;
    pthread_mutex_unlock(&u->mu);
    return done && loads(u->r) >= 8;
}

/* The churn for `seconds` (longer, up to 4 times, until it did enough); with shutdown_at > 0,
 * models_shutdown that far into it instead. */
static void churn(run *u, double seconds, double shutdown_at, const char *when) {
    pthread_mutex_init(&u->mu, NULL);
    pthread_cond_init(&u->done, NULL);
    u->r = new_registry();
    const double t0 = lfm2c_now_s();
    u->running = N_WORKERS + 1;
    pthread_t t[N_WORKERS + 1];
    for (int i = 0; i < N_WORKERS; i++) pthread_create(&t[i], NULL, worker, u);
    pthread_create(&t[N_WORKERS], NULL, churner, u);
    if (shutdown_at > 0) {
        while (lfm2c_now_s() < t0 + shutdown_at) usleep(10000);
        /* before models_shutdown: a 503 from here on is the shutdown's */
        __atomic_store_n(&u->shutdown_phase, true, __ATOMIC_SEQ_CST);
        __atomic_store_n(&u->stop, true, __ATOMIC_SEQ_CST);
        const double ts = lfm2c_now_s();
        models_shutdown(u->r);
        bool back = wait_back(u, ts + GRACE_S);
        if (!back) stuck(u, when);
        CHECK(lfm2c_now_s() - ts < 5, "%s: every thread back %.2f s after models_shutdown", when, lfm2c_now_s() - ts);
    } else {
        while (lfm2c_now_s() < t0 + seconds || (lfm2c_now_s() < t0 + 4 * seconds && !enough(u))) usleep(20000);
        __atomic_store_n(&u->stop, true, __ATOMIC_SEQ_CST);
        if (!wait_back(u, lfm2c_now_s() + GRACE_S)) stuck(u, when);
    }
    for (int i = 0; i <= N_WORKERS; i++) pthread_join(t[i], NULL);
    u->loads = loads(u->r);
    u->seconds = lfm2c_now_s() - t0;
    models_free(u->r);
    pthread_mutex_destroy(&u->mu);
    pthread_cond_destroy(&u->done);
}

int main(void) {
    char dir[] = "/tmp/lfm2c-stress-XXXXXX";
    CHECK(os_mkdtemp(dir) != NULL, "temp dir");
    snprintf(cache, sizeof cache, "%s/hub", dir);
    snprintf(blob_file, sizeof blob_file, "%s/models--org--tiny-GGUF/blobs/74696e79%056d", cache, 0);
    snprintf(snap_file, sizeof snap_file, "%s/models--org--tiny-GGUF/snapshots/c0ffee/tiny-Q8_0.gguf", cache);
    fixture = test_read_file(DENSE, &fixture_n);
    CHECK(fixture && write_cached(), "the cached model's files");
    const char *env = getenv("LFM2C_STRESS_SECONDS");
    double seconds = env && atof(env) > 0 ? atof(env) : 3;
    server_params sp = {.alias = "m", .n_ctx = 64, .max_messages = 64, .max_stop_bytes = 1024};
    serve_shared_init(&sh, &sp);

    run a = {0};
    churn(&a, seconds, 0, "churn");
    printf("churn %.1f s: %ld holds (%ld generated, %ld cancelled), %ld refused as deleted, %ld loads, %ld unloads "
           "asked, %ld deletes, %ld pulls, %ld listings\n",
           a.seconds, a.ok, a.gen, a.cancelled, a.gone, a.loads, a.unloads, a.deletes, a.pulls, a.lists);
    CHECK(a.bad == 0, "every hold served (%ld were not; the first: %s)", a.bad, a.first_bad);
    CHECK(a.ok >= 40 && a.gen >= 5 && a.cancelled >= 5 && a.loads >= 8, "the churn ran (%ld holds, %ld loads)", a.ok,
          a.loads);
    CHECK(a.deletes > 0 && a.pulls > 0 && a.unloads > 0, "deletes, pulls and unloads happened");

    run b = {0};
    churn(&b, seconds, seconds / 2, "shutdown during the churn");
    CHECK(b.bad == 0, "shutdown: every hold served or refused 503 (%ld were not; the first: %s)", b.bad, b.first_bad);
    printf("shutdown after %.1f s of churn: %ld holds before it\n", seconds / 2, b.ok);

    serve_shared_free(&sh);
    free(fixture);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    TEST_MAIN_END();
}
