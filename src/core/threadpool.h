/* threadpool.h — one pool of worker threads per model, reused by every forward pass.
 * threadpool_run(pool, fn, arg) calls fn(arg, ith, nth) once for every ith in [0, nth) and
 * returns when all calls are done. The indices are claimed dynamically: the caller and the
 * awake workers take them in turn, so a descheduled worker's share is run by the others; a
 * thread may run several indices (one after the other, never two at once), and each index is
 * run exactly once. fn must not depend on which thread runs an index. A pool of n runs its n
 * indices on at most one thread per CPU this process may use (threadpool_threads). */
#ifndef LFM2C_THREADPOOL_H
#define LFM2C_THREADPOOL_H
#define THREADPOOL_MAX_THREADS 512   /* threadpool_new refuses more */
typedef struct threadpool threadpool;
typedef void (*threadpool_fn)(void *arg, int ith, int nth);
/* n_threads <= 0: threadpool_default_threads(). NULL when n_threads > THREADPOOL_MAX_THREADS
 * or on allocation failure; fewer threads than asked when the system refuses to create more. */
threadpool *threadpool_new(int n_threads);
void threadpool_free(threadpool *p);
int threadpool_size(const threadpool *p);   /* indices per job: the n_threads asked for */
/* Threads actually running (the caller included): at most one per CPU this process may use. */
int threadpool_threads(const threadpool *p);
void threadpool_run(threadpool *p, threadpool_fn fn, void *arg);
/* Physical cores this process may run on (SMT siblings counted once; the CPU affinity mask
 * respected); falls back to the CPUs allowed, then the online CPUs; at least 1. */
int threadpool_default_threads(void);
/* CPUs this process may run on (affinity mask; else online CPUs); at least 1. */
int threadpool_available_cpus(void);
#endif
