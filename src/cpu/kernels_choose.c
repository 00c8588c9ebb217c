/* kernels_choose.c — which of the kernel tables this CPU supports runs, and why. In order:
 * LFM2C_ISA forces one (by name or prefix); else a table of known CPU kinds (vendor, family,
 * model range -> the table measured fastest on that kind; docs: docs/HARDWARE.md "Kernels"); else, when
 * more than one tile-invariant table is usable, a short timing of the candidates' decode tile
 * (one Q4_K and one Q6_K weight matrix of about 1 MB each, times one activation column, each in
 * the layout the table packs the model into; a few milliseconds), cached per CPU in
 * $XDG_CACHE_HOME/lfm2c/kernels.tsv (else ~/.cache/lfm2c/kernels.tsv) so a CPU is timed once;
 * else the plainest-to-fastest list's default (kernels.c). Every candidate meets the scalar
 * contract (tests/cpu/test_kernels.c), so the choice changes speed, not what the contract
 * allows. The cache is only a cache: a line it cannot read, or one naming a table that is not
 * usable here, is timed again; a cache that cannot be written costs a timing per process.
 * Then, for a table that streams the X16 layout, the decode stream's prefetch plan (tiles.h)
 * the same way: LFM2C_DEC_PF forces one, else a from-memory timing of the plans, cached on a
 * line of its own beside the table's. And where the table's attention prefetches the KV cache
 * (kernels.h attn_pf_loc): LFM2C_ATTN_PF forces one, else a timing from memory, cached alike. */
#include "cpu/kernels.h"
#include "cpu/tiles.h"
#include "formats/ggml_types.h"
#include "base/clock.h"
#include "base/hugemem.h"
#include "base/os.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

/* ---- the CPU ---------------------------------------------------------------------------------- */

void kernels_cpu_id(kernel_cpu *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->vendor, sizeof c->vendor, "unknown");
    c->family = c->model = -1;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    unsigned a, b, cx, d;
    if (__get_cpuid(0, &a, &b, &cx, &d)) {
        memcpy(c->vendor, &b, 4), memcpy(c->vendor + 4, &d, 4), memcpy(c->vendor + 8, &cx, 4);
        c->vendor[12] = 0;
    }
    if (__get_cpuid(1, &a, &b, &cx, &d)) { /* display family / model as the vendors define them */
        int fam = (a >> 8) & 0xf, mod = (a >> 4) & 0xf;
        if (fam == 0xf) fam += (a >> 20) & 0xff;
        if (fam == 0x6 || fam >= 0xf) mod |= ((a >> 16) & 0xf) << 4;
        c->family = fam, c->model = mod;
    }
    unsigned br[12];
    if (__get_cpuid(0x80000000, &a, &b, &cx, &d) && a >= 0x80000004) {
        for (unsigned i = 0; i < 3; i++)
            __get_cpuid(0x80000002 + i, &br[4 * i], &br[4 * i + 1], &br[4 * i + 2], &br[4 * i + 3]);
        char s[49];
        memcpy(s, br, 48), s[48] = 0;
        char *p = s;
        while (*p == ' ') p++;
        snprintf(c->name, sizeof c->name, "%s", p);
    }
#else
    FILE *f = os_fopen("/proc/cpuinfo", "r"); /* ARM64 Linux: implementer and part */
    char line[256];
    unsigned impl = 0, part = 0;
    while (f && fgets(line, sizeof line, f)) {
        const char *colon = strchr(line, ':');
        if (!colon) continue;
        if (!strncmp(line, "CPU implementer", 15)) sscanf(colon + 1, "%x", &impl);
        if (!strncmp(line, "CPU part", 8)) sscanf(colon + 1, "%x", &part);
    }
    if (f) fclose(f);
    if (impl) snprintf(c->vendor, sizeof c->vendor, "arm-0x%02x", impl), c->model = (int)part;
#endif
    size_t n = strlen(c->name);
    while (n && c->name[n - 1] == ' ') c->name[--n] = 0;
    if (!n) snprintf(c->name, sizeof c->name, "%s family %d model %d", c->vendor, c->family, c->model);
}

