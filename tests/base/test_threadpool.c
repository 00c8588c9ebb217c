/* test_threadpool.c — the pool under normal use and under oversubscription (many more threads
 * than cores; at most one thread per allowed CPU is started): every index of every job runs exactly once, jobs see the previous job's writes,
 * a thread that stalls in its index does not keep the other indices from being run by others,
 * many jobs on a heavily oversubscribed pool all complete (counted, no timing assertions),
 * two oversubscribed pools driven at once from two threads (two models decoding side by side),
 * shutdown with workers blocked, the thread-count bounds and the default thread count; turns
 * (models sharing one pool): first come first served, so a caller waiting for its turn waits for
 * at most one turn of a caller that asks again at once; the shared pool, one for every getter. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "base/threadpool.h"
#include "base/clock.h"
#include "test.h"

#include <pthread.h>
#if defined(__linux__)
#include <sched.h> /* the affinity checks: Linux's calls */
#endif
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int nth_seen;
    atomic_int bad_nth;
    atomic_int *hits; /* [nth] */
    atomic_long sum;
    long *data; /* written by job k, checked by job k+1 */
    int n_data;
    int round;
} count_job;

static void count_fn(void *arg, int ith, int nth) {
    count_job *j = arg;
    if (nth != j->nth_seen || ith < 0 || ith >= nth) {
        atomic_fetch_add(&j->bad_nth, 1);
        return;
    }
    atomic_fetch_add(&j->hits[ith], 1);
    /* the previous job's writes are visible: every slot holds round - 1 */
    long s = 0;
    for (int i = ith; i < j->n_data; i += nth) {
        if (j->data[i] != j->round - 1) atomic_fetch_add(&j->bad_nth, 1);
        j->data[i] = j->round;
        s += i;
    }
    atomic_fetch_add(&j->sum, s);
}

/* runs `runs` jobs on a pool of n threads; checks each index once per job, data visible */
static void check_pool(int n, int runs) {
    threadpool *p = threadpool_new(n);
    CHECK(p != NULL, "threadpool_new(%d)", n);
    if (!p) return;
    CHECK(threadpool_size(p) == n, "size %d, want %d", threadpool_size(p), n);
    const int cpus = threadpool_available_cpus(), want = n < cpus ? n : cpus;
    CHECK(threadpool_threads(p) == want, "pool of %d on %d CPUs runs %d threads, want %d", n, cpus,
          threadpool_threads(p), want);
    count_job j = {.nth_seen = threadpool_size(p), .n_data = 1000};
    j.hits = calloc((size_t)j.nth_seen, sizeof *j.hits);
    j.data = calloc((size_t)j.n_data, sizeof *j.data);
    long want_sum = (long)j.n_data * (j.n_data - 1) / 2;
    int bad_hits = 0, bad_sum = 0;
    for (int r = 1; r <= runs; r++) {
        j.round = r;
        for (int i = 0; i < j.nth_seen; i++) atomic_store(&j.hits[i], 0);
        atomic_store(&j.sum, 0);
        threadpool_run(p, count_fn, &j);
        for (int i = 0; i < j.nth_seen; i++) bad_hits += atomic_load(&j.hits[i]) != 1;
        bad_sum += atomic_load(&j.sum) != want_sum;
    }
    CHECK(bad_hits == 0, "n=%d: %d indices not run exactly once", n, bad_hits);
    CHECK(bad_sum == 0, "n=%d: %d jobs with a wrong sum", n, bad_sum);
    CHECK(atomic_load(&j.bad_nth) == 0, "n=%d: %d bad calls / stale data", n, atomic_load(&j.bad_nth));
    free(j.hits);
    free(j.data);
    threadpool_free(p);
}

/* Index 0 waits until every other index is done, which only the other threads can do: with
 * a static index-per-thread split that is still true, but index 0 also runs on whichever
 * thread claims it first — so this checks that indices are not tied to one stalled thread:
 * the stalled thread's later share (every index but 0 belongs to nobody) is taken. */
