/* threadpool.c — persistent workers; a job is one fn called for each index in [0, nth).
 * The indices are claimed with one compare-and-swap on a word holding (job generation, next
 * index), so whichever threads are running take the work and a descheduled worker holds up
 * only the index it is in, never a share it has not started. A pool of 1 runs inline.
 *
 * Waiting spins briefly and then blocks (a futex on Linux, WaitOnAddress on Windows: base/os.h's
 * os_word_wait; a mutex + condition variable elsewhere), both for the workers waiting for a job and for the caller waiting for the job's
 * end: decode launches hundreds of short jobs per token, so a short spin saves a sleep/wake
 * round trip when every thread has its own core, and the block gives the core away when a
 * thread it waits for is descheduled (a busy machine). Sleeping workers are woken a few at a
 * time: the caller wakes as many as there are other cores, and each worker that claims an index
 * while more remain wakes one more.
 *
 * More threads than the CPUs this process may run on (its affinity mask) would only take turns
 * on the same cores and wait for each other at every job's end: a pool of n keeps n indices
 * (the work is still cut n ways, so results do not change) but starts at most one thread per
 * allowed CPU, and those claim all the indices.
 *
 * A busy machine (threadpool_step): with another process on the same cores, a worker preempted
 * in the middle of a job's work holds the job until its next time slice. The caller marks each
 * repeated step (a forward pass); every CHECK_S seconds (or CHECK_STEPS steps) it reads how long the pool's threads
 * waited on a run queue (/proc/thread-self/schedstat). Past DELAY_FRAC of their time, it probes:
 * a few steps run solo (the caller runs every index itself, in order), and their mean time is
 * compared with the recent mean of normal steps; the faster way is kept (a tie goes to solo). Solo mode probes the
 * normal mode again after a back-off that doubles while nothing changes, and only when the
 * machine seems to have room for the pool's threads (runnable tasks in /proc/loadavg, read every
 * CHECK_S; past FORCE_PROBE_S it probes anyway, since in a container that count is the host's):
 * on a busy machine a normal step can cost ten solo ones (a worker waits out a time slice at
 * every job), so a probe bound to lose is not run, and one that is losing stops early. The
 * indices and what each computes are the same either way, so no result changes. Where the system
 * gives no run-queue times (Windows: base/os.h's os_thread_wait_s says -1) no probe starts. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "base/threadpool.h"
#include "base/clock.h"

#include "base/os.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SPIN_ITERS 2000 /* ~ tens of microseconds of pause before blocking */

/* the busy-machine controller */
#define CHECK_S 0.1   /* run-queue delay read at least this often ... */
#define CHECK_STEPS 4 /* ... or after this many steps, if CHECK_MIN_S have passed */
#define CHECK_MIN_S 0.002
#define DELAY_FRAC 0.05  /* share of the threads' time spent waiting for a CPU that starts a probe */
#define PROBE_STEPS 4    /* steps measured per probe (after one warm-up step) ... */
#define PROBE_MIN_S 0.01 /* ... and at least this long (a time slice is a few ms) */
/* The other way is kept when it takes at most this share of the time. Solo is favoured: on a
 * busy machine it leaves a core to the other process, and a tie between one thread and several
 * that keep waiting for each other is one thread's win; leaving solo asks for a clear gain. */
#define SOLO_GAIN 1.02   /* probe solo, steady normal */
#define NORMAL_GAIN 0.90 /* probe normal, steady solo */
#define BACKOFF_MIN 0.2  /* seconds before the next probe after a switch */
#define BACKOFF_MAX 3.2
#define FORCE_PROBE_S 10.0 /* solo probes the normal mode at least this often, room seen or not */
#define EWMA_ALPHA 0.125   /* steady-mode step time: mean over ~8 steps */

typedef struct {
    bool on, solo, steady_solo;  /* solo now; solo outside a probe */
    int key, have_key;           /* key of the steps being compared */
    double last;                 /* start of the current step */
    double ewma;                 /* steady mode's step time; < 0 unknown */
    int probe_left;              /* steps left in the probe (the first is a warm-up) */
    double probe_t, probe_start; /* measured probe time, probe start */
    int probe_n;
    double next_probe, backoff, delay_seen, delay_at, room_at, last_probe;
    int steps_since_check;
    double (*delay_fn)(void *);
    void *delay_arg;
    int (*room_fn)(void *); /* tests: replaces the /proc/loadavg reading */
    void *room_arg;
    threadpool_stats st;
} adapt;

