/* threadpool.h — one pool of worker threads per model, reused by every forward pass.
 * threadpool_run(pool, fn, arg) runs fn(arg, ith, nth) on all nth threads (the caller is
 * thread 0) and returns when all are done. */
#ifndef LFM2C_THREADPOOL_H
#define LFM2C_THREADPOOL_H
typedef struct threadpool threadpool;
typedef void (*threadpool_fn)(void *arg, int ith, int nth);
threadpool *threadpool_new(int n_threads);
void threadpool_free(threadpool *p);
int threadpool_size(const threadpool *p);
void threadpool_run(threadpool *p, threadpool_fn fn, void *arg);
#endif
