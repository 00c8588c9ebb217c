/* kernels.h — the dispatch table between the model code and the per-ISA matrix kernels.
 * The forward pass never calls SIMD code directly: it asks kernels_get() for the table chosen
 * for this CPU (kernels_choose.c: LFM2C_ISA=scalar|avx2|avx512|amx|neon|neon-dotprod|neon-i8mm
 * forces one, the table of that name, else the first whose name starts with it; else a table
 * of known CPU kinds, else a timing) and calls through it.
 * Every table computes what the scalar truth computes (vec_dot_ref / vec_dot_float below,
 * kernels_scalar.c); tests/cpu/test_kernels.c checks. */
#ifndef LFM2C_KERNELS_H
#define LFM2C_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "formats/kv_layout.h"

/* ---- attention over a sequence's KV cache (kernels_attn.c holds the scalar truth) ----------
 * The cache types and the K / V layouts are formats/kv_layout.h's.
 * The contract for one query q (already multiplied by 1/sqrt(hd)) over keys 0..n-1:
 *   keys go in blocks of 16 (from position 0); score = fma chain over i in order (Q8_0: an fma
 *   chain per 32 values, then acc = fma(scale, part, acc)); online softmax with a running max M,
 *   16 lane sums L[j] = fma(L[j], alpha, w[j]), outputs O[i] scaled by alpha (when alpha != 1)
 *   then O[i] = fma(w[j], v[i], O[i]) for the block's keys in order (Q8_0: w*scale first);
 *   exp is kv_exp() (a fixed polynomial), the final sum is a fixed tree over the 16 lanes.
 * Every table computes exactly this (bitwise), and a query's result depends on nothing but its
 * own q, n and the cache: not on the other queries of the call, nor on the batch. */
enum { ATTN_MAX_Q = 16 };

typedef struct attn_call {
    int type_k, type_v, hd, n_head_kv, kv_head;
    const uint8_t *k;           /* the layer's K cache (block 0) */
    const uint8_t *v;           /* the layer's V cache (row 0) */
    size_t v_row;               /* bytes per V row */
    int nq;                     /* queries sharing this KV head, <= ATTN_MAX_Q */
    const float *q[ATTN_MAX_Q]; /* hd values each, pre-scaled */
    int n[ATTN_MAX_Q];          /* keys 0..n-1 visible to each query (n >= 1) */
    float *out[ATTN_MAX_Q];     /* hd values each */
} attn_call;

/* ---- F32 to F16, elementwise: y[i] = f32_to_fp16(x[i]) (ggml_types.h: round to nearest even,
 * every NaN to sign | 0x7e00), the same bits on every table. */
typedef void (*f16_row_fn)(const float *x, uint16_t *y, int64_t n);
void f16_row_scalar(const float *x, uint16_t *y, int64_t n);
void f16_row_x86_avx512(const float *x, uint16_t *y, int64_t n); /* kernels_attn_x86.c */
void f16_row_x86_avx2(const float *x, uint16_t *y, int64_t n);
void f16_row_arm_neon(const float *x, uint16_t *y, int64_t n); /* kernels_attn_neon.c */
/* Writes position pos (n_head_kv * hd values each) into the caches; to_f16 converts an F16
 * cache's values (a table's f16_row). */
/* kv_store_k: the cache is laid out for n_head_kv heads; heads 0..n_write-1 are written. */
void kv_store_k(int type, int hd, int n_head_kv, int n_write, uint8_t *k, int pos, const float *x, f16_row_fn to_f16);
void kv_store_v(int type, int kv_dim, uint8_t *v, size_t v_row, int pos, const float *x, f16_row_fn to_f16);
float kv_exp(float x); /* exp of x <= 0 (the contract's); 0 below -87.3 */
/* ---- SwiGLU, elementwise: g[i] = silu(g[i]) * u[i], the contract: with E = kv_exp(-|x|),
 * silu(x) = x / (1 + E) for x >= 0 and (x * E) / (1 + E) otherwise (never exp of a positive
 * argument, so no overflow), each operation rounded once as written. Every table computes
 * exactly this (bitwise), whatever the length and start of the call (kernels_attn.c holds the
 * truth). */