typedef struct threadpool_worker_arg {
    struct threadpool *p;
    int i;
} worker_arg;

/* One caller of threadpool_turn_begin (a model on the shared pool): the time its turns took,
 * and how many of its calls wait or run. */
enum { TURN_CALLERS = 32 };
typedef struct turn_caller {
    const void *key;
    double vtime;
    double last_end; /* when its last turn ended */
    int users;
} turn_caller;
/* How long the next turn is held for a caller that ran less and just ended a turn: its thread
 * needs a moment (sampling, the answers' text) before it asks again, and without the wait a
 * caller always ready would take every such moment (plain alternation, whatever the passes cost). */
#define TURN_GRACE_S 0.002
typedef struct turn_waiter {
    unsigned long ticket;
    int caller;
    struct turn_waiter *next;
} turn_waiter;

struct threadpool {
    int n;          /* indices per job (the pool's size, as asked) */
    int started;    /* threads running them, the caller included: min(n, CPUs) */
    int spin;       /* pause iterations before blocking */
    int wake_first; /* sleepers the caller wakes per job */
    pthread_t *threads;
    threadpool_fn fn; /* the current job; written only while no index is claimable */
    void *arg;
    _Atomic uint64_t state; /* generation << 32 | next unclaimed index */
    atomic_uint gen;        /* generation of the last published job: the workers' wait word */
    atomic_uint done;       /* indices finished in the current job: the caller's wait word */
    atomic_int sleepers;    /* workers blocked (or about to block) on gen */
    atomic_int caller_sleeping;
    atomic_bool stop;
    atomic_int *stat_fd; /* each worker's /proc/thread-self/schedstat, or -1 */
    worker_arg *wargs;
    adapt ad; /* touched by the caller of threadpool_run / threadpool_step only */
    /* turns (threadpool_turn_begin): who waits, each caller's time in turns, the turn running */
    pthread_mutex_t turn_mu;
    pthread_cond_t turn_cv;
    struct turn_waiter *waiters; /* in ticket order */
    turn_caller callers[TURN_CALLERS];
    unsigned long next_ticket;
    double vfloor; /* the time in turns of the caller whose turn began last */
    bool turn_busy;
    double turn_t0; /* when the running turn began */
#if !OS_HAVE_WORD_WAIT
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
#if OS_HAVE_WORD_WAIT
static void word_wait(threadpool *p, atomic_uint *w, unsigned expected) {
    (void)p;
    os_word_wait(w, expected);
}
static void word_wake(threadpool *p, atomic_uint *w, int count) {
    (void)p;
    os_word_wake(w, count);
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
        if (!atomic_compare_exchange_weak_explicit(&p->state, &s, s + 1, memory_order_acq_rel, memory_order_acquire))
            continue;
        unsigned idx = (uint32_t)s;
        /* job g cannot end before this index is done, so fn/arg are g's */
        if (idx + 1 < n && atomic_load(&p->sleepers) > 0) word_wake(p, &p->gen, 1);
        p->fn(p->arg, (int)idx, (int)n);
        if (atomic_fetch_add(&p->done, 1) + 1 == n && atomic_load(&p->caller_sleeping)) word_wake(p, &p->done, 1);
        s = atomic_load_explicit(&p->state, memory_order_acquire);
    }
}

static int open_schedstat(void) { return os_thread_stat_open(); }

static void *worker(void *varg) {
    const worker_arg *wa = varg;
    threadpool *p = wa->p;
    unsigned seen = 0;
    atomic_store(&p->stat_fd[wa->i], open_schedstat());
    for (;;) {
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        for (int i = 0; i < p->spin && g == seen && !atomic_load(&p->stop); i++) {
            cpu_relax();
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
        }
        if (g == seen && !atomic_load(&p->stop)) {
            atomic_fetch_add(&p->sleepers, 1);
            while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop)) word_wait(p, &p->gen, seen);
            atomic_fetch_sub(&p->sleepers, 1);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = g;
        run_indices(p, g);
    }
}

/* ---- CPU topology ---- */

int threadpool_available_cpus(void) { return os_cpus_allowed(); }

int threadpool_default_threads(void) { return os_cores_allowed(); }

/* ---- a busy machine: normal or solo (see the top of the file) ---- */

static void adapt_init(adapt *a) {
    const char *e = getenv("LFM2C_ADAPT");
    a->on = !(e && !strcmp(e, "0"));
    a->ewma = -1;
    a->backoff = BACKOFF_MIN;
    a->delay_seen = -1;
}

static double schedstat_delay(int fd) { return os_thread_wait_s(fd); }

