/* test_sampler.c — the sampler on hand-made logits, where the right answer is known: greedy and
 * its tie rule, logit bias, the filter hook, "no token left" (-1), logits with NaN or +inf
 * refused (LFM2C_SAMPLE_NOT_FINITE, greedy or not), top-k / top-p / min-p cut the
 * candidate set exactly where llama.cpp's chain does, the draw follows softmax(logits / T) (20,000
 * seeded draws, so the check is deterministic), seeds reproduce, the penalties (llama.cpp's
 * repeat penalty over the last N tokens, OpenAI's presence / frequency) move the argmax as their
 * formulas say, and the caller's logits are never modified. The generator is counter-based
 * (core/sample_math.h, shared with the device sampler): draw n of a seed is splitmix64's n-th
 * output from that seed, as the sampler's stateful generator gave before; a mask
 * (sampler_set_mask) excludes what a filter hook setting the same tokens to -inf excludes. */
#include "lfm2c.h"
#include "core/sample_math.h"
#include "core/sampler.h"
#include "test.h"

#include <math.h>
#include <string.h>

static lfm2c_sampler_params plain(void) { /* every stage off */
    lfm2c_sampler_params p = lfm2c_sampler_default_params();
    p.temperature = 0;
    p.top_k = 0;
    p.top_p = 1;
    p.min_p = 0;
    p.repeat_penalty = 1;
    p.presence_penalty = 0;
    p.frequency_penalty = 0;
    p.seed = 7;
    return p;
}

static int sample1(const lfm2c_sampler_params *p, const float *l, int V, const int32_t *h, int nh) {
    lfm2c_sampler *s = lfm2c_sampler_new(p, V);
    int r = s ? lfm2c_sampler_sample(s, l, h, nh) : -99;
    lfm2c_sampler_free(s);
    return r;
}

/* the set of tokens drawn in n draws, as a bit mask */
static unsigned drawn(const lfm2c_sampler_params *p, const float *l, int V, int n) {
    lfm2c_sampler *s = lfm2c_sampler_new(p, V);
    unsigned m = 0;
    for (int i = 0; i < n; i++) {
        int t = lfm2c_sampler_sample(s, l, NULL, 0);
        if (t >= 0) m |= 1u << t;
    }
    lfm2c_sampler_free(s);
    return m;
}

static void mask_even(void *user, float *l, int V) {
    (void)user;
    for (int i = 0; i < V; i += 2) l[i] = -INFINITY;
}

static void mask_all(void *user, float *l, int V) {
    (void)user;
    for (int i = 0; i < V; i++) l[i] = -INFINITY;
}

static void test_greedy(void) {
    lfm2c_sampler_params p = plain();
    float l[5] = {0.1f, 2.0f, -1.0f, 2.0f, 1.5f};
    CHECK(sample1(&p, l, 5, NULL, 0) == 1, "greedy takes the largest logit, the lower id on a tie");
    float copy[5];
    memcpy(copy, l, sizeof l);
    lfm2c_sampler *s = lfm2c_sampler_new(&p, 5);
    float bias[5] = {0, -INFINITY, 0, 0, 0};
    lfm2c_sampler_set_logit_bias(s, bias);
    CHECK(lfm2c_sampler_sample(s, l, NULL, 0) == 3, "a -inf bias removes token 1");
    bias[4] = 1.0f;
    lfm2c_sampler_set_logit_bias(s, bias);
    CHECK(lfm2c_sampler_sample(s, l, NULL, 0) == 4, "a +1 bias makes token 4 the largest");
    lfm2c_sampler_set_logit_bias(s, NULL);
    CHECK(lfm2c_sampler_sample(s, l, NULL, 0) == 1, "a NULL bias clears it");
    lfm2c_sampler_set_filter(s, mask_all, NULL);
    CHECK(lfm2c_sampler_sample(s, l, NULL, 0) == -1, "greedy: no token left gives -1, not token 0");
    lfm2c_sampler_free(s);
    CHECK(memcmp(copy, l, sizeof l) == 0, "the caller's logits are not modified");
    CHECK(lfm2c_sampler_new(&p, 0) == NULL && lfm2c_sampler_new(NULL, 5) == NULL, "bad arguments: NULL");
}

