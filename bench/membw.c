/* membw.c — the machine's read bandwidth: every thread streams its slice of a 1 GB buffer
 * with 512-bit loads (256-bit without AVX-512; on other CPUs, e.g. ARM64, 64-bit loads the
 * compiler widens to its vectors), best of several passes, for 1..N threads.
 * A core keeps more misses in flight when it reads several streams at once (and with software
 * prefetch), so each thread count tries 1, 2, 4 and 8 interleaved streams per thread, without
 * prefetch, with prefetch into L2 and with non-temporal prefetch (the decode kernels' kind), and
 * reports the best: the honest ceiling, not the easiest pattern.
 * Decode of a big model reads each weight once per token, so bandwidth / bytes-per-token is
 * the decode speed limit. The figure in parentheses divides by the slowest thread's CPU time
 * instead of wall time (other processes competing for the cores).
 * With PIECE_KB, every thread reads pieces of that size at random places of the buffer instead
 * of one slice: MoE decode reads its experts so (an expert's matrix of the 24B-A2B is 1.7 MB,
 * four of 64 chosen per token and layer), and on a virtual machine with a large buffer this
 * reads slower than one long stream. Usage: membw [MB] [max_threads] [PIECE_KB]; MEMBW_ALL=1 also
 * prints every pattern's figure, not just the best.
 * With two threads or more it first times two threads handing one cache line back and forth
 * (the round trip, median of a few runs): near 50 ns the two cores share a cache, 300 ns and more
 * the line crosses between core complexes. On the 2-core Zen 4 VMs that says which placement the
 * host gave the two vCPUs, and so which bandwidth state the machine is in (bench/CPU.md). */
#include "base/hugemem.h"
#include "base/threadpool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const uint8_t *buf;
    size_t size, piece;
    uint64_t sink[64];
    double cpu[64];
    int wide, streams, pf, nta, page;
    unsigned seed;
} job;

static double thread_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ns streams of n / ns bytes each, read side by side; pf > 0: prefetch pf bytes ahead, into L2
 * or (nta) non-temporal, into L1 only, as the decode kernels do */
#if defined(__x86_64__)
__attribute__((target("avx512f"))) static uint64_t read512(const uint8_t *p, size_t n, int ns, int pf, int nta,
                                                           int page) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    const size_t per = n / (size_t)ns / 256 * 256;
    for (size_t i = 0; i < per; i += 256)
        for (int s = 0; s < ns; s++) {
            const uint8_t *q = p + s * per + i;
            if (page && i % 4096 == 0) _mm_prefetch((const char *)q + page, _MM_HINT_T2);
            if (pf)
                for (int o = 0; o < 256; o += 64) {
                    if (nta) _mm_prefetch((const char *)q + pf + o, _MM_HINT_NTA);
                    else _mm_prefetch((const char *)q + pf + o, _MM_HINT_T1);
                }
            a0 = _mm512_xor_si512(a0, _mm512_load_si512(q));
            a1 = _mm512_xor_si512(a1, _mm512_load_si512(q + 64));
            a2 = _mm512_xor_si512(a2, _mm512_load_si512(q + 128));
            a3 = _mm512_xor_si512(a3, _mm512_load_si512(q + 192));
        }
    a0 = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
    return (uint64_t)_mm512_reduce_add_epi64(a0);
}

__attribute__((target("avx2"))) static uint64_t read256(const uint8_t *p, size_t n, int ns, int pf, int nta, int page) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    const size_t per = n / (size_t)ns / 128 * 128;
    for (size_t i = 0; i < per; i += 128)
        for (int s = 0; s < ns; s++) {
            const uint8_t *q = p + s * per + i;
            if (page && i % 4096 == 0) _mm_prefetch((const char *)q + page, _MM_HINT_T2);
            if (pf)
                for (int o = 0; o < 128; o += 64) {
                    if (nta) _mm_prefetch((const char *)q + pf + o, _MM_HINT_NTA);
                    else _mm_prefetch((const char *)q + pf + o, _MM_HINT_T1);
                }
            a0 = _mm256_xor_si256(a0, _mm256_load_si256((const __m256i *)q));
            a1 = _mm256_xor_si256(a1, _mm256_load_si256((const __m256i *)(q + 32)));
            a2 = _mm256_xor_si256(a2, _mm256_load_si256((const __m256i *)(q + 64)));
            a3 = _mm256_xor_si256(a3, _mm256_load_si256((const __m256i *)(q + 96)));
        }
    a0 = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
    uint64_t v[4];
    memcpy(v, &a0, 32);
    return v[0] + v[1] + v[2] + v[3];
}
#else /* portable: 16 words of 64 bits per 128 bytes (ARM64 gcc makes them 128-bit loads) */
static uint64_t read512(const uint8_t *p, size_t n, int ns, int pf, int nta, int page) {
    (void)p, (void)n, (void)ns, (void)pf, (void)nta, (void)page;
    return 0;
}
static uint64_t read256(const uint8_t *p, size_t n, int ns, int pf, int nta, int page) {
    uint64_t a[16] = {0};
    const size_t per = n / (size_t)ns / 128 * 128;
    for (size_t i = 0; i < per; i += 128)
        for (int s = 0; s < ns; s++) {
            const uint64_t *q = (const uint64_t *)(const void *)(p + s * per + i);
            if (page && i % 4096 == 0) __builtin_prefetch((const uint8_t *)q + page, 0, 1);
            if (pf)
                for (int o = 0; o < 128; o += 64) {
                    if (nta) __builtin_prefetch((const uint8_t *)q + pf + o, 0, 0);
                    else __builtin_prefetch((const uint8_t *)q + pf + o, 0, 2);
                }
            for (int k = 0; k < 16; k++) a[k] ^= q[k];
        }
    uint64_t v = 0;
    for (int k = 0; k < 16; k++) v += a[k];
    return v;
}
#endif