/* ---- known kinds --------------------------------------------------------------------------- */

/* The first row whose vendor, family and model range match and whose table is usable here
 * wins. The measurements behind each row are in docs/HARDWARE.md ("Kernels: which table runs"). */
typedef struct known_kind {
    const char *vendor;
    int family, model_lo, model_hi; /* -1: any */
    const char *isa, *kind;
} known_kind;

static const known_kind KNOWN[] = {
    {"AuthenticAMD", 25, -1, -1, "avx512vnni", "AMD Zen 4"}, /* Zen 3 shares family 25: no AVX-512 table there */
    {"AuthenticAMD", 26, -1, -1, "avx512vnni", "AMD Zen 5"},
    {"GenuineIntel", 6, -1, -1, "amx", "Intel with AMX"}, /* the amx table exists only where AMX does */
};

static const kernel_ops *find_isa(const kernel_ops *const *avail, int n, const char *isa) {
    for (int i = 0; i < n; i++)
        if (!strcmp(avail[i]->isa, isa)) return avail[i];
    return NULL;
}

static const known_kind *known_match(const kernel_cpu *c, const kernel_ops *const *avail, int n) {
    for (size_t i = 0; i < sizeof KNOWN / sizeof *KNOWN; i++) {
        const known_kind *k = &KNOWN[i];
        if (strcmp(k->vendor, c->vendor) || (k->family >= 0 && k->family != c->family)) continue;
        if (k->model_lo >= 0 && (c->model < k->model_lo || c->model > k->model_hi)) continue;
        if (find_isa(avail, n, k->isa)) return k;
    }
    return NULL;
}

/* ---- timing the candidates' decode tile --------------------------------------------------- */

static uint64_t mix(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 24;
}

enum { TIME_N = 4096, TIME_ROWS4 = 512, TIME_ROWS6 = 256, TIME_REPS = 15 };

/* Random blocks with finite, moderate scales (no NaN / subnormal slow paths). */
static void random_blocks(uint32_t type, uint8_t *w, size_t bytes, uint64_t seed) {
    for (size_t i = 0; i < bytes; i++) w[i] = (uint8_t)mix(&seed);
    const size_t bs = ggml_type_get(type)->type_size;
    for (size_t b = 0; b + bs <= bytes; b += bs) {
        if (type == GGML_Q4_K) {
            block_q4_K *q = (block_q4_K *)(w + b);
            q->d = f32_to_fp16(1e-3f), q->dmin = f32_to_fp16(2e-4f);
        } else {
            ((block_q6_K *)(w + b))->d = f32_to_fp16(1e-3f);
        }
    }
}

/* Seconds for the best of TIME_REPS products of the weights (laid out as t wants them) with one
 * activation column; -1 when memory is short. */
static double time_table(const kernel_ops *t, uint32_t type, int rows, const uint8_t *plain, const float *x) {
    const size_t row = ggml_row_size(type, TIME_N), bytes = row * (size_t)rows;
    const uint32_t pt = t->packed_type ? t->packed_type(type, rows) : type;
    uint8_t *w = malloc(bytes), *act = malloc(ggml_row_size(GGML_Q8_K, TIME_N));
    float *out = malloc(sizeof(float) * (size_t)rows);
    double best = -1;
    if (w && act && out) {
        if (pt != type) x16_pack(type, plain, row, rows, w);
        else memcpy(w, plain, bytes);
        t->quantize_act(vec_dot_type(type), x, act, TIME_N);
        for (int r = 0; r <= TIME_REPS; r++) { /* the first is a warm-up */
            double t0 = lfm2c_now_s();
            t->matmul(pt, TIME_N, w, row, rows, act, ggml_row_size(GGML_Q8_K, TIME_N), 1, out, (size_t)rows);
            double dt = lfm2c_now_s() - t0;
            if (r && (best < 0 || dt < best)) best = dt;
        }
    }
    free(w), free(act), free(out);
    return best;
}