typedef struct {
    atomic_int done_others;
    atomic_int max_per_thread;
    int nth;
} stall_job;

static _Thread_local int tl_runs;
static _Thread_local unsigned tl_job;
static atomic_uint job_serial;

static void stall_fn(void *arg, int ith, int nth) {
    stall_job *j = arg;
    unsigned serial = atomic_load(&job_serial);
    if (tl_job != serial) {
        tl_job = serial;
        tl_runs = 0;
    }
    tl_runs++;
    int cur = atomic_load(&j->max_per_thread);
    while (tl_runs > cur && !atomic_compare_exchange_weak(&j->max_per_thread, &cur, tl_runs)) {}
    if (ith == 0) {
        /* bounded wait (no assertion on time): at most ~10 s, normally microseconds */
        for (int i = 0; i < 100000 && atomic_load(&j->done_others) < nth - 1; i++) {
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
        }
    } else {
        atomic_fetch_add(&j->done_others, 1);
    }
}

static void check_dynamic_sharing(void) {
    /* 16 threads: whoever claims index 0 stalls; the other 15 indices are run by the rest,
     * and with many threads on 2 cores some thread runs more than one of them */
    if (threadpool_available_cpus() < 2) {
        printf("one CPU: dynamic sharing not checked\n");
        return;
    }
    threadpool *p = threadpool_new(16);
    CHECK(p != NULL, "pool of 16");
    if (!p) return;
    int stalled_total = 0, multi = 0;
    for (int r = 0; r < 20; r++) {
        stall_job j = {.nth = threadpool_size(p)};
        atomic_fetch_add(&job_serial, 1);
        threadpool_run(p, stall_fn, &j);
        stalled_total += atomic_load(&j.done_others) != j.nth - 1;
        multi += atomic_load(&j.max_per_thread) > 1;
    }
    CHECK(stalled_total == 0, "%d jobs ended before all indices ran", stalled_total);
    printf("jobs where one thread ran several indices: %d of 20\n", multi);
    threadpool_free(p);
}

