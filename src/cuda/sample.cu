/* sample.cu — the sampler on the device (cuda_sample.h): a block of SMP_THREADS per row. The
 * block copies the row with the bias added and the mask applied into its work row, penalizes the
 * window's tokens (each distinct token once, by the thread of its first occurrence), then either
 * takes the best key (greedy) or selects the k best keys by an 8-bit radix select over the 64-bit
 * keys of core/sample_math.h, sorts them (bitonic, in shared memory) and lets one thread run the
 * CPU sampler's sums in the CPU sampler's order (sampler.c: double sums of float exponentials),
 * so a seed draws the same token. Logprobs: the raw row's log-sum-exp (a double sum in the
 * block's order: within rounding of the host's) and its best n by the same select. */
#include "cuda_sample.h"

enum { SMP_THREADS = 256, SMP_BINS = 256 };

struct smp_shared {
    uint64_t keys[SMP_KMAX];
    float p[SMP_KMAX];
    int bins[SMP_BINS];
    double red[SMP_THREADS];
    uint64_t redk[SMP_THREADS];
    uint64_t prefix;
    int kk, count, n2;
};

/* ---- block reductions (every thread gets the result) ----------------------------------------- */

__device__ double smp_sum_d(smp_shared *sh, double v) {
    const int t = threadIdx.x;
    sh->red[t] = v;
    __syncthreads();
    for (int s = SMP_THREADS / 2; s > 0; s >>= 1) {
        if (t < s) sh->red[t] += sh->red[t + s];
        __syncthreads();
    }
    double r = sh->red[0];
    __syncthreads();
    return r;
}

__device__ float smp_max_f(smp_shared *sh, float v) {
    const int t = threadIdx.x;
    sh->red[t] = v;
    __syncthreads();
    for (int s = SMP_THREADS / 2; s > 0; s >>= 1) {
        if (t < s && sh->red[t + s] > sh->red[t]) sh->red[t] = sh->red[t + s];
        __syncthreads();
    }
    float r = (float)sh->red[0];
    __syncthreads();
    return r;
}

/* the largest key (op 0) or the sum of the values (op 1) */
__device__ uint64_t smp_reduce_k(smp_shared *sh, uint64_t v, int op) {
    const int t = threadIdx.x;
    sh->redk[t] = v;
    __syncthreads();
    for (int s = SMP_THREADS / 2; s > 0; s >>= 1) {
        if (t < s) {
            uint64_t a = sh->redk[t], b = sh->redk[t + s];
            sh->redk[t] = op ? a + b : a > b ? a : b;
        }
        __syncthreads();
    }
    uint64_t r = sh->redk[0];
    __syncthreads();
    return r;
}

/* ---- selection ------------------------------------------------------------------------------- */

/* The k-th largest key of vals[0..V) (1 <= k <= V): one 8-bit digit a pass, from the top. */
__device__ uint64_t smp_select(smp_shared *sh, const float *vals, int V, int k) {
    const int t = threadIdx.x;
    uint64_t prefix = 0, mask = 0;
    int kk = k;
    for (int shift = 56; shift >= 0; shift -= 8) {
        for (int b = t; b < SMP_BINS; b += SMP_THREADS) sh->bins[b] = 0;
        __syncthreads();
        for (int i = t; i < V; i += SMP_THREADS) {
            const uint64_t key = smp_key(vals[i], i);
            if ((key & mask) == prefix) atomicAdd(&sh->bins[(key >> shift) & 0xFF], 1);
        }
        __syncthreads();
        if (t == 0) {
            int d = SMP_BINS - 1;
            while (d > 0 && kk > sh->bins[d]) kk -= sh->bins[d--];
            sh->prefix = prefix | (uint64_t)d << shift;
            sh->kk = kk;
        }
        __syncthreads();
        prefix = sh->prefix;
        kk = sh->kk;
        mask |= (uint64_t)0xFF << shift;
        __syncthreads();
    }
    return prefix;
}