/* The candidate whose Q4_K + Q6_K decode products take least time, if it beats the default (the
 * last candidate) by 10%; else the default, so that processes timing at once on a machine where
 * the tables are close choose alike. why says the times. */
static const kernel_ops *time_candidates(const kernel_ops *const *cand, int nc, char *why, size_t wn) {
    const size_t b4 = ggml_row_size(GGML_Q4_K, TIME_N) * TIME_ROWS4, b6 = ggml_row_size(GGML_Q6_K, TIME_N) * TIME_ROWS6;
    uint8_t *w4 = malloc(b4), *w6 = malloc(b6);
    float *x = malloc(sizeof(float) * TIME_N);
    const kernel_ops *best = NULL;
    double best_t = 0, dflt_t = -1;
    if (w4 && w6 && x) {
        uint64_t s = 12345;
        random_blocks(GGML_Q4_K, w4, b4, 1), random_blocks(GGML_Q6_K, w6, b6, 2);
        for (int i = 0; i < TIME_N; i++) x[i] = (float)((int)(mix(&s) % 2001) - 1000) / 1000.0f;
        size_t at = snprintf(why, wn, "Q4_K + Q6_K decode tile, %.1f MB:", (b4 + b6) / 1e6);
        for (int i = 0; i < nc; i++) {
            double a = time_table(cand[i], GGML_Q4_K, TIME_ROWS4, w4, x),
                   b = time_table(cand[i], GGML_Q6_K, TIME_ROWS6, w6, x);
            if (a < 0 || b < 0) continue;
            if (at < wn) at += snprintf(why + at, wn - at, " %s %.3f ms", cand[i]->isa, (a + b) * 1e3);
            if (!best || a + b < best_t) best = cand[i], best_t = a + b;
            if (i == nc - 1) dflt_t = a + b;
        }
        if (best && best != cand[nc - 1] && dflt_t > 0 && best_t > 0.9 * dflt_t) {
            best = cand[nc - 1];
            if (at < wn) snprintf(why + at, wn - at, "; within 10%%: the default");
        }
    }
    free(w4), free(w6), free(x);
    return best;
}

/* ---- the cache: one line per CPU, "KEY\tISA\tWHY" ------------------------------------------ */

static void cache_key(const kernel_cpu *c, const kernel_ops *const *cand, int nc, char *key, size_t kn) {
    size_t at = snprintf(key, kn, "v1 %s|%s %d %d|", c->name, c->vendor, c->family, c->model);
    for (int i = 0; i < nc && at < kn; i++) at += snprintf(key + at, kn - at, "%s%s", i ? "," : "", cand[i]->isa);
    for (char *p = key; *p; p++)
        if (*p == '\t' || *p == '\n') *p = ' ';
}

static bool cache_path(const char *dir, char *path, size_t pn) {
    if (dir && *dir) return (size_t)snprintf(path, pn, "%s/kernels.tsv", dir) < pn;
    const char *x = getenv("XDG_CACHE_HOME"), *h = os_home();
    if (x && *x) return (size_t)snprintf(path, pn, "%s/lfm2c/kernels.tsv", x) < pn;
    if (h && *h) return (size_t)snprintf(path, pn, "%s/.cache/lfm2c/kernels.tsv", h) < pn;
    return false;
}

/* The ISA cached for key, into isa / why; false when there is none. */
static bool cache_read(const char *path, const char *key, char *isa, size_t in, char *why, size_t wn) {
    FILE *f = os_fopen(path, "r");
    if (!f) return false;
    char line[1024];
    bool found = false;
    const size_t kl = strlen(key);
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, key, kl) || line[kl] != '\t') continue;
        char *a = line + kl + 1, *b = strchr(a, '\t');
        if (!b || b == a) continue;
        *b++ = 0;
        b[strcspn(b, "\n")] = 0;
        snprintf(isa, in, "%s", a), snprintf(why, wn, "%s", b);
        found = true;
    }
    fclose(f);
    return found;
}

static void mkdirs(const char *path) { /* every folder above the file */
    char p[1024];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            os_mkdir(p);
            *s = '/';
        }
}