static void worker(void *arg, int ith, int nth) {
    job *j = arg;
    size_t per = j->size / (size_t)nth / 4096 * 4096;
    const uint8_t *p = j->buf + per * (size_t)ith;
    double t0 = thread_cpu();
    if (j->piece) { /* as many random pieces as fill this thread's share */
        const size_t n = j->size / j->piece;
        uint64_t x = (uint64_t)j->seed * 2654435761u + (uint64_t)ith * 40503u + 1;
        for (size_t i = 0; i < per / j->piece; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            const uint8_t *q = j->buf + (x % n) * j->piece;
            j->sink[ith] += j->wide ? read512(q, j->piece, j->streams, j->pf, j->nta, j->page)
                                    : read256(q, j->piece, j->streams, j->pf, j->nta, j->page);
        }
    } else {
        j->sink[ith] += j->wide ? read512(p, per, j->streams, j->pf, j->nta, j->page)
                                : read256(p, per, j->streams, j->pf, j->nta, j->page);
    }
    j->cpu[ith] = thread_cpu() - t0;
}

/* the bytes one pass of t threads reads: each thread a slice in whole pages (whole pieces) */
static double pattern_bytes(size_t size, size_t piece, int t) {
    size_t per = size / (size_t)t / 4096 * 4096;
    return (double)(piece ? per / piece * piece : per) * t;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- the cross-core round trip: two threads hand one cache line back and forth ---- */

enum { PING_ROUNDS = 20000, PING_RUNS = 5 };
#define PING_MAX_S 0.25 /* a run stops here: two threads sharing one CPU hand over once a time slice */
static _Alignas(64) atomic_int ping_line;

static void *pong(void *arg) {
    (void)arg;
    for (int i = 0; i < PING_ROUNDS; i++) {
        int v;
        while ((v = atomic_load_explicit(&ping_line, memory_order_acquire)) != 2 * i + 1)
            if (v < 0) return NULL;
        atomic_store_explicit(&ping_line, 2 * i + 2, memory_order_release);
    }
    return NULL;
}

/* nanoseconds per round trip, the median of PING_RUNS runs; < 0 when no thread starts */
static double round_trip_ns(void) {
    double r[PING_RUNS];
    for (int k = 0; k < PING_RUNS; k++) {
        pthread_t t;
        atomic_store(&ping_line, 0);
        if (pthread_create(&t, NULL, pong, NULL) != 0) return -1;
        const double t0 = now();
        int i = 0;
        for (; i < PING_ROUNDS; i++) {
            atomic_store_explicit(&ping_line, 2 * i + 1, memory_order_release);
            while (atomic_load_explicit(&ping_line, memory_order_acquire) != 2 * i + 2) {}
            if (i % 256 == 255 && now() - t0 > PING_MAX_S) break;
        }
        r[k] = (now() - t0) / (i < PING_ROUNDS ? i + 1 : PING_ROUNDS) * 1e9;
        atomic_store(&ping_line, -1); /* ends pong if the run stopped early */
        pthread_join(t, NULL);
        for (int a = k; a > 0 && r[a] < r[a - 1]; a--) {
            const double x = r[a];
            r[a] = r[a - 1], r[a - 1] = x;
        }
    }
    return r[PING_RUNS / 2];
}

int main(int argc, char **argv) {
    size_t mb = argc > 1 ? (size_t)atol(argv[1]) : 1024;
    int maxt = argc > 2 ? atoi(argv[2]) : 0;
    const int all = getenv("MEMBW_ALL") != NULL;
    const size_t piece = argc > 3 ? (size_t)atol(argv[3]) / 4 * 4 << 10 : 0; /* whole 4 KB */
    if (maxt <= 0) {
        threadpool *p = threadpool_new(0);
        maxt = threadpool_size(p);
        threadpool_free(p);
    }
    size_t size = mb << 20;
    if (piece && piece * 2 > size) {
        fprintf(stderr, "membw: pieces of %zu KB need a larger buffer\n", piece >> 10);
        return 2;
    }
    size_t buf_len; /* in 2 MB pages where the kernel gives them, as the weights' copy is */
    uint8_t *buf = huge_alloc(size, &buf_len);
    if (!buf) {
        fprintf(stderr, "membw: cannot allocate %zu MB\n", mb);
        return 1;
    }
    memset(buf, 1, size);
#if defined(__x86_64__)
    __builtin_cpu_init();
    job j = {.buf = buf, .size = size, .piece = piece, .wide = __builtin_cpu_supports("avx512f")};
    printf("membw: %zu MB buffer, %s loads", mb, j.wide ? "512-bit" : "256-bit");
#else
    job j = {.buf = buf, .size = size, .piece = piece, .wide = 0};
    printf("membw: %zu MB buffer, portable loads", mb);
#endif
    if (piece) printf(", random pieces of %zu KB", piece >> 10);
    printf("\n");
    if (maxt >= 2 && threadpool_available_cpus() >= 2)
        printf("cross-core round trip: %.0f ns (two threads handing one cache line back and forth)\n", round_trip_ns());
    /* prefetch: none; 1 KB ahead into L2; 1 KB and 4 KB ahead non-temporal; 1 KB non-temporal
     * and one line a page 64 KB ahead (the decode kernels' page prefetch, src/cpu/tiles.h) */
    static const int streams[] = {1, 2, 4, 8};
    static const struct {
        int pf, nta, page;
        const char *name;
    } pats[] = {{0, 0, 0, ""},
                {1024, 0, 0, ", prefetch"},
                {1024, 1, 0, ", prefetchnta 1 KB"},
                {4096, 1, 0, ", prefetchnta 4 KB"},
                {1024, 1, 65536, ", prefetchnta 1 KB + pages 64 KB ahead"}};
    enum { N_STREAMS = sizeof streams / sizeof *streams, N_PATS = sizeof pats / sizeof *pats };
    for (int t = 1; t <= maxt; t++) {
        threadpool *pool = threadpool_new(t);
        double best = 1e30, cbest = 1e30, plain = 0;
        int best_s = 1, best_pf = 0;
        for (int si = 0; si < N_STREAMS; si++)
            for (int pi = 0; pi < N_PATS; pi++) {
                j.streams = streams[si];
                j.pf = pats[pi].pf;
                j.nta = pats[pi].nta;
                j.page = pats[pi].page;
                double b = 1e30;
                for (int rep = 0; rep < 5; rep++) {
                    j.seed++;
                    double t0 = now();
                    threadpool_run(pool, worker, &j);
                    double dt = now() - t0, c = 0;
                    for (int i = 0; i < t; i++) c = j.cpu[i] > c ? j.cpu[i] : c;
                    if (dt < b) b = dt;
                    if (c < cbest) cbest = c;
                }
                if (all) /* MEMBW_ALL: every pattern's figure, to see which one a core needs */
                    printf("  threads %d, %d stream%s per thread%s: %.1f GB/s\n", t, streams[si],
                           streams[si] > 1 ? "s" : "", pats[pi].name[0] ? pats[pi].name : ", no prefetch",
                           pattern_bytes(size, piece, t) / b / 1e9);
                if (si == 0 && pi == 0) plain = b;
                if (b < best) best = b, best_s = streams[si], best_pf = pi;
            }
        const double bytes = pattern_bytes(size, piece, t);
        printf("threads %d: %.1f GB/s (best: %d stream%s per thread%s; one plain stream %.1f GB/s; by thread CPU time "
               "%.1f GB/s)\n",
               t, bytes / best / 1e9, best_s, best_s > 1 ? "s" : "", pats[best_pf].name, bytes / plain / 1e9,
               bytes / cbest / 1e9);
        threadpool_free(pool);
    }
    uint64_t s = 0;
    for (int i = 0; i < 64; i++) s += j.sink[i];
    huge_free(buf, buf_len);
    return s == 42 ? 2 : 0; /* keeps the loads alive */
}
