/* threadpool.h — one pool of worker threads per model, reused by every forward pass.
 * threadpool_run(pool, fn, arg) calls fn(arg, ith, nth) once for every ith in [0, nth) and
 * returns when all calls are done. The indices are claimed dynamically: the caller and the
 * awake workers take them in turn, so a descheduled worker's share is run by the others; a
 * thread may run several indices (one after the other, never two at once), and each index is
 * run exactly once. fn must not depend on which thread runs an index. A pool of n runs its n
 * indices on at most one thread per CPU this process may use (threadpool_threads). */
#ifndef LFM2C_THREADPOOL_H
#define LFM2C_THREADPOOL_H
#define THREADPOOL_MAX_THREADS 512 /* threadpool_new refuses more */
typedef struct threadpool threadpool;
typedef void (*threadpool_fn)(void *arg, int ith, int nth);
/* n_threads <= 0: threadpool_default_threads(). NULL when n_threads > THREADPOOL_MAX_THREADS
 * or on allocation failure; fewer threads than asked when the system refuses to create more. */
threadpool *threadpool_new(int n_threads);
void threadpool_free(threadpool *p);
int threadpool_size(const threadpool *p); /* indices per job: the n_threads asked for */
/* Threads actually running (the caller included): at most one per CPU this process may use. */
int threadpool_threads(const threadpool *p);
void threadpool_run(threadpool *p, threadpool_fn fn, void *arg);
/* Physical cores this process may run on (SMT siblings counted once; the CPU affinity mask
 * respected); falls back to the CPUs allowed, then the online CPUs; at least 1. */
int threadpool_default_threads(void);
/* CPUs this process may run on (affinity mask; else online CPUs); at least 1. */
int threadpool_available_cpus(void);

/* Several callers of one pool (models sharing it, lfm2c_model_params.shared_threads): each wraps
 * its unit of work (a forward pass) in a turn, naming itself by key (its model). Turns share the
 * pool's time fairly: the next turn goes to the waiting caller whose turns have taken the least
 * time (first come, first served among equals), and a caller that starts waiting after a pause
 * starts level with the caller that ran last; the pool is held up to 2 ms for a caller that ran
 * less and has just ended a turn (its thread samples before asking again). So a caller waits at most for one turn of each
 * other caller before its first, and two busy callers each get about half of the time whatever
 * their passes cost (with plain alternation a cheap pass waited for an expensive one each time).
 * A pool used by one caller needs none. */
void threadpool_turn_begin(threadpool *p, const void *key);
void threadpool_turn_end(threadpool *p, const void *key);
/* The process's shared pool, made by the first call (n_threads as threadpool_new takes it; later
 * calls get the same pool whatever they ask) and freed by the last put; NULL as threadpool_new. */
threadpool *threadpool_shared_get(int n_threads);
void threadpool_shared_put(threadpool *p);

/* A busy machine. When another process competes for the cores, a worker that is preempted in
 * the middle of its share makes every job wait for its next time slice, and n threads can be
 * slower than the caller alone. The pool then runs jobs on the caller alone ("solo": every
 * index, in order, on the calling thread; results do not change) while that is measured to be
 * faster. The caller marks its repeated unit of work (a forward pass) with threadpool_step:
 * steps with the same key are assumed to cost the same, so their wall times compare the two
 * ways of running. Nothing is probed while the pool's threads wait on no run queue (a quiet
 * machine): there the pool never leaves the normal mode. LFM2C_ADAPT=0 turns this off. */
void threadpool_step(threadpool *p, int key);
/* Threads that take part in the next job: 1 in solo mode, else threadpool_threads(). */
int threadpool_active(const threadpool *p);
/* Counters for tests and `bench`: steps run solo, mode switches, probes started; solo: the mode
 * kept outside probes. */
typedef struct {
    long steps, solo_steps, switches, probes;
    int solo;
} threadpool_stats;
threadpool_stats threadpool_get_stats(const threadpool *p);
/* Tests: replace the run-queue delay reading (seconds of delay of the pool's threads so far). */
void threadpool_set_delay_probe(threadpool *p, double (*fn)(void *), void *arg);
/* Tests: replace the "is there a CPU for each of the pool's threads" reading (1 yes, 0 no). */
void threadpool_set_room_probe(threadpool *p, int (*fn)(void *), void *arg);
#endif