/* Replaces key's line (other CPUs' lines kept), through a temporary file and a rename. */
static void cache_write(const char *path, const char *key, const char *isa, const char *why) {
    char tmp[1100], line[1024];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)os_pid()) >= sizeof tmp) return;
    mkdirs(path);
    FILE *in = os_fopen(path, "r"), *out = os_fopen(tmp, "w");
    if (!out) {
        if (in) fclose(in);
        return;
    }
    const size_t kl = strlen(key);
    for (int n = 0; in && n < 256 && fgets(line, sizeof line, in); n++)
        if (strchr(line, '\n') && !(strncmp(line, key, kl) == 0 && line[kl] == '\t')) fputs(line, out);
    fprintf(out, "%s\t%s\t%s\n", key, isa, why);
    if (in) fclose(in);
    if (fclose(out) == 0) os_rename(tmp, path);
    else remove(tmp);
}

/* ---- a timed choice, cached per CPU and table --------------------------------------------- */

/* The choice cached under key (a name find knows), else the timer's (an index; -1 when memory
 * is short: index 0, how "default"), written back under key by name_of's name. *how is
 * "cached", "timed" or "default"; why the timer's or the cache's line. */
static int cached_or_timed(const char *key, const char *cache_dir, int flags, const kernel_ops *ops,
                           int (*find)(const char *), const char *(*name_of)(int),
                           int (*timer)(const kernel_ops *, char *, size_t), const char **how, char *why, size_t wn) {
    char path[1024], name[32];
    const bool cacheable = !(flags & KERNELS_NO_CACHE) && cache_path(cache_dir, path, sizeof path);
    if (cacheable && !(flags & KERNELS_RETIME) && cache_read(path, key, name, sizeof name, why, wn) &&
        find(name) >= 0) {
        *how = "cached";
        return find(name);
    }
    const int p = timer(ops, why, wn);
    if (p < 0) {
        *how = "default";
        return 0;
    }
    *how = "timed";
    if (cacheable) cache_write(path, key, name_of(p), why);
    return p;
}

/* ---- the decode stream's prefetch plan (tiles.h dec_pf_plan) --------------------------------- */

/* Bytes of weights the plan timing streams from memory (beyond a core's share of L3 on the
 * kinds met; sysconf's L3 figure is the socket's, not what one core can hold), in the two X16
 * layouts as a Q4_K_M model has them: three quarters Q4_K_X16, a quarter Q6_K_X16 (whose
 * blocks read differently: a plan can win on one and lose on the other), in 2 MB pages as the
 * weights' copy is (on 4 KB pages a stream reads slower and the plans rank otherwise). */
enum {
    PF_TIME_BYTES = 128 << 20,
    PF_TIME_ROUNDS = 3,
    PF_TIME_ROWS4 = PF_TIME_BYTES / 4 * 3 / (TIME_N / 256 * 144) / X16_ROWS * X16_ROWS,
    PF_TIME_ROWS6 = PF_TIME_BYTES / 4 / (TIME_N / 256 * 210) / X16_ROWS * X16_ROWS
};
#define PF_TIME_WHAT "Q4_K_X16 + Q6_K_X16 (3:1) in 2 MB pages"

static int find_plan(const char *name) {
    for (int i = 0; i < DEC_PF_NPLANS; i++)
        if (!strcmp(DEC_PF_PLANS[i].name, name)) return i;
    return -1;
}
static const char *plan_name(int i) { return DEC_PF_PLANS[i].name; }

/* One decode of both matrices under the current plan, in seconds. */
static double time_plan_once(const kernel_ops *t, const uint8_t *w4, const uint8_t *w6, const uint8_t *act,
                             float *out) {
    const size_t row4 = ggml_row_size(GGML_Q4_K, TIME_N), row6 = ggml_row_size(GGML_Q6_K, TIME_N);
    const size_t arow = ggml_row_size(GGML_Q8_K, TIME_N);
    double t0 = lfm2c_now_s();
    t->matmul(GGML_Q4_K_X16, TIME_N, w4, row4, PF_TIME_ROWS4, act, arow, 1, out, PF_TIME_ROWS4);
    t->matmul(GGML_Q6_K_X16, TIME_N, w6, row6, PF_TIME_ROWS6, act, arow, 1, out, PF_TIME_ROWS6);
    return lfm2c_now_s() - t0;
}

