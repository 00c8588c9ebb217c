/* threadpool.c — persistent workers; a job is one fn called for each index in [0, nth).
 * The indices are claimed with one compare-and-swap on a word holding (job generation, next
 * index), so whichever threads are running take the work and a descheduled worker holds up
 * only the index it is in, never a share it has not started. A pool of 1 runs inline.
 *
 * Waiting spins briefly and then blocks (a futex on Linux, a mutex + condition variable
 * elsewhere), both for the workers waiting for a job and for the caller waiting for the job's
 * end: decode launches hundreds of short jobs per token, so a short spin saves a sleep/wake
 * round trip when every thread has its own core, and the block gives the core away when a
 * thread it waits for is descheduled (a busy machine). Sleeping workers are woken a few at a
 * time: the caller wakes as many as there are other cores, and each worker that claims an index
 * while more remain wakes one more.
 *
 * More threads than the CPUs this process may run on (its affinity mask) would only take turns
 * on the same cores and wait for each other at every job's end: a pool of n keeps n indices
 * (the work is still cut n ways, so results do not change) but starts at most one thread per
 * allowed CPU, and those claim all the indices. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "core/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

#define SPIN_ITERS 2000   /* ~ tens of microseconds of pause before blocking */

struct threadpool {
    int n;                    /* indices per job (the pool's size, as asked) */
    int started;              /* threads running them, the caller included: min(n, CPUs) */
    int spin;                 /* pause iterations before blocking */
    int wake_first;           /* sleepers the caller wakes per job */
    pthread_t *threads;
    threadpool_fn fn;         /* the current job; written only while no index is claimable */
    void *arg;
    _Atomic uint64_t state;   /* generation << 32 | next unclaimed index */
    atomic_uint gen;          /* generation of the last published job: the workers' wait word */
    atomic_uint done;         /* indices finished in the current job: the caller's wait word */
    atomic_int sleepers;      /* workers blocked (or about to block) on gen */
    atomic_int caller_sleeping;
    atomic_bool stop;
#if !defined(__linux__)
    pthread_mutex_t mu;
    pthread_cond_t cv;
#endif
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Block while *w == expected (may return spuriously); wake up to count blockers of w. */
#if defined(__linux__)
static void word_wait(threadpool *p, atomic_uint *w, unsigned expected) {
    (void)p;
    syscall(SYS_futex, (unsigned *)w, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}
static void word_wake(threadpool *p, atomic_uint *w, int count) {
    (void)p;
    syscall(SYS_futex, (unsigned *)w, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
}
#else
static void word_wait(threadpool *p, atomic_uint *w, unsigned expected) {
    pthread_mutex_lock(&p->mu);
    if (atomic_load(w) == expected) pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
static void word_wake(threadpool *p, atomic_uint *w, int count) {
    (void)w, (void)count;
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}
#endif

/* Claims and runs indices of job generation g until none is left (or a newer job started). */
static void run_indices(threadpool *p, unsigned g) {
    const unsigned n = (unsigned)p->n;
    uint64_t s = atomic_load_explicit(&p->state, memory_order_acquire);
    for (;;) {
        if ((unsigned)(s >> 32) != g || (uint32_t)s >= n) return;
        if (!atomic_compare_exchange_weak_explicit(&p->state, &s, s + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        unsigned idx = (uint32_t)s;
        /* job g cannot end before this index is done, so fn/arg are g's */
        if (idx + 1 < n && atomic_load(&p->sleepers) > 0) word_wake(p, &p->gen, 1);
        p->fn(p->arg, (int)idx, (int)n);
        if (atomic_fetch_add(&p->done, 1) + 1 == n && atomic_load(&p->caller_sleeping))
            word_wake(p, &p->done, 1);
        s = atomic_load_explicit(&p->state, memory_order_acquire);
    }
}

typedef struct { threadpool *p; } worker_arg;

static void *worker(void *varg) {
    threadpool *p = varg;
    unsigned seen = 0;
    for (;;) {
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        for (int i = 0; i < p->spin && g == seen && !atomic_load(&p->stop); i++) {
            cpu_relax();
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
        }
        if (g == seen && !atomic_load(&p->stop)) {
            atomic_fetch_add(&p->sleepers, 1);
            while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop))
                word_wait(p, &p->gen, seen);
            atomic_fetch_sub(&p->sleepers, 1);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = g;
        run_indices(p, g);
    }
}

/* ---- CPU topology ---- */

static bool allowed_cpus(cpu_set_t *set) {
#if defined(__linux__)
    CPU_ZERO(set);
    return sched_getaffinity(0, sizeof *set, set) == 0 && CPU_COUNT(set) > 0;
#else
    (void)set;
    return false;
#endif
}

int threadpool_available_cpus(void) {
    cpu_set_t set;
    if (allowed_cpus(&set)) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static long read_topology(int cpu, const char *what) {
    char path[128];
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/%s", cpu, what);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    if (fscanf(f, "%ld", &v) != 1) v = -1;
    fclose(f);
    return v;
}

int threadpool_default_threads(void) {
    cpu_set_t set;
    if (!allowed_cpus(&set)) return threadpool_available_cpus();
    /* distinct (package, core) pairs among the allowed CPUs */
    long (*seen)[2] = malloc(sizeof *seen * CPU_SETSIZE);
    if (!seen) return CPU_COUNT(&set);
    int n_cores = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &set)) continue;
        long pkg = read_topology(cpu, "physical_package_id"), core = read_topology(cpu, "core_id");
        if (pkg < 0 || core < 0) { free(seen); return CPU_COUNT(&set); }
        int k = 0;
        while (k < n_cores && !(seen[k][0] == pkg && seen[k][1] == core)) k++;
        if (k == n_cores) { seen[n_cores][0] = pkg; seen[n_cores][1] = core; n_cores++; }
    }
    free(seen);
    return n_cores > 0 ? n_cores : CPU_COUNT(&set);
}

/* ---- the pool ---- */

threadpool *threadpool_new(int n_threads) {
    if (n_threads <= 0) n_threads = threadpool_default_threads();
    if (n_threads > THREADPOOL_MAX_THREADS) return NULL;
    threadpool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    if (!p->threads) { free(p); return NULL; }
#if !defined(__linux__)
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
#endif
    int cpus = threadpool_available_cpus();
    p->spin = SPIN_ITERS;
    p->n = n_threads;
    const int want = n_threads < cpus ? n_threads : cpus;
    p->started = 1;
    while (p->started < want && pthread_create(&p->threads[p->started], NULL, worker, p) == 0)
        p->started++;   /* on failure: run with the threads we got (the indices are claimed) */
    p->wake_first = p->started - 1 > 1 ? p->started - 1 : 1;
    return p;
}

void threadpool_free(threadpool *p) {
    if (!p) return;
    atomic_store(&p->stop, true);
    atomic_fetch_add(&p->gen, 1);
    word_wake(p, &p->gen, p->started);
    for (int i = 1; i < p->started; i++) pthread_join(p->threads[i], NULL);
#if !defined(__linux__)
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
#endif
    free(p->threads);
    free(p);
}

int threadpool_size(const threadpool *p) { return p ? p->n : 1; }

int threadpool_threads(const threadpool *p) { return p ? p->started : 1; }

void threadpool_run(threadpool *p, threadpool_fn fn, void *arg) {
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    const unsigned n = (unsigned)p->n;
    /* no index of the previous job is claimable and all its calls are done: safe to rewrite */
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    unsigned g = (unsigned)(atomic_load_explicit(&p->state, memory_order_relaxed) >> 32) + 1;
    atomic_store_explicit(&p->state, (uint64_t)g << 32, memory_order_release);
    atomic_store(&p->gen, g);
    if (atomic_load(&p->sleepers) > 0) word_wake(p, &p->gen, p->wake_first);
    run_indices(p, g);
    unsigned d = atomic_load_explicit(&p->done, memory_order_acquire);
    for (int i = 0; i < p->spin && d != n; i++) {
        cpu_relax();
        d = atomic_load_explicit(&p->done, memory_order_acquire);
    }
    if (d != n) {
        atomic_store(&p->caller_sleeping, 1);
        while ((d = atomic_load(&p->done)) != n) word_wait(p, &p->done, d);
        atomic_store(&p->caller_sleeping, 0);
    }
}