/* Seconds the pool's threads (the caller and every started worker) have waited for a CPU. */
static double pool_delay(threadpool *p) {
    if (p->ad.delay_fn) return p->ad.delay_fn(p->ad.delay_arg);
    int fd = open_schedstat();
    double total = schedstat_delay(fd);
    os_thread_stat_close(fd);
    for (int i = 1; i < p->started && total >= 0; i++) {
        double d = schedstat_delay(atomic_load(&p->stat_fd[i]));
        total = d < 0 ? -1 : total + d;
    }
    return total;
}

/* Tasks runnable on the whole machine now (the 4th field of /proc/loadavg, "R/T"), the reader
 * included; -1 if unreadable. */
static int procs_running(void) { return os_procs_running(); }

/* Is there a CPU for every thread of the pool? 1 yes, 0 no, -1 unknown. The others are the
 * runnable tasks beyond the pool's own: the caller and the workers not blocked. */
static int pool_has_room(threadpool *p) {
    if (p->ad.room_fn) return p->ad.room_fn(p->ad.room_arg);
    const int running = procs_running();
    if (running < 0) return -1;
    const int others = running - (p->started - atomic_load(&p->sleepers));
    return others + p->started <= threadpool_available_cpus();
}

static void start_probe(adapt *a, double now) {
    a->solo = !a->steady_solo;
    a->probe_left = PROBE_STEPS + 1;
    a->probe_t = 0;
    a->probe_n = 0;
    a->probe_start = now;
    a->last_probe = now;
    a->st.probes++;
}

/* lost: stopped early, already slower (it may have no measured step) */
static void end_probe(adapt *a, double now, bool lost) {
    const bool measured = !lost && a->probe_n > 0 && a->ewma > 0;
    const double mean = measured ? a->probe_t / a->probe_n : 0;
    if (measured && mean < (a->solo ? SOLO_GAIN : NORMAL_GAIN) * a->ewma) { /* the other way wins: keep it */
        a->steady_solo = a->solo;
        a->ewma = mean;
        a->backoff = BACKOFF_MIN;
        a->st.switches++;
    } else {
        a->solo = a->steady_solo;
        a->backoff = a->backoff * 2 < BACKOFF_MAX ? a->backoff * 2 : BACKOFF_MAX;
    }
    a->probe_left = 0;
    a->next_probe = now + a->backoff;
    a->delay_seen = -1; /* measure the delay afresh in the mode now running */
}

/* Solo mode: probe the normal mode? When the machine has room for the pool's threads (the caller
 * runs, the workers sleep), read at most every CHECK_S; at least every FORCE_PROBE_S. */
static bool solo_may_probe(threadpool *p, double now) {
    adapt *a = &p->ad;
    if (now - a->last_probe >= FORCE_PROBE_S) return true;
    if (now - a->room_at < CHECK_S) return false;
    a->room_at = now;
    return pool_has_room(p) != 0;
}

/* Normal mode: is a probe due? Only while the threads wait for CPUs (the machine is busy). */
static bool busy_machine(threadpool *p, double now) {
    adapt *a = &p->ad;
    a->steps_since_check++;
    if (now - a->delay_at < CHECK_S && (a->steps_since_check < CHECK_STEPS || now - a->delay_at < CHECK_MIN_S))
        return false;
    a->steps_since_check = 0;
    const double d = pool_delay(p), was = a->delay_seen, at = a->delay_at;
    a->delay_seen = d;
    a->delay_at = now;
    if (d < 0 || was < 0 || now <= at) return false;
    if ((d - was) / ((now - at) * p->started) <= DELAY_FRAC) return false;
    /* and more tasks runnable than CPUs (a passing kernel thread is not a busy machine) */
    return pool_has_room(p) != 1;
}