/* sh->keys[0..k) = the k best keys of vals, best first (k <= SMP_KMAX) */
__device__ void smp_top(smp_shared *sh, const float *vals, int V, int k) {
    const int t = threadIdx.x;
    const uint64_t thr = smp_select(sh, vals, V, k);
    if (t == 0) sh->count = 0;
    __syncthreads();
    for (int i = t; i < V; i += SMP_THREADS) {
        const uint64_t key = smp_key(vals[i], i);
        if (key >= thr) {
            const int at = atomicAdd(&sh->count, 1);
            if (at < SMP_KMAX) sh->keys[at] = key;
        }
    }
    int P = 1;
    while (P < k) P <<= 1;
    __syncthreads();
    for (int i = k + t; i < P; i += SMP_THREADS) sh->keys[i] = 0; /* below every token's key */
    __syncthreads();
    for (int size = 2; size <= P; size <<= 1)
        for (int stride = size / 2; stride > 0; stride >>= 1) {
            for (int i = t; i < P; i += SMP_THREADS) {
                const int j = i ^ stride;
                if (j <= i) continue;
                const uint64_t a = sh->keys[i], b = sh->keys[j];
                if ((i & size) == 0 ? a < b : a > b) sh->keys[i] = b, sh->keys[j] = a;
            }
            __syncthreads();
        }
}

/* ---- one row --------------------------------------------------------------------------------- */

/* w = the row with bias and mask; penalties on the window. Returns whether the raw row is finite
 * (no NaN, no +infinity); *mx its largest value. */
__device__ bool smp_prepare(smp_shared *sh, const smp_job *J, const float *l, int V, const uint8_t *arena,
                            float *w, float *mx) {
    const int t = threadIdx.x;
    const float *bias = J->bias_off >= 0 ? (const float *)(arena + J->bias_off) : nullptr;
    const uint32_t *mask = J->mask_off >= 0 ? (const uint32_t *)(arena + J->mask_off) : nullptr;
    int bad = 0;
    float m = -INFINITY;
    for (int i = t; i < V; i += SMP_THREADS) {
        const float v = l[i];
        bad |= v != v || v == INFINITY;
        m = v > m ? v : m;
        float x = bias ? v + bias[i] : v;
        if (mask && !(mask[i >> 5] >> (i & 31) & 1)) x = -INFINITY;
        w[i] = x;
    }
    if (smp_reduce_k(sh, (uint64_t)bad, 1)) return false;
    *mx = smp_max_f(sh, m);
    const int32_t *hist = (const int32_t *)(arena + (J->hist_off > 0 ? J->hist_off : 0));
    for (int p = t; J->hist_off >= 0 && p < J->n_hist; p += SMP_THREADS) {
        const int tok = hist[p];
        if (tok < 0 || tok >= V) continue;
        int count = 0;
        bool first = true;
        for (int q = 0; q < J->n_hist; q++)
            if (hist[q] == tok) {
                first &= q >= p;
                count++;
            }
        if (first) w[tok] = smp_penalize(w[tok], count, J->rep, J->repeat, J->frequency, J->presence);
    }
    __syncthreads();
    return true;
}

/* The CPU sampler's draw over the sorted candidates sh->keys[0..k) of w (sampler.c candidates
 * and lfm2c_sampler_sample): probabilities at temperature 1 for top-p and min-p, then at the
 * job's temperature; the sums by one thread in the candidates' order. */
__device__ int smp_draw(smp_shared *sh, const smp_job *J, const float *w, int k) {
    const int t = threadIdx.x;
    const float mx = w[smp_key_id(sh->keys[0])];
    for (int i = t; i < k; i += SMP_THREADS) sh->p[i] = expf(w[smp_key_id(sh->keys[i])] - mx);
    __syncthreads();
    if (t == 0) {
        int n = k;
        double sum = 0;
        for (int i = 0; i < n; i++) sum += sh->p[i];
        if (J->top_p < 1.0f) {
            double c = 0;
            for (int i = 0; i < n; i++) {
                c += sh->p[i] / sum;
                if (c >= J->top_p) {
                    n = i + 1;
                    break;
                }
            }
        }
        if (J->min_p > 0) {
            int m = 1;
            while (m < n && sh->p[m] >= J->min_p * sh->p[0]) m++;
            n = m;
        }
        sh->n2 = n;
    }
    __syncthreads();
    const int n = sh->n2;
    for (int i = t; i < n; i += SMP_THREADS) sh->p[i] = expf((w[smp_key_id(sh->keys[i])] - mx) / J->temperature);
    __syncthreads();
    int tok = smp_key_id(sh->keys[n - 1]);
    if (t == 0) {
        double sum = 0;
        for (int i = 0; i < n; i++) sum += sh->p[i];
        const double r = smp_uniform(J->seed, J->counter) * sum;
        double c = 0;
        for (int i = 0; i < n; i++) {
            c += sh->p[i];
            if (r < c) {
                tok = smp_key_id(sh->keys[i]);
                break;
            }
        }
        sh->n2 = tok;
    }
    __syncthreads();
    tok = sh->n2;
    __syncthreads();
    return tok;
}

