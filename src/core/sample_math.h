/* sample_math.h — the sampler's arithmetic that must give the same bits on the CPU (sampler.c)
 * and on a CUDA device (cuda/sample.cu), so that a seed draws the same tokens on both: the
 * counter-based generator (splitmix64 of seed + n golden steps: draw n needs no state but its
 * counter), the penalty rule, the candidates' total order as one 64-bit key, and the job a
 * device sampler takes for one row of logits (plain data, the same layout in C and CUDA).
 * Every function is static inline and, under nvcc, host and device. */
#ifndef LFM2C_SAMPLE_MATH_H
#define LFM2C_SAMPLE_MATH_H
#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define SMP_HD __host__ __device__ inline
#else
#define SMP_HD inline
#endif

/* A device sampler's limits: the most candidates it sorts (top-k, or every token left when top-k
 * is off; more: the row is sampled on the host) and the most top logprobs it returns. */
enum { SMP_KMAX = 1024, SMP_MAX_TOP = 20 };

/* The device sampler's statuses (smp_out.status): a token; none left (lfm2c_sampler_sample's
 * -1); logits not finite (LFM2C_SAMPLE_NOT_FINITE); more than SMP_KMAX candidates. */
enum { SMP_OK = 0, SMP_NONE = -1, SMP_NOT_FINITE = -2, SMP_HOST = -3 };

/* The generator's state for a seed (0 takes a fixed odd constant). */
static SMP_HD uint64_t smp_seed(uint64_t seed) { return seed ? seed : 0x9e3779b97f4a7c15ull; }

/* Draw number `counter` (0, 1, ...) of the stream of state `seed` (smp_seed): a uniform number in
 * [0, 1) with 53 random bits. */
static SMP_HD double smp_uniform(uint64_t seed, uint64_t counter) {
    uint64_t z = seed + (counter + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

/* A logit of a token seen `count` times in the penalty window: llama.cpp's repeat penalty (when
 * rep), then OpenAI's frequency and presence penalties (one fused multiply-add, so no compiler
 * contracts it differently on either side). */
static SMP_HD float smp_penalize(float l, int count, int rep, float repeat, float frequency, float presence) {
    if (rep) l = l > 0 ? l / repeat : l * repeat;
    return l - fmaf((float)count, frequency, presence);
}

/* The candidates' order as one unsigned key, larger first: the logit, then the lower id. Keys are
 * distinct for distinct ids; -infinity sorts below every finite logit. */
static SMP_HD uint64_t smp_key(float v, int id) {
    union {
        float f;
        uint32_t u;
    } b;
    b.f = v == 0 ? 0.0f : v; /* -0 ranks as +0, as the CPU's comparisons have it */
    uint32_t o = b.u & 0x80000000u ? ~b.u : b.u | 0x80000000u;
    return (uint64_t)o << 32 | (uint32_t)(0xFFFFFFFFu - (uint32_t)id);
}
static SMP_HD int smp_key_id(uint64_t key) { return (int)(0xFFFFFFFFu - (uint32_t)key); }

/* One row for a device sampler. The arrays live in one buffer the sampler is given (`arena`),
 * at byte offsets (-1: none), so the job is the same plain data on the host and the device. */
typedef struct smp_job {
    int row;                         /* the row of logits */
    float temperature, top_p, min_p; /* lfm2c_sampler_params' (temperature <= 0: greedy) */
    int top_k;
    int rep; /* the repeat penalty applies (repeat != 1, > 0) */
    float repeat, presence, frequency;
    uint64_t seed, counter; /* the draw is smp_uniform(seed, counter) */
    int64_t hist_off;       /* the penalty window: n_hist int32 token ids (already cut to repeat_last_n) */
    int n_hist;
    int64_t bias_off; /* n_vocab floats added to the logits, or -1 */
    int64_t mask_off; /* (n_vocab + 31) / 32 words: bit i set = token i allowed, or -1 */
    int n_logprobs;   /* -1: none; else the chosen token's and the n_logprobs (<= SMP_MAX_TOP) best */
} smp_job;

/* What comes back of a row: the token (or -1) and its status, the draw used (1: the caller's
 * sampler advances its counter), the chosen token's log-probability under the raw logits and the
 * best n_top of them, best first (ties: the lower id). */
typedef struct smp_out {
    int32_t token;
    int status;
    int drew;
    float logprob;
    int n_top;
    int32_t top_token[SMP_MAX_TOP];
    float top_logprob[SMP_MAX_TOP];
} smp_out;
#endif