/* The plan whose one-thread decode from memory (PF_TIME_WHAT) is fastest, if it beats the
 * default (plan 0) by 10% (what a drift of a VM's bandwidth moves in a second); else the
 * default. The rounds alternate the plans, so that a drift of the machine's bandwidth meets
 * them all alike. -1 when memory is short. */
static int time_plans(const kernel_ops *t, char *why, size_t wn) {
    const size_t b4 = ggml_row_size(GGML_Q4_K, TIME_N) * PF_TIME_ROWS4;
    const size_t b6 = ggml_row_size(GGML_Q6_K, TIME_N) * PF_TIME_ROWS6, bytes = b4 + b6;
    size_t l4, l6;
    uint8_t *w4 = huge_alloc(b4, &l4), *w6 = huge_alloc(b6, &l6), *act = malloc(ggml_row_size(GGML_Q8_K, TIME_N));
    float *x = malloc(sizeof(float) * TIME_N), *out = malloc(sizeof(float) * PF_TIME_ROWS4);
    double best[16];
    int pick = -1;
    const int saved = dec_pf_plan, np = DEC_PF_NPLANS < 16 ? DEC_PF_NPLANS : 16;
    if (w4 && w6 && act && x && out) {
        memset(w4, 0x11, b4); /* every half-float scale 0x1111: a normal number; pages written */
        memset(w6, 0x11, b6);
        uint64_t s = 7;
        for (int i = 0; i < TIME_N; i++) x[i] = (float)((int)(mix(&s) % 2001) - 1000) / 1000.0f;
        t->quantize_act(GGML_Q8_K, x, act, TIME_N);
        for (int r = -1; r < PF_TIME_ROUNDS; r++) /* round -1: a warm-up */
            for (int p = 0; p < np; p++) {
                dec_pf_plan = p;
                const double dt = time_plan_once(t, w4, w6, act, out);
                if (r < 0) continue;
                if (r == 0 || dt < best[p]) best[p] = dt;
            }
        pick = 0;
        for (int p = 1; p < np; p++)
            if (best[p] < best[pick]) pick = p;
        size_t at = snprintf(why, wn, "decode from memory, %d MB of " PF_TIME_WHAT ", one thread:", (int)(bytes >> 20));
        for (int p = 0; p < np && at < wn; p++)
            at += snprintf(why + at, wn - at, " %s %.1f", DEC_PF_PLANS[p].name, bytes / best[p] / 1e9);
        if (at < wn) at += snprintf(why + at, wn - at, " GB/s");
        if (pick && best[pick] > 0.9 * best[0]) {
            pick = 0;
            if (at < wn) snprintf(why + at, wn - at, "; within 10%%: the default");
        }
    }
    dec_pf_plan = saved;
    huge_free(w4, l4), huge_free(w6, l6);
    free(act), free(x), free(out);
    return pick;
}

/* Whether ops streams the interleaved layout the plans apply to. */
static bool takes_plans(const kernel_ops *ops) {
    return ops && ops->packed_type && ops->packed_type(GGML_Q4_K, X16_ROWS) == GGML_Q4_K_X16;
}