void threadpool_step(threadpool *p, int key) {
    if (!p || !p->ad.on || p->started < 2 || p->n < 2) return;
    adapt *a = &p->ad;
    const double now = lfm2c_now_s(), dt = now - a->last;
    a->last = now;
    if (!a->have_key || key != a->key) { /* steps of another cost: nothing to compare yet */
        a->have_key = 1;
        a->key = key;
        a->ewma = -1;
        if (a->probe_left) a->solo = a->steady_solo, a->probe_left = 0;
        return;
    }
    a->st.steps++;
    a->st.solo_steps += a->solo;
    if (a->probe_left) {
        const bool warm_up = a->probe_left-- > PROBE_STEPS;
        if (!warm_up) a->probe_t += dt, a->probe_n++;
        if (a->probe_left <= 0 && now - a->probe_start < PROBE_MIN_S) a->probe_left = 1;
        /* lost already: the warm-up step, or the measured steps so far, took longer than all the
         * measured steps may take to win */
        const double limit = PROBE_STEPS * (a->solo ? SOLO_GAIN : NORMAL_GAIN) * a->ewma;
        const bool lost = a->ewma > 0 && (warm_up ? dt : a->probe_t) > limit;
        if (lost || a->probe_left <= 0) end_probe(a, now, lost);
        return;
    }
    a->ewma = a->ewma < 0 ? dt : a->ewma + EWMA_ALPHA * (dt - a->ewma);
    if (now < a->next_probe) return;
    if (a->steady_solo ? solo_may_probe(p, now) : busy_machine(p, now)) start_probe(a, now);
}

int threadpool_active(const threadpool *p) { return !p ? 1 : p->ad.solo ? 1 : p->started; }

threadpool_stats threadpool_get_stats(const threadpool *p) {
    threadpool_stats s = {0};
    if (p) s = p->ad.st, s.solo = p->ad.steady_solo;
    return s;
}

void threadpool_set_delay_probe(threadpool *p, double (*fn)(void *), void *arg) {
    p->ad.delay_fn = fn;
    p->ad.delay_arg = arg;
    p->ad.delay_seen = -1;
}

void threadpool_set_room_probe(threadpool *p, int (*fn)(void *), void *arg) {
    p->ad.room_fn = fn;
    p->ad.room_arg = arg;
}

/* ---- the pool ---- */

threadpool *threadpool_new(int n_threads) {
    if (n_threads <= 0) n_threads = threadpool_default_threads();
    if (n_threads > THREADPOOL_MAX_THREADS) return NULL;
    threadpool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    p->wargs = calloc((size_t)n_threads, sizeof *p->wargs);
    p->stat_fd = calloc((size_t)n_threads, sizeof *p->stat_fd);
    if (!p->threads || !p->wargs || !p->stat_fd) {
        free(p->threads), free(p->wargs), free(p->stat_fd), free(p);
        return NULL;
    }
    for (int i = 0; i < n_threads; i++) atomic_init(&p->stat_fd[i], -1);
    adapt_init(&p->ad);
    pthread_mutex_init(&p->turn_mu, NULL);
    pthread_cond_init(&p->turn_cv, NULL);
#if !OS_HAVE_WORD_WAIT
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
#endif
    int cpus = threadpool_available_cpus();
    p->spin = SPIN_ITERS;
    p->n = n_threads;
    const int want = n_threads < cpus ? n_threads : cpus;
    p->started = 1;
    for (; p->started < want; p->started++) {
        p->wargs[p->started] = (worker_arg){p, p->started};
        if (pthread_create(&p->threads[p->started], NULL, worker, &p->wargs[p->started]) != 0) break;
    } /* on failure: run with the threads we got (the indices are claimed) */
    p->wake_first = p->started - 1 > 1 ? p->started - 1 : 1;
    return p;
}

void threadpool_free(threadpool *p) {
    if (!p) return;
    atomic_store(&p->stop, true);
    atomic_fetch_add(&p->gen, 1);
    word_wake(p, &p->gen, p->started);
    for (int i = 1; i < p->started; i++) pthread_join(p->threads[i], NULL);
    for (int i = 1; i < p->started; i++) os_thread_stat_close(atomic_load(&p->stat_fd[i]));
#if !OS_HAVE_WORD_WAIT
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
#endif
    pthread_mutex_destroy(&p->turn_mu);
    pthread_cond_destroy(&p->turn_cv);
    free(p->threads);
    free(p->wargs);
    free(p->stat_fd);
    free(p);
}

int threadpool_size(const threadpool *p) { return p ? p->n : 1; }

/* ---- turns, and the shared pool ---- */

/* The caller slot of key (lock held): its own (kept while it pauses between turns, so the time
 * its turns took still counts), else an unused one, else an idle one. A caller
 * starting again after a pause starts no lower than the floor: time it did not use is not saved
 * up for later. */
static int turn_caller_of(threadpool *p, const void *key) {
    int slot = -1;
    for (int i = 0; i < TURN_CALLERS && slot < 0; i++)
        if (p->callers[i].key == key) slot = i;
    for (int i = 0; i < TURN_CALLERS && slot < 0; i++)
        if (!p->callers[i].key) slot = i;
    for (int i = 0; i < TURN_CALLERS; i++)
        if (slot < 0 && p->callers[i].users == 0) slot = i;
    if (slot < 0) return 0; /* more callers at once than slots: they share the first slot */
    turn_caller *c = &p->callers[slot];
    if (c->key != key) c->key = key, c->vtime = p->vfloor;
    if (c->users == 0 && c->vtime < p->vfloor) c->vtime = p->vfloor;
    return slot;
}

