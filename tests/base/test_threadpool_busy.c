/* test_threadpool_busy.c — the pool on a busy machine (src/base/threadpool.c, threadpool_step):
 * with a worker that is slow (it sleeps in every index it runs, as a preempted thread would) and
 * the pool's threads seen waiting on a run queue, the pool goes solo (the caller runs every index);
 * when the caller becomes the slow one and the machine has room again, a probe brings the normal
 * mode back; while solo on a machine without room, the normal mode is not probed; on a quiet
 * machine (no run-queue delay, or delay with room: a passing task) nothing is ever probed. Every index of every job runs exactly once in
 * every mode. The slow side sleeps milliseconds against microseconds of work, so the outcome
 * does not depend on how loaded the test machine is; each phase is bounded in steps. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "base/threadpool.h"
#include "test.h"
#include "base/os.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

static pthread_t caller;
static threadpool *pool;
static atomic_int slow_side; /* 0 nobody, 1 the workers, 2 the caller */
static atomic_int bad;

typedef struct {
    int nth;
    atomic_int hits[64];
} job;

static void sleep_ms(int ms) {
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* ~0.2 ms of work, so that both threads take part in a job */
static void spin_work(void) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) < 200000L);
}

static void fn(void *arg, int ith, int nth) {
    job *j = arg;
    spin_work();
    if (nth != j->nth || ith < 0 || ith >= nth) atomic_fetch_add(&bad, 1);
    else atomic_fetch_add(&j->hits[ith], 1);
    const int on_caller = pthread_equal(pthread_self(), caller);
    const int s = atomic_load(&slow_side);
    if ((s == 1 && !on_caller) || (s == 2 && on_caller)) sleep_ms(2);
    /* in the normal mode the worker takes part in every job, however loaded the machine: the
     * caller leaves its index only once every index has been claimed (at most 1 s) */
    if (on_caller && s && threadpool_active(pool) == 2)
        for (int k = 0, all = 0; !all && k < 10000; k++) {
            all = 1;
            for (int i = 0; i < nth; i++) all &= atomic_load(&j->hits[i]) > 0;
            if (!all) nanosleep(&(struct timespec){0, 100000}, NULL);
        }
}

static double fake_delay; /* seconds of run-queue delay the pool sees */
static int fake_room = 1; /* a CPU for each of the pool's threads? */
static int room_probe(void *arg) {
    (void)arg;
    return fake_room;
}
static double delay_probe(void *arg) {
    (void)arg;
    return fake_delay;
}

/* one step: three jobs; checks each index ran once */
static void step(threadpool *p) {
    threadpool_step(p, 1);
    for (int k = 0; k < 3; k++) {
        job j = {.nth = threadpool_size(p)};
        threadpool_run(p, fn, &j);
        for (int i = 0; i < j.nth; i++)
            if (atomic_load(&j.hits[i]) != 1) atomic_fetch_add(&bad, 1);
    }
}

int main(void) {
    if (threadpool_available_cpus() < 2) {
        printf("test_threadpool_busy: skipped, fewer than 2 CPUs\n");
        return 0;
    }
    caller = pthread_self();
    threadpool *p = pool = threadpool_new(2);
    CHECK(p && threadpool_threads(p) == 2, "a pool of 2 threads");
    threadpool_set_delay_probe(p, delay_probe, NULL);
    threadpool_set_room_probe(p, room_probe, NULL);

    /* quiet: no delay, slow workers or not, nothing is probed */
    atomic_store(&slow_side, 1);
    for (int i = 0; i < 60; i++) step(p);
    threadpool_stats st = threadpool_get_stats(p);
    CHECK(st.probes == 0 && st.solo_steps == 0, "quiet machine: %ld probes, %ld solo steps", st.probes, st.solo_steps);
    CHECK(threadpool_active(p) == 2, "quiet machine: both threads take part");
    /* run-queue delay but room for every thread: a passing task, not a busy machine */
    for (int i = 0; i < 60; i++) {
        fake_delay += 1.0;
        step(p);
    }
    st = threadpool_get_stats(p);
    CHECK(st.probes == 0 && st.solo_steps == 0, "delay with room: %ld probes, %ld solo steps", st.probes,
          st.solo_steps);
    fake_room = 0;

    /* busy: the threads wait for CPUs and the workers are slow: solo within a bounded count */
    int i = 0;
    for (; i < 400 && !threadpool_get_stats(p).solo; i++) {
        fake_delay += 1.0;
        step(p);
    }
    st = threadpool_get_stats(p);
    CHECK(st.solo && threadpool_active(p) == 1, "busy machine: solo after %d steps (%ld probes, %ld switches)", i,
          st.probes, st.switches);
    /* stays solo while the workers are slow: a probe of the normal mode loses (or, if a wildly
     * loaded machine made one win, the next probe goes solo again) */
    for (int k = 0; k < 40; k++) step(p);
    for (i = 0; i < 400 && !threadpool_get_stats(p).solo; i++) {
        fake_delay += 1.0;
        step(p);
    }
    CHECK(threadpool_get_stats(p).solo, "busy machine: stays solo");
    /* no room: the normal mode is not probed (a probe there would cost ten solo steps), for
     * longer than the longest back-off between probes (3.2 s) */
    const long probes = threadpool_get_stats(p).probes;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        step(p);
        clock_gettime(CLOCK_MONOTONIC, &t1);
    } while ((double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec) < 3.6);
    st = threadpool_get_stats(p);
    CHECK(st.solo && st.probes == probes, "busy machine without room: %ld probes in 3.6 s solo", st.probes - probes);

    /* the caller is now the slow one and there is room: a probe of the normal mode wins and it stays */
    atomic_store(&slow_side, 2);
    fake_room = 1;
    for (i = 0; i < 400 && threadpool_get_stats(p).solo; i++) step(p);
    st = threadpool_get_stats(p);
    CHECK(!st.solo && threadpool_active(p) == 2, "normal mode back after %d steps (%ld probes)", i, st.probes);

    /* LFM2C_ADAPT=0: never solo */
    threadpool_free(p);
    os_setenv("LFM2C_ADAPT", "0");
    p = pool = threadpool_new(2);
    threadpool_set_delay_probe(p, delay_probe, NULL);
    atomic_store(&slow_side, 1);
    for (i = 0; i < 60; i++) {
        fake_delay += 1.0;
        step(p);
    }
    st = threadpool_get_stats(p);
    CHECK(st.probes == 0 && threadpool_active(p) == 2, "LFM2C_ADAPT=0: %ld probes", st.probes);
    threadpool_free(p);

    CHECK(atomic_load(&bad) == 0, "%d indices not run exactly once (or with a wrong nth)", atomic_load(&bad));
    TEST_MAIN_END();
}