static void test_filter_and_empty(void) {
    lfm2c_sampler_params p = plain();
    p.temperature = 1.0f;
    float l[6] = {5, 0, 5, 0.5f, 5, 0.2f};
    lfm2c_sampler *s = lfm2c_sampler_new(&p, 6);
    lfm2c_sampler_set_filter(s, mask_even, NULL);
    int odd = 1;
    for (int i = 0; i < 2000; i++) odd &= lfm2c_sampler_sample(s, l, NULL, 0) % 2 == 1;
    CHECK(odd, "the filter's -inf tokens are never drawn");
    lfm2c_sampler_set_filter(s, mask_all, NULL);
    CHECK(lfm2c_sampler_sample(s, l, NULL, 0) == -1, "sampling: no token left gives -1");
    lfm2c_sampler_free(s);
}

/* A row with NaN or +infinity anywhere (weights that overflow) is refused, not drawn from: greedy
 * would pick an arbitrary token past a NaN, and the softmax of +inf is NaN. -inf stays an
 * excluded token. */
static void test_not_finite(void) {
    lfm2c_sampler_params g = plain(), t = plain();
    t.temperature = 0.8f;
    t.top_k = 2;
    const float bad[2] = {NAN, INFINITY};
    for (int b = 0; b < 2; b++)
        for (int at = 0; at < 6; at++) {
            float l[6] = {1, 2, 3, 0.5f, -INFINITY, 0};
            l[at] = bad[b];
            CHECK(sample1(&g, l, 6, NULL, 0) == LFM2C_SAMPLE_NOT_FINITE, "greedy: %g at %d refused", bad[b], at);
            CHECK(sample1(&t, l, 6, NULL, 0) == LFM2C_SAMPLE_NOT_FINITE, "sampling: %g at %d refused", bad[b], at);
        }
    float l[6] = {1, 2, 3, 0.5f, -INFINITY, -INFINITY};
    CHECK(sample1(&g, l, 6, NULL, 0) == 2 && sample1(&t, l, 6, NULL, 0) >= 0, "-inf logits are excluded tokens");
}