void swiglu_scalar(float *g, const float *u, int64_t n);
void swiglu_x86_avx512(float *g, const float *u, int64_t n); /* kernels_attn_x86.c */
void swiglu_x86_avx2(float *g, const float *u, int64_t n);
void swiglu_arm_neon(float *g, const float *u, int64_t n); /* kernels_attn_neon.c */
void attention_scalar(const attn_call *c);
void attention_x86_avx512(const attn_call *c); /* kernels_attn_x86.c (x86 only) */
void attention_x86_avx2(const attn_call *c);
void attention_arm_neon(const attn_call *c); /* kernels_attn_neon.c (ARM64 only) */
/* Where the attention kernels prefetch the cache ahead of their reads: prefetchnta (into L1,
 * the default) or prefetcht1 (into L2); which reads faster from memory differs between cores.
 * Set once, before the first call, from kernels_choice() (kernels_choose.c); speed only. */
enum { ATTN_PF_NTA, ATTN_PF_T1, ATTN_PF_NLOC };
extern int attn_pf_loc;
extern const char *const ATTN_PF_NAMES[ATTN_PF_NLOC]; /* "nta", "t1" */

typedef struct kernel_ops {
    const char *isa; /* "scalar", "avx2", "avx512vnni", "amx", "neon", "neon-dotprod", "neon-i8mm" */
    /* out[r, c] is bitwise the same whatever nr / nc tile it is computed in */
    bool tile_invariant;
    /* Quantize n activations (a multiple of the act type's block; F32 = copy) into dst. */
    void (*quantize_act)(uint32_t act_type, const float *x, void *dst, int64_t n);
    /* out[c * out_stride + r] = dot(weight row r, activation row c) for r < nr, c < nc.
     * w: nr rows of n weights of type wtype, w_row bytes apart; act: nc rows already in
     * vec_dot_type(wtype) format, act_row bytes apart. */
    void (*matmul)(uint32_t wtype, int64_t n, const uint8_t *w, size_t w_row, int nr, const uint8_t *act,
                   size_t act_row, int nc, float *out, size_t out_stride);
    /* the attention contract above */
    void (*attention)(const attn_call *c);
    /* The layout this table wants a weight matrix of wtype and n_rows rows in: wtype itself, or
     * an internal interleaved type (GGML_Q4_K_X16, ggml_types.h) its matmul takes instead, with
     * the same results bit for bit. NULL: always wtype. Row ranges given to matmul then start
     * and end on multiples of the group (16 rows). */
    uint32_t (*packed_type)(uint32_t wtype, int64_t n_rows);
    /* the SwiGLU contract above */
    void (*swiglu)(float *g, const float *u, int64_t n);
    /* the F16 contract above (the KV cache's stores) */
    f16_row_fn f16_row;
    /* The most columns for which one matmul call streams its weights once, as decode does (the
     * few-column tiles of tiles.h): products that narrow take decode's work-stealing split over
     * the thread pool (cpu/matmul.c). 0: 4. */
    int stream_cols;
} kernel_ops;

/* ---- the scalar truth (kernels_scalar.c) ---------------------------------------------------- */

/* Scalar reference dot product of one row of n weights with quantized activations (activations
 * in vec_dot_type(weight_type) format; float activations for the other types). */
float vec_dot_ref(uint32_t weight_type, int64_t n, const void *w, const void *act);
/* Dot of one weight row with float activations (double accumulation: the reference path). */
float vec_dot_float(uint32_t weight_type, int64_t n, const void *w, const float *x);

/* The table this process runs (chosen once: kernels_choice() below). */
const kernel_ops *kernels_get(void);
const kernel_ops *kernels_scalar(void);