/* The waiter whose turn is next: the least time in turns, the earliest ticket among equals. */
static const turn_waiter *turn_next(const threadpool *p) {
    const turn_waiter *best = NULL;
    for (const turn_waiter *w = p->waiters; w; w = w->next)
        if (!best || p->callers[w->caller].vtime < p->callers[best->caller].vtime) best = w;
    return best;
}

/* Until when the turn waits for an idle caller that ran less than vtime and ended a turn within
 * TURN_GRACE_S; 0: for none (lock held). */
static double turn_grace_until(const threadpool *p, double vtime, double now) {
    double until = 0;
    for (int i = 0; i < TURN_CALLERS; i++) {
        const turn_caller *c = &p->callers[i];
        if (c->key && c->users == 0 && c->vtime < vtime && c->last_end + TURN_GRACE_S > now &&
            c->last_end + TURN_GRACE_S > until)
            until = c->last_end + TURN_GRACE_S;
    }
    return until;
}

static void turn_wait_until(threadpool *p, double until) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double rel = until - lfm2c_now_s();
    if (rel <= 0) return;
    long ns = ts.tv_nsec + (long)(rel * 1e9);
    ts.tv_sec += ns / 1000000000L;
    ts.tv_nsec = ns % 1000000000L;
    pthread_cond_timedwait(&p->turn_cv, &p->turn_mu, &ts);
}

void threadpool_turn_begin(threadpool *p, const void *key) {
    if (!p) return;
    pthread_mutex_lock(&p->turn_mu);
    turn_waiter me = {.ticket = p->next_ticket++, .caller = turn_caller_of(p, key)};
    p->callers[me.caller].users++;
    turn_waiter **tail = &p->waiters;
    while (*tail) tail = &(*tail)->next;
    *tail = &me;
    for (;;) {
        if (p->turn_busy || turn_next(p) != &me) {
            pthread_cond_wait(&p->turn_cv, &p->turn_mu);
            continue;
        }
        double until = turn_grace_until(p, p->callers[me.caller].vtime, lfm2c_now_s());
        if (until == 0) break;
        turn_wait_until(p, until);
    }
    for (turn_waiter **w = &p->waiters; *w; w = &(*w)->next)
        if (*w == &me) {
            *w = me.next;
            break;
        }
    p->turn_busy = true;
    p->vfloor = p->callers[me.caller].vtime;
    p->turn_t0 = lfm2c_now_s();
    pthread_mutex_unlock(&p->turn_mu);
}

void threadpool_turn_end(threadpool *p, const void *key) {
    if (!p) return;
    pthread_mutex_lock(&p->turn_mu);
    int c = 0;
    for (int i = 0; i < TURN_CALLERS; i++)
        if (p->callers[i].key == key && p->callers[i].users > 0) {
            c = i;
            break;
        }
    /* (not found: the slots were full and it shared slot 0) */
    const double now = lfm2c_now_s();
    p->callers[c].vtime += now - p->turn_t0;
    p->callers[c].last_end = now;
    p->callers[c].users--;
    p->turn_busy = false;
    pthread_cond_broadcast(&p->turn_cv);
    pthread_mutex_unlock(&p->turn_mu);
}

static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;
static threadpool *shared_pool;
static int shared_refs;

threadpool *threadpool_shared_get(int n_threads) {
    pthread_mutex_lock(&shared_mu);
    if (!shared_pool) shared_pool = threadpool_new(n_threads);
    threadpool *p = shared_pool;
    if (p) shared_refs++;
    pthread_mutex_unlock(&shared_mu);
    return p;
}

void threadpool_shared_put(threadpool *p) {
    if (!p) return;
    pthread_mutex_lock(&shared_mu);
    bool last = p == shared_pool && --shared_refs == 0;
    if (last) shared_pool = NULL;
    pthread_mutex_unlock(&shared_mu);
    if (last) threadpool_free(p);
}

int threadpool_threads(const threadpool *p) { return p ? p->started : 1; }

void threadpool_run(threadpool *p, threadpool_fn fn, void *arg) {
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    if (p->ad.solo) { /* a busy machine: the caller alone, every index in order */
        for (int i = 0; i < p->n; i++) fn(arg, i, p->n);
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