static void choose_pf(const char *force, const kernel_ops *ops, const kernel_cpu *cpu, const char *cache_dir, int flags,
                      kernel_choice *out) {
    out->pf = 0;
    if (!takes_plans(ops)) {
        out->pf_how = "none";
        snprintf(out->pf_why, sizeof out->pf_why, "the %s table streams no interleaved layout", ops ? ops->isa : "?");
        return;
    }
    if (force && *force) {
        const int f = find_plan(force);
        if (f >= 0) {
            out->pf = f, out->pf_how = "forced";
            snprintf(out->pf_why, sizeof out->pf_why, "LFM2C_DEC_PF=%s", force);
            return;
        }
    }
    const char *unknown = force && *force ? "LFM2C_DEC_PF names no plan; " : "";
    if (flags & KERNELS_NO_TIMING) {
        out->pf_how = "default";
        snprintf(out->pf_why, sizeof out->pf_why, "%sLFM2C_KERNEL_TIMING=0: the first plan", unknown);
        return;
    }
    char key[512], why[sizeof out->pf_why];
    const kernel_ops *one[1] = {ops};
    cache_key(cpu, one, 1, key, sizeof key);
    /* the plans timed are part of the key: a build with other plans times them again */
    size_t kl = strlen(key);
    kl += snprintf(key + kl, sizeof key - kl, "|decode prefetch");
    for (int i = 0; i < DEC_PF_NPLANS && kl < sizeof key; i++)
        kl += snprintf(key + kl, sizeof key - kl, "%c%s", i ? ',' : ' ', DEC_PF_PLANS[i].name);
    /* and what they were timed on: a cache from a timing of other layouts is timed again */
    if (kl < sizeof key) kl += snprintf(key + kl, sizeof key - kl, " on " PF_TIME_WHAT);
    out->pf =
        cached_or_timed(key, cache_dir, flags, ops, find_plan, plan_name, time_plans, &out->pf_how, why, sizeof why);
    snprintf(out->pf_why, sizeof out->pf_why, "%s%.280s", unknown,
             out->pf_how[0] == 'd' ? "the timing could not run (memory): the first plan" : why);
}

void kernels_choose_pf(const char *force, const kernel_ops *ops, const kernel_cpu *cpu, const char *cache_dir,
                       int flags, kernel_choice *out) {
    choose_pf(force, ops, cpu, cache_dir, flags, out);
    out->pf_name = DEC_PF_PLANS[out->pf].name;
}

/* ---- where the attention kernels prefetch the KV cache (kernels.h attn_pf_loc) -------------- */

/* The timing's cache: F16 keys and values of 8 KV heads of 64, APF_TIME_POS positions (64 MB of
 * each, beyond a core's share of L3 as PF_TIME_BYTES), read as a decode step reads them: per
 * head, its 4 queries over every position (the 1.2B's shape; a decode step at depth). */
enum { APF_HEADS = 8, APF_HD = 64, APF_Q = 4, APF_TIME_POS = (PF_TIME_BYTES / 2) / (APF_HEADS * APF_HD * 2) };
#define APF_TIME_WHAT "one decode step's attention over a 128 MB F16 cache (8 heads of 64, 4 queries each)"

static int find_apf(const char *name) {
    for (int i = 0; i < ATTN_PF_NLOC; i++)
        if (!strcmp(ATTN_PF_NAMES[i], name)) return i;
    return -1;
}
static const char *apf_name(int i) { return ATTN_PF_NAMES[i]; }

/* One pass over every head under the current attn_pf_loc, in seconds. */
static double time_apf_once(const kernel_ops *t, const uint8_t *k, const uint8_t *v, const float *q, float *o) {
    const size_t v_row = kv_v_row_bytes(KV_F16, APF_HEADS * APF_HD);
    const double t0 = lfm2c_now_s();
    for (int h = 0; h < APF_HEADS; h++) {
        attn_call c = {KV_F16, KV_F16, APF_HD, APF_HEADS, h, k, v, v_row, APF_Q, {0}, {0}, {0}};
        for (int j = 0; j < APF_Q; j++) c.q[j] = q + j * APF_HD, c.out[j] = o + j * APF_HD, c.n[j] = APF_TIME_POS;
        t->attention(&c);
    }
    return lfm2c_now_s() - t0;
}

/* The location whose pass is fastest, if it beats the default (nta) by 10%; rounds alternate
 * the two, after a warm-up. -1 when memory is short. */