/* ---- the choice among the tables this CPU supports (kernels_choose.c) ----------------------
 * LFM2C_ISA forces a table; else a table of known CPU kinds; else a timing of the candidates'
 * decode tile, cached per CPU (LFM2C_KERNEL_TIMING=0: no timing, the list's default; =again:
 * time again, ignoring the cache); else the default. */
typedef struct kernel_cpu {
    char vendor[16];   /* "AuthenticAMD", "GenuineIntel", "arm-0x41", "unknown" */
    int family, model; /* as the vendor numbers them (x86 display family / model); -1 unknown */
    char name[64];     /* the brand string ("AMD EPYC 9B14 96-Core Processor") */
} kernel_cpu;
typedef struct kernel_choice {
    const kernel_ops *ops;
    const char *how; /* "forced", "table", "timed", "cached", "only", "default" */
    char why[320];   /* one line: what decided (the CPU kind, the timings, LFM2C_ISA=...) */
    kernel_cpu cpu;
    /* the decode stream's prefetch plan (tiles.h DEC_PF_PLANS[pf]): how "forced", "timed",
     * "cached", "default", "none" (the table streams no interleaved layout); why: one line */
    int pf;
    const char *pf_name, *pf_how;
    char pf_why[320];
    /* where the attention kernels prefetch the KV cache (attn_pf_loc): how and why as above */
    int apf;
    const char *apf_name, *apf_how;
    char apf_why[256];
} kernel_choice;
enum { KERNELS_NO_TABLE = 1, KERNELS_NO_TIMING = 2, KERNELS_NO_CACHE = 4, KERNELS_RETIME = 8 };
void kernels_cpu_id(kernel_cpu *c);
/* The choice for cpu (force: LFM2C_ISA's value or NULL; cache_dir: the folder of the cache
 * file, NULL for the user's cache folder). Deterministic except for "timed". */
void kernels_choose(const char *force, const kernel_cpu *cpu, const char *cache_dir, int flags, kernel_choice *out);
/* The prefetch plan for ops's decode stream (force: LFM2C_DEC_PF's value or NULL; the rest as
 * kernels_choose): fills out->pf, pf_how and pf_why. Else a timing of the plans from memory
 * (a few hundred ms), cached per CPU and table beside the table's choice. */
void kernels_choose_pf(const char *force, const kernel_ops *ops, const kernel_cpu *cpu, const char *cache_dir,
                       int flags, kernel_choice *out);
/* Where the attention kernels of ops prefetch the cache (force: LFM2C_ATTN_PF's value, "nta"
 * or "t1", or NULL; the rest as kernels_choose): fills out->apf, apf_name, apf_how and apf_why. Else a
 * timing of both from memory (a 128 MB F16 cache, ~0.1 s), cached per CPU and table. */
void kernels_choose_attn_pf(const char *force, const kernel_ops *ops, const kernel_cpu *cpu, const char *cache_dir,
                            int flags, kernel_choice *out);
/* This process's choice, made once from the environment and this CPU; it sets tiles.h's
 * dec_pf_plan and attn_pf_loc. */
const kernel_choice *kernels_choice(void);
/* Tables compiled in and usable on this CPU (for tests): fills up to max, returns count. */
int kernels_available(const kernel_ops **out, int max);

/* Per-ISA tables; NULL when not compiled in or not supported by this CPU. */
const kernel_ops *kernels_x86_avx2(void);
const kernel_ops *kernels_x86_avx512(void);
const kernel_ops *kernels_x86_amx(void);      /* AVX-512 + AMX-INT8 tiles for K-quant prefill */
const kernel_ops *kernels_neon(void);         /* ARM64 ASIMD (kernels_neon.c) */
const kernel_ops *kernels_neon_dotprod(void); /* + SDOT (FEAT_DotProd) */
const kernel_ops *kernels_neon_i8mm(void);    /* + SMMLA (FEAT_I8MM) for prefill tiles */
#endif