static void test_cuts(void) {
    /* probabilities 0.5, 0.3, 0.15, 0.05 at temperature 1 */
    float l[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    lfm2c_sampler_params p = plain();
    p.temperature = 1.0f;
    CHECK(drawn(&p, l, 4, 4000) == 0xF, "nothing cut: all four tokens drawn");
    p.top_k = 1;
    CHECK(drawn(&p, l, 4, 1000) == 0x1, "top-k 1 is greedy");
    p.top_k = 2;
    CHECK(drawn(&p, l, 4, 4000) == 0x3, "top-k 2 keeps tokens 0 and 1");
    p.top_k = 0;
    p.top_p = 0.45f;
    CHECK(drawn(&p, l, 4, 1000) == 0x1, "top-p 0.45: token 0 alone reaches it");
    p.top_p = 0.79f;
    CHECK(drawn(&p, l, 4, 4000) == 0x3, "top-p 0.79: tokens 0 and 1 (0.8) reach it");
    p.top_p = 0.9f;
    CHECK(drawn(&p, l, 4, 4000) == 0x7, "top-p 0.9: three tokens (0.95)");
    p.top_p = 1;
    p.min_p = 0.25f;
    CHECK(drawn(&p, l, 4, 4000) == 0x7, "min-p 0.25: p >= 0.125 keeps three tokens");
    p.min_p = 0.5f;
    CHECK(drawn(&p, l, 4, 4000) == 0x3, "min-p 0.5: p >= 0.25 keeps two");
    p.min_p = 0;
    p.top_k = 3;
    p.top_p = 0.6f;
    CHECK(drawn(&p, l, 4, 4000) == 0x3, "top-k then top-p, on the same temperature-1 softmax");
}

static void test_distribution(void) {
    float l[3] = {logf(0.5f), logf(0.3f), logf(0.2f)};
    lfm2c_sampler_params p = plain();
    p.temperature = 1.0f;
    const int n = 20000;
    int c[3] = {0};
    lfm2c_sampler *s = lfm2c_sampler_new(&p, 3);
    for (int i = 0; i < n; i++) c[lfm2c_sampler_sample(s, l, NULL, 0)]++;
    lfm2c_sampler_free(s);
    CHECK(fabs(c[0] / (double)n - 0.5) < 0.02 && fabs(c[1] / (double)n - 0.3) < 0.02 &&
              fabs(c[2] / (double)n - 0.2) < 0.02,
          "T=1 follows softmax: %d %d %d of %d", c[0], c[1], c[2], n);
    /* T = 0.5 squares the odds: 25 : 9 : 4 */
    p.temperature = 0.5f;
    memset(c, 0, sizeof c);
    s = lfm2c_sampler_new(&p, 3);
    for (int i = 0; i < n; i++) c[lfm2c_sampler_sample(s, l, NULL, 0)]++;
    lfm2c_sampler_free(s);
    CHECK(fabs(c[0] / (double)n - 25 / 38.0) < 0.02 && fabs(c[2] / (double)n - 4 / 38.0) < 0.02,
          "T=0.5 follows softmax(l / 0.5): %d %d %d", c[0], c[1], c[2]);
}

static void test_seeds(void) {
    float l[8];
    for (int i = 0; i < 8; i++) l[i] = 0.1f * i;
    lfm2c_sampler_params p = plain();
    p.temperature = 1.0f;
    int a[64], b[64], d[64];
    lfm2c_sampler *s1 = lfm2c_sampler_new(&p, 8), *s2 = lfm2c_sampler_new(&p, 8);
    p.seed = 8;
    lfm2c_sampler *s3 = lfm2c_sampler_new(&p, 8);
    for (int i = 0; i < 64; i++) {
        a[i] = lfm2c_sampler_sample(s1, l, NULL, 0);
        b[i] = lfm2c_sampler_sample(s2, l, NULL, 0);
        d[i] = lfm2c_sampler_sample(s3, l, NULL, 0);
    }
    CHECK(memcmp(a, b, sizeof a) == 0, "the same seed draws the same sequence");
    CHECK(memcmp(a, d, sizeof a) != 0, "another seed draws another sequence");
    lfm2c_sampler_free(s1);
    lfm2c_sampler_free(s2);
    lfm2c_sampler_free(s3);
}

static void test_penalties(void) {
    lfm2c_sampler_params p = plain();
    float l[3] = {2.0f, 1.9f, -3.0f};
    int32_t h[2] = {0, 1};
    p.repeat_penalty = 1.1f;
    p.repeat_last_n = 64;
    CHECK(sample1(&p, l, 3, h, 1) == 1, "repeat penalty: 2.0 / 1.1 < 1.9");
    p.repeat_last_n = 1;
    CHECK(sample1(&p, l, 3, h, 2) == 0, "repeat_last_n 1: only the last token (1) is penalized");
    p.repeat_last_n = 0;
    CHECK(sample1(&p, l, 3, h, 1) == 0, "repeat_last_n 0: nothing is penalized");
    /* a negative logit is multiplied: -3 * 2 stays the smallest */
    float neg[2] = {-1.0f, -1.5f};
    int32_t h0[1] = {0};
    p.repeat_last_n = 64;
    p.repeat_penalty = 2.0f;
    CHECK(sample1(&p, neg, 2, h0, 1) == 1, "repeat penalty on a negative logit multiplies: -2 < -1.5");

    lfm2c_sampler_params q = plain();
    float o[2] = {1.0f, 0.5f};
    int32_t three[3] = {0, 0, 0};
    q.frequency_penalty = 0.2f;
    CHECK(sample1(&q, o, 2, three, 3) == 1, "frequency 0.2 x 3 occurrences: 0.4 < 0.5");
    q.frequency_penalty = 0;
    q.presence_penalty = 0.4f;
    CHECK(sample1(&q, o, 2, three, 3) == 0, "presence 0.4 counts once: 0.6 > 0.5");
    q.presence_penalty = 0.6f;
    CHECK(sample1(&q, o, 2, three, 3) == 1, "presence 0.6: 0.4 < 0.5");
    int32_t junk[3] = {-5, 7, 1 << 30};
    CHECK(sample1(&q, o, 2, junk, 3) == 0, "history ids outside the vocabulary are ignored");
    /* the counts are per call: the second call sees the same history, same answer */
    lfm2c_sampler *s = lfm2c_sampler_new(&q, 2);
    int r1 = lfm2c_sampler_sample(s, o, three, 3), r2 = lfm2c_sampler_sample(s, o, three, 3);
    lfm2c_sampler_free(s);
    CHECK(r1 == 1 && r2 == 1, "penalty counts do not leak between calls (%d %d)", r1, r2);
}

/* smp_uniform(seed, n) is the stateful splitmix64's n-th draw from seed */
static void test_counter_generator(void) {
    const uint64_t seeds[] = {0x5eed, 1, 0xdeadbeefcafef00dull};
    for (int k = 0; k < 3; k++) {
        uint64_t st = seeds[k];
        for (uint64_t n = 0; n < 1000; n++) {
            uint64_t z = (st += 0x9e3779b97f4a7c15ull);
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            z ^= z >> 31;
            double want = (double)(z >> 11) / 9007199254740992.0;
            if (smp_uniform(seeds[k], n) != want) {
                CHECK(0, "seed %d draw %d", k, (int)n);
                break;
            }
        }
    }
    CHECK(smp_key(-0.0f, 3) == smp_key(0.0f, 3) && smp_key(1.0f, 2) > smp_key(1.0f, 3) &&
              smp_key(-1.0f, 0) < smp_key(0.5f, 9) && smp_key(-INFINITY, 0) < smp_key(-1e30f, 5),
          "the keys' order");
}

static void odd_filter(void *u, float *l, int V) {
    (void)u;
    for (int i = 1; i < V; i += 2) l[i] = -INFINITY;
}

/* a mask of the even tokens draws what a filter hook excluding the odd ones draws */
static void test_mask(void) {
    enum { V = 70 };
    float l[V];
    uint32_t mask[(V + 31) / 32] = {0};
    for (int i = 0; i < V; i++)
        l[i] = (float)((i * 37) % 11) * 0.3f, mask[i >> 5] |= (uint32_t)(i % 2 == 0) << (i & 31);
    lfm2c_sampler_params p = plain();
    p.temperature = 1.0f;
    lfm2c_sampler *a = lfm2c_sampler_new(&p, V), *b = lfm2c_sampler_new(&p, V);
    lfm2c_sampler_set_filter(a, odd_filter, NULL);
    sampler_set_mask(b, mask);
    int same = 0;
    for (int i = 0; i < 200; i++) {
        int ta = lfm2c_sampler_sample(a, l, NULL, 0), tb = lfm2c_sampler_sample(b, l, NULL, 0);
        same += ta == tb && tb % 2 == 0;
    }
    CHECK(same == 200, "%d of 200 equal", same);
    lfm2c_sampler_free(a);
    lfm2c_sampler_free(b);
}

int main(void) {
    test_counter_generator();
    test_mask();
    test_greedy();
    test_filter_and_empty();
    test_not_finite();
    test_cuts();
    test_distribution();
    test_seeds();
    test_penalties();
    TEST_MAIN_END();
}