/* a job whose indices take a while, so that workers go to sleep between jobs */
static void sleepy_fn(void *arg, int ith, int nth) {
    (void)nth;
    atomic_int *c = arg;
    if (ith % 4 == 0) {
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    atomic_fetch_add(c, 1);
}

static void check_sleep_and_shutdown(void) {
    threadpool *p = threadpool_new(8);
    CHECK(p != NULL, "pool of 8");
    if (!p) return;
    atomic_int c = 0;
    for (int r = 0; r < 5; r++) {
        threadpool_run(p, sleepy_fn, &c);
        struct timespec ts = {0, 20000000}; /* 20 ms idle: the workers block */
        nanosleep(&ts, NULL);
    }
    CHECK(atomic_load(&c) == 5 * 8, "ran %d of 40 indices", atomic_load(&c));
    threadpool_free(p); /* every worker is blocked: free must wake and join them */
    /* free right after creation (workers may not have started waiting yet) */
    for (int i = 0; i < 10; i++) threadpool_free(threadpool_new(32));
    CHECK(1, "shutdown");
}

static void check_bounds(void) {
    CHECK(threadpool_new(THREADPOOL_MAX_THREADS + 1) == NULL, "more than the cap is refused");
    threadpool *p = threadpool_new(1);
    CHECK(p && threadpool_size(p) == 1, "pool of 1");
    count_job j = {.nth_seen = 1, .n_data = 10, .round = 1};
    atomic_int hit = 0;
    j.hits = &hit;
    j.data = calloc(10, sizeof(long));
    threadpool_run(p, count_fn, &j);
    CHECK(atomic_load(&hit) == 1 && j.data[9] == 1, "pool of 1 runs inline");
    threadpool_run(NULL, count_fn, &(count_job){.nth_seen = 1, .hits = &hit, .data = j.data, .n_data = 10, .round = 2});
    CHECK(atomic_load(&hit) == 2 && j.data[9] == 2, "NULL pool runs inline");
    free(j.data);
    threadpool_free(p);

    int def = threadpool_default_threads(), cpus = threadpool_available_cpus();
    CHECK(def >= 1 && def <= cpus, "default %d threads, %d cpus", def, cpus);
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        CHECK(cpus == CPU_COUNT(&set), "available %d, affinity %d", cpus, CPU_COUNT(&set));
#endif
    printf("default threads %d, available cpus %d\n", def, cpus);
    threadpool *d = threadpool_new(0);
    CHECK(d && threadpool_size(d) == def, "threadpool_new(0) uses the default");
    threadpool_free(d);
}

/* Two pools of 24 indices each, driven at once by two caller threads: 48 indices compete for
 * the CPUs, and every index of every job of both still runs exactly once. */
typedef struct {
    int bad;
    bool started;
} drive_result;

/* runs 500 jobs on a pool of 24; counts (no CHECK: the harness counters are not shared safely
 * between threads) the indices not run exactly once, the wrong sums and the stale reads */
static void *drive_pool(void *arg) {
    drive_result *res = arg;
    threadpool *p = threadpool_new(24);
    res->started = p != NULL;
    if (!p) return NULL;
    count_job j = {.nth_seen = threadpool_size(p), .n_data = 1000};
    j.hits = calloc((size_t)j.nth_seen, sizeof *j.hits);
    j.data = calloc((size_t)j.n_data, sizeof *j.data);
    const long want_sum = (long)j.n_data * (j.n_data - 1) / 2;
    for (int r = 1; r <= 500; r++) {
        j.round = r;
        for (int i = 0; i < j.nth_seen; i++) atomic_store(&j.hits[i], 0);
        atomic_store(&j.sum, 0);
        threadpool_run(p, count_fn, &j);
        for (int i = 0; i < j.nth_seen; i++) res->bad += atomic_load(&j.hits[i]) != 1;
        res->bad += atomic_load(&j.sum) != want_sum;
    }
    res->bad += atomic_load(&j.bad_nth);
    free(j.hits);
    free(j.data);
    threadpool_free(p);
    return NULL;
}

static void check_two_pools(void) {
    pthread_t t[2];
    drive_result res[2] = {{0}};
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, drive_pool, &res[i]);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++)
        CHECK(res[i].started && res[i].bad == 0, "pool %d of two at once: started %d, %d bad", i, res[i].started,
              res[i].bad);
}

#if defined(__linux__)
/* the default follows the affinity mask: pinned to one CPU, it is 1 */
static void *pinned_default(void *out) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) {
        *(int *)out = -1;
        return NULL;
    }
    *(int *)out = threadpool_default_threads();
    return NULL;
}
#endif

/* A caller that takes turn after turn (each ~2 ms), another asking now and then. */
typedef struct turns {
    threadpool *p;
    atomic_int done; /* turns the busy caller finished */
    atomic_bool stop;
} turns;