/* The chosen token's logprob under the raw row l and its best n (the scheduler's logprob_fill). */
__device__ void smp_logprobs(smp_shared *sh, const smp_job *J, const float *l, int V, float mx, smp_out *o) {
    const int t = threadIdx.x;
    double s = 0;
    for (int i = t; i < V; i += SMP_THREADS) s += exp((double)(l[i] - mx));
    const float lse = mx + (float)log(smp_sum_d(sh, s));
    int n = J->n_logprobs < SMP_MAX_TOP ? J->n_logprobs : SMP_MAX_TOP;
    n = n < V ? n : V;
    if (n > 0) smp_top(sh, l, V, n);
    if (t == 0) {
        o->logprob = o->token >= 0 ? l[o->token] - lse : 0.0f;
        o->n_top = n;
        for (int j = 0; j < n; j++) {
            o->top_token[j] = smp_key_id(sh->keys[j]);
            o->top_logprob[j] = l[o->top_token[j]] - lse;
        }
    }
}

__device__ void smp_row(smp_shared *sh, const smp_job *J, const float *l, int V, const uint8_t *arena, float *w,
                        smp_out *o) {
    const int t = threadIdx.x;
    float mx;
    if (!smp_prepare(sh, J, l, V, arena, w, &mx)) {
        if (t == 0) o->token = -1, o->status = SMP_NOT_FINITE, o->drew = 0, o->n_top = 0;
        return;
    }
    int tok = -1, status = SMP_OK, drew = 0;
    if (J->temperature <= 0) {
        uint64_t best = 0;
        for (int i = t; i < V; i += SMP_THREADS) {
            const uint64_t key = smp_key(w[i], i);
            best = key > best ? key : best;
        }
        best = smp_reduce_k(sh, best, 0);
        tok = w[smp_key_id(best)] > -INFINITY ? smp_key_id(best) : -1;
    } else {
        uint64_t n = 0;
        for (int i = t; i < V; i += SMP_THREADS) n += w[i] > -INFINITY;
        n = smp_reduce_k(sh, n, 1);
        const int k = J->top_k > 0 && (uint64_t)J->top_k < n ? J->top_k : (int)n;
        if (k > SMP_KMAX) status = SMP_HOST;
        else if (k > 0) {
            smp_top(sh, w, V, k);
            tok = smp_draw(sh, J, w, k);
            drew = 1;
        }
    }
    if (status == SMP_OK && tok < 0) status = SMP_NONE;
    if (t == 0) o->token = status == SMP_OK ? tok : -1, o->status = status, o->drew = drew, o->n_top = 0;
    if (status == SMP_OK && J->n_logprobs >= 0) smp_logprobs(sh, J, l, V, mx, o);
}

__global__ void __launch_bounds__(SMP_THREADS)
    sample_kernel(const float *logits, size_t ldl, int V, const smp_job *jobs, const uint8_t *arena, float *work,
                  smp_out *out) {
    __shared__ smp_shared sh;
    const smp_job *J = &jobs[blockIdx.x];
    smp_row(&sh, J, logits + (size_t)J->row * ldl, V, arena, work + (size_t)blockIdx.x * V, &out[blockIdx.x]);
}

void cu_sample(cu_q *cq, const float *logits, size_t ldl, int n_vocab, const smp_job *jobs, int n,
               const uint8_t *arena, float *work, smp_out *out) {
    if (n <= 0) return;
    /* grid, block, shared memory bytes, stream, no attributes: it waits for the kernel before */
    const cudaLaunchConfig_t cfg = {dim3((unsigned)n), dim3(SMP_THREADS), 0, cq ? cq->st : nullptr, nullptr, 0};
    cudaLaunchKernelEx(&cfg, sample_kernel, logits, ldl, n_vocab, jobs, arena, work, out);
    cu_q_other(cq);
}