static int time_apf(const kernel_ops *t, char *why, size_t wn) {
    const size_t kb = (size_t)APF_TIME_POS / KV_KB * APF_HEADS * kv_k_head_block_bytes(KV_F16, APF_HD);
    const size_t vb = (size_t)APF_TIME_POS * kv_v_row_bytes(KV_F16, APF_HEADS * APF_HD);
    size_t lk, lv;
    uint8_t *k = huge_alloc(kb, &lk), *v = huge_alloc(vb, &lv);
    float *q = malloc(sizeof(float) * APF_Q * APF_HD * 2);
    double best[ATTN_PF_NLOC];
    int pick = -1;
    const int saved = attn_pf_loc;
    if (k && v && q) {
        memset(k, 0x11, kb); /* every half 0x1111: a small normal number; pages written */
        memset(v, 0x11, vb);
        for (int i = 0; i < APF_Q * APF_HD; i++) q[i] = (float)(i % 7) / 64.0f;
        for (int r = -1; r < PF_TIME_ROUNDS; r++)
            for (int p = 0; p < ATTN_PF_NLOC; p++) {
                attn_pf_loc = p;
                const double dt = time_apf_once(t, k, v, q, q + APF_Q * APF_HD);
                if (r < 0) continue;
                if (r == 0 || dt < best[p]) best[p] = dt;
            }
        pick = best[ATTN_PF_T1] < 0.9 * best[ATTN_PF_NTA] ? ATTN_PF_T1 : ATTN_PF_NTA;
        size_t at = snprintf(why, wn, APF_TIME_WHAT ", one thread:");
        for (int p = 0; p < ATTN_PF_NLOC && at < wn; p++)
            at += snprintf(why + at, wn - at, " %s %.1f", ATTN_PF_NAMES[p], (kb + vb) / best[p] / 1e9);
        if (at < wn) snprintf(why + at, wn - at, " GB/s%s", pick ? "" : " (t1 not 10% faster: nta)");
    }
    attn_pf_loc = saved;
    huge_free(k, lk), huge_free(v, lv);
    free(q);
    return pick;
}

static void choose_attn_pf(const char *force, const kernel_ops *ops, const kernel_cpu *cpu, const char *cache_dir,
                           int flags, kernel_choice *out) {
    out->apf = ATTN_PF_NTA;
    if (force && *force && find_apf(force) >= 0) {
        out->apf = find_apf(force), out->apf_how = "forced";
        snprintf(out->apf_why, sizeof out->apf_why, "LFM2C_ATTN_PF=%s", force);
        return;
    }
    const char *unknown = force && *force ? "LFM2C_ATTN_PF names neither nta nor t1; " : "";
    if (!ops || (flags & KERNELS_NO_TIMING)) {
        out->apf_how = "default";
        snprintf(out->apf_why, sizeof out->apf_why, "%s%s", unknown, ops ? "LFM2C_KERNEL_TIMING=0: nta" : "no table");
        return;
    }
    char key[512], why[sizeof out->apf_why];
    const kernel_ops *one[1] = {ops};
    cache_key(cpu, one, 1, key, sizeof key);
    size_t kl = strlen(key);
    snprintf(key + kl, sizeof key - kl, "|attention prefetch nta,t1 on " APF_TIME_WHAT);
    out->apf =
        cached_or_timed(key, cache_dir, flags, ops, find_apf, apf_name, time_apf, &out->apf_how, why, sizeof why);
    snprintf(out->apf_why, sizeof out->apf_why, "%s%.200s", unknown,
             out->apf_how[0] == 'd' ? "the timing could not run (memory): nta" : why);
}

void kernels_choose_attn_pf(const char *force, const kernel_ops *ops, const kernel_cpu *cpu, const char *cache_dir,
                            int flags, kernel_choice *out) {
    choose_attn_pf(force, ops, cpu, cache_dir, flags, out);
    out->apf_name = ATTN_PF_NAMES[out->apf];
}

/* ---- the choice ------------------------------------------------------------------------------ */