static void add_fn(void *arg, int ith, int nth) {
    (void)ith, (void)nth;
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void *busy_turns(void *arg) {
    turns *t = arg;
    atomic_int runs = 0;
    while (!atomic_load(&t->stop)) {
        threadpool_turn_begin(t->p, t);
        threadpool_run(t->p, add_fn, &runs);
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
        atomic_fetch_add(&t->done, 1);
        threadpool_turn_end(t->p, t); /* and at once the next */
    }
    return NULL;
}

static void check_turns(void) {
    turns t = {.p = threadpool_shared_get(2)};
    CHECK(t.p && threadpool_shared_get(4) == t.p, "the shared pool: one for every getter");
    pthread_t th;
    pthread_create(&th, NULL, busy_turns, &t);
    int worst = 0;
    atomic_int runs = 0;
    for (int i = 0; i < 40; i++) {
        struct timespec ts = {0, 3 * 1000 * 1000};
        nanosleep(&ts, NULL);
        int before = atomic_load(&t.done);
        threadpool_turn_begin(t.p, &runs);
        int waited = atomic_load(&t.done) - before; /* the other's turns that ended meanwhile */
        threadpool_run(t.p, add_fn, &runs);
        threadpool_turn_end(t.p, &runs);
        if (waited > worst) worst = waited;
    }
    atomic_store(&t.stop, true);
    pthread_join(th, NULL);
    CHECK(worst <= 1, "a waiting caller waits for at most one turn of the other (%d)", worst);
    CHECK(atomic_load(&runs) == 40 * threadpool_size(t.p), "every index of the waiting caller's runs: %d",
          atomic_load(&runs));
    threadpool_shared_put(t.p);
    threadpool_shared_put(t.p);
    threadpool *again = threadpool_shared_get(1);
    CHECK(again && threadpool_size(again) == 1, "the last put freed it: a new one is made");
    threadpool_shared_put(again);
}

/* Two callers taking turn after turn, one's turns 4 times as long as the other's: each gets
 * about half the pool's time (plain alternation gave the short one a fifth), also when the short
 * one pauses a little before asking again (as a model's scheduler samples between passes). */
typedef struct fair {
    threadpool *p;
    long pass_us, gap_us; /* each turn's length, and the pause before asking again */
    double busy_s;        /* time in its own turns */
    int turns;
    atomic_bool *stop;
} fair;

static void *fair_turns(void *arg) {
    fair *f = arg;
    while (!atomic_load(f->stop)) {
        threadpool_turn_begin(f->p, f);
        double t0 = lfm2c_now_s();
        struct timespec ts = {0, f->pass_us * 1000};
        nanosleep(&ts, NULL);
        f->busy_s += lfm2c_now_s() - t0;
        f->turns++;
        threadpool_turn_end(f->p, f);
        struct timespec gap = {0, f->gap_us * 1000};
        if (f->gap_us) nanosleep(&gap, NULL);
    }
    return NULL;
}

static void check_fair_turns(long gap_us) {
    threadpool *p = threadpool_new(1);
    atomic_bool stop = false;
    fair a = {p, 1000, gap_us, 0, 0, &stop}, b = {p, 4000, 0, 0, 0, &stop};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, fair_turns, &a);
    pthread_create(&tb, NULL, fair_turns, &b);
    struct timespec ts = {0, 600 * 1000 * 1000};
    nanosleep(&ts, NULL);
    atomic_store(&stop, true);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    double share = a.busy_s / (a.busy_s + b.busy_s);
    CHECK(share > 0.3 && share < 0.7 && a.turns > 2 * b.turns,
          "the short caller's share of the time %.2f (%d turns, the long one's %d; pauses of %ld us): want about half",
          share, a.turns, b.turns, gap_us);
    threadpool_free(p);
}

int main(void) {
    check_pool(1, 2000); /* one index: the caller alone */
    check_pool(2, 2000);
    check_pool(3, 2000); /* an odd count: indices do not divide evenly among threads */
    check_pool(4, 2000);
    check_pool(64, 300);  /* far more threads than cores */
    check_pool(32, 2000); /* many jobs, oversubscribed: must all complete */
    check_pool(THREADPOOL_MAX_THREADS, 20);
    check_dynamic_sharing();
    check_two_pools();
    check_sleep_and_shutdown();
    check_bounds();
    check_turns();
    check_fair_turns(0);
    check_fair_turns(300);
#if defined(__linux__)
    pthread_t t;
    int pinned = 0;
    pthread_create(&t, NULL, pinned_default, &pinned);
    pthread_join(t, NULL);
    if (pinned >= 0) CHECK(pinned == 1, "pinned to cpu 0: default %d", pinned);
#endif
    TEST_MAIN_END();
}