static void choose(const char *force, const kernel_cpu *cpu, const char *cache_dir, int flags, kernel_choice *out) {
    const kernel_ops *avail[8];
    const int n = kernels_available(avail, 8);
    memset(out, 0, sizeof *out);
    out->cpu = *cpu;
    if (force && *force) { /* the table of that name, else the first whose name starts with it */
        const kernel_ops *f = find_isa(avail, n, force);
        for (int i = 0; i < n && !f; i++)
            if (!strncmp(avail[i]->isa, force, strlen(force))) f = avail[i];
        if (f) {
            out->ops = f, out->how = "forced";
            snprintf(out->why, sizeof out->why, "LFM2C_ISA=%s", force);
            return;
        }
    }
    /* the candidates: the tables whose results do not depend on the tile shape (batch ==
     * one-by-one, bit for bit, which continuous batching needs), plainest first */
    const kernel_ops *cand[8];
    int nc = 0;
    for (int i = 1; i < n; i++)
        if (avail[i]->tile_invariant) cand[nc++] = avail[i];
    const kernel_ops *dflt = nc ? cand[nc - 1] : avail[0];
    if (nc <= 1) {
        out->ops = dflt, out->how = "only";
        snprintf(out->why, sizeof out->why, "%s",
                 nc ? "the one vector table this CPU supports" : "no vector table for this CPU");
        return;
    }
    const known_kind *k = (flags & KERNELS_NO_TABLE) ? NULL : known_match(cpu, avail, n);
    if (k) {
        out->ops = find_isa(avail, n, k->isa), out->how = "table";
        snprintf(out->why, sizeof out->why, "%s (%s family %d model %d)", k->kind, cpu->vendor, cpu->family,
                 cpu->model);
        return;
    }
    if (flags & KERNELS_NO_TIMING) {
        out->ops = dflt, out->how = "default";
        snprintf(out->why, sizeof out->why, "LFM2C_KERNEL_TIMING=0: the last of the list");
        return;
    }
    char key[512], path[1024], isa[32], why[sizeof out->why];
    cache_key(cpu, cand, nc, key, sizeof key);
    const bool cacheable = !(flags & KERNELS_NO_CACHE) && cache_path(cache_dir, path, sizeof path);
    if (cacheable && !(flags & KERNELS_RETIME) && cache_read(path, key, isa, sizeof isa, why, sizeof why)) {
        const kernel_ops *c = find_isa(cand, nc, isa);
        if (c) {
            out->ops = c, out->how = "cached";
            snprintf(out->why, sizeof out->why, "%.200s (cached in %.100s)", why, path);
            return;
        }
    }
    const kernel_ops *t = time_candidates(cand, nc, why, sizeof why);
    if (!t) {
        out->ops = dflt, out->how = "default";
        snprintf(out->why, sizeof out->why, "the timing could not run (memory): the last of the list");
        return;
    }
    out->ops = t, out->how = "timed";
    snprintf(out->why, sizeof out->why, "%s", why);
    if (cacheable) cache_write(path, key, t->isa, why);
}

void kernels_choose(const char *force, const kernel_cpu *cpu, const char *cache_dir, int flags, kernel_choice *out) {
    choose(force, cpu, cache_dir, flags, out);
    if (force && *force && strcmp(out->how, "forced")) { /* say so when LFM2C_ISA was set but matched nothing */
        char why[sizeof out->why];
        snprintf(why, sizeof why, "LFM2C_ISA=%.24s names no table here; %.250s", force, out->why);
        memcpy(out->why, why, sizeof why);
    }
}

static kernel_choice the_choice;
static void choose_once(void) {
    kernel_cpu c;
    kernels_cpu_id(&c);
    const char *t = getenv("LFM2C_KERNEL_TIMING"); /* 0: no timing; "again": time, ignoring the cache */
    int flags = t && !strcmp(t, "0") ? KERNELS_NO_TIMING : t && !strcmp(t, "again") ? KERNELS_RETIME : 0;
    kernels_choose(getenv("LFM2C_ISA"), &c, NULL, flags, &the_choice);
    kernels_choose_pf(getenv("LFM2C_DEC_PF"), the_choice.ops, &c, NULL, flags, &the_choice);
    dec_pf_plan = the_choice.pf;
    kernels_choose_attn_pf(getenv("LFM2C_ATTN_PF"), the_choice.ops, &c, NULL, flags, &the_choice);
    attn_pf_loc = the_choice.apf;
}

const kernel_choice *kernels_choice(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, choose_once);
    return &the_choice;
}
