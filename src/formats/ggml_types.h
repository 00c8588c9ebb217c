/* ggml_types.h — GGML tensor types and block formats: the type table (GGML_TYPE_TABLE, one row
 * per type: sizes, the activation format it is multiplied with, the backends that run it, what
 * quantize can make), the block structs, bit-exact dequantization, the activation quantizers and
 * the interleaved layouts. Format facts, used by the kernels (cpu/, cuda/, vulkan/), the backends'
 * checks (core/gpu_shapes.c), convert and quantize alike; the scalar reference dot products are
 * the kernels' (cpu/kernels.h). */
#ifndef LFM2C_QUANT_H
#define LFM2C_QUANT_H

#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>

/* The type table: one row per GGML type a file may hold, everything the rest of the engine asks
 * of a type. Its C form (ggml_type_info, ggml_type_get) adds each type's dequantizer
 * (ggml_types.c); the CUDA sources expand the rows themselves (cuda/cuda_math.cuh: block sizes and
 * the CUDA bit, in device code). A new type is its row here, its block struct below, its
 * dequantizer in ggml_types.c, its kernels (cpu/, and cuda/, vulkan/ where its row says they run
 * it) and its tests; nothing else restates it.
 *   X(NAME, id, weights a block, bytes a block, vec_dot, runs, flags, fallback)
 *   NAME      GGML_NAME is its id (the GGUF tensor type), "NAME" its name
 *   vec_dot   the activation format the CPU's integer kernels multiply it with (GGML_Q8_0,
 *             GGML_Q8_K; GGML_F32: float activations, the float path of cpu/tiles.h)
 *   runs      GGML_RUN_* bits: the backends whose products take it (a backend's table,
 *             core/backend.h, names its bit; a model with a type its backend lacks is refused,
 *             naming the backends that run it)
 *   flags     GGML_TF_*: quantize can make it (convert/quantize.c), making it needs an importance
 *             matrix (llama-quantize's rule: but for token_embd / output), its quantizer cannot run
 *             without importance weights at all (ggml's rule), an activation format only
 *   fallback  the type quantize uses for rows that are not whole blocks of it (llama-quantize's
 *             tensor_type_fallback; GGML_F16 after it when even those do not fit); GGML_F32: none */
#define GGML_RUN_ALL (GGML_RUN_CPU | GGML_RUN_CUDA | GGML_RUN_VULKAN)
#define GGML_RUN_CPU_CUDA (GGML_RUN_CPU | GGML_RUN_CUDA)
#define GGML_TYPE_TABLE(X) \
    X(F32, 0, 1, 4, GGML_F32, GGML_RUN_ALL, GGML_TF_QUANTIZE, GGML_F32) \
    X(F16, 1, 1, 2, GGML_F32, GGML_RUN_ALL, GGML_TF_QUANTIZE, GGML_F32) \
    X(Q4_0, 2, 32, sizeof(block_q4_0), GGML_Q8_0, GGML_RUN_ALL, GGML_TF_QUANTIZE, GGML_F32) \
    X(Q4_1, 3, 32, sizeof(block_q4_1), GGML_Q8_0, GGML_RUN_ALL, GGML_TF_QUANTIZE, GGML_F32) \
    X(Q5_0, 6, 32, sizeof(block_q5_0), GGML_Q8_0, GGML_RUN_ALL, GGML_TF_QUANTIZE, GGML_F32) \
    X(Q5_1, 7, 32, sizeof(block_q5_1), GGML_Q8_0, GGML_RUN_ALL, GGML_TF_QUANTIZE, GGML_F32) \
    X(Q8_0, 8, 32, sizeof(block_q8_0), GGML_Q8_0, GGML_RUN_ALL, GGML_TF_QUANTIZE, GGML_F32) \
    X(Q8_1, 9, 32, 36, GGML_F32, 0, GGML_TF_ACT, GGML_F32) \
    X(Q2_K, 10, 256, sizeof(block_q2_K), GGML_Q8_K, GGML_RUN_CPU_CUDA, GGML_TF_QUANTIZE, GGML_Q4_0) \
    X(Q3_K, 11, 256, sizeof(block_q3_K), GGML_Q8_K, GGML_RUN_CPU_CUDA, GGML_TF_QUANTIZE, GGML_Q4_0) \
    X(Q4_K, 12, 256, sizeof(block_q4_K), GGML_Q8_K, GGML_RUN_ALL, GGML_TF_QUANTIZE, GGML_Q5_0) \
    X(Q5_K, 13, 256, sizeof(block_q5_K), GGML_Q8_K, GGML_RUN_ALL, GGML_TF_QUANTIZE, GGML_Q5_1) \
    X(Q6_K, 14, 256, sizeof(block_q6_K), GGML_Q8_K, GGML_RUN_ALL, GGML_TF_QUANTIZE, GGML_Q8_0) \
    X(Q8_K, 15, 256, sizeof(block_q8_K), GGML_F32, 0, GGML_TF_ACT, GGML_F32) \
    X(IQ2_XXS, 16, 256, sizeof(block_iq2_xxs), GGML_Q8_K, GGML_RUN_CPU, \
      GGML_TF_QUANTIZE | GGML_TF_IMATRIX | GGML_TF_NEEDS_W, GGML_IQ4_NL) \
    X(IQ2_XS, 17, 256, sizeof(block_iq2_xs), GGML_Q8_K, GGML_RUN_CPU, \
      GGML_TF_QUANTIZE | GGML_TF_IMATRIX | GGML_TF_NEEDS_W, GGML_IQ4_NL) \
    X(IQ3_XXS, 18, 256, sizeof(block_iq3_xxs), GGML_Q8_K, GGML_RUN_CPU, GGML_TF_QUANTIZE | GGML_TF_IMATRIX, \
      GGML_IQ4_NL) \
    X(IQ1_S, 19, 256, sizeof(block_iq1_s), GGML_Q8_K, GGML_RUN_CPU, \
      GGML_TF_QUANTIZE | GGML_TF_IMATRIX | GGML_TF_NEEDS_W, GGML_IQ4_NL) \
    X(IQ4_NL, 20, 32, sizeof(block_iq4_nl), GGML_F32, GGML_RUN_ALL, GGML_TF_QUANTIZE, GGML_F32) \
    X(IQ3_S, 21, 256, sizeof(block_iq3_s), GGML_Q8_K, GGML_RUN_CPU, GGML_TF_QUANTIZE, GGML_IQ4_NL) \
    X(IQ2_S, 22, 256, sizeof(block_iq2_s), GGML_Q8_K, GGML_RUN_CPU, GGML_TF_QUANTIZE | GGML_TF_IMATRIX, GGML_IQ4_NL) \
    X(IQ4_XS, 23, 256, sizeof(block_iq4_xs), GGML_Q8_K, GGML_RUN_CPU_CUDA, GGML_TF_QUANTIZE, GGML_IQ4_NL) \
    X(IQ1_M, 29, 256, sizeof(block_iq1_m), GGML_Q8_K, GGML_RUN_CPU, GGML_TF_QUANTIZE | GGML_TF_IMATRIX, GGML_IQ4_NL) \
    X(BF16, 30, 1, 2, GGML_F32, GGML_RUN_ALL, GGML_TF_QUANTIZE, GGML_F32) \
    X(MXFP4, 39, 32, sizeof(block_mxfp4), GGML_F32, GGML_RUN_CPU_CUDA, 0, GGML_F32)

/* a GGML_TYPE_TABLE row's id as an enumerator (the other columns unused) */
#define GGML_TYPE_ENUM(N, id, bs, sz, vd, runs, fl, fb) GGML_##N = id,
enum ggml_type {
    GGML_TYPE_TABLE(GGML_TYPE_ENUM)
    /* one past the largest id a file may hold (the GGUF reader refuses larger ones) */
    GGML_NTYPES = 40,
    /* internal layouts, made at load time from a file's type; never in a file */
    GGML_Q4_K_X16 = 64,
    GGML_Q6_K_X16 = 65,
    GGML_Q2_K_X16 = 66,
    GGML_Q3_K_X16 = 67,
    GGML_NTYPES_ALL = 68 /* one past every id, the internal layouts' included */
};
#undef GGML_TYPE_ENUM

/* the backends (GGML_TYPE_TABLE's runs): one bit each */
enum { GGML_RUN_CPU = 1u << 0, GGML_RUN_CUDA = 1u << 1, GGML_RUN_VULKAN = 1u << 2 };
/* GGML_TYPE_TABLE's flags */
enum {
    GGML_TF_QUANTIZE = 1u << 0, /* quantize_rows makes it (convert/quantize.c) */
    GGML_TF_IMATRIX = 1u << 1,  /* making it needs an importance matrix (but token_embd, output) */
    GGML_TF_ACT = 1u << 2,      /* an activation format (Q8_1, Q8_K): no weight, no dequantizer */
    GGML_TF_NEEDS_W = 1u << 3   /* its quantizer needs importance weights, whatever the tensor */
};

#define QK4_0 32
#define QK8_0 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef uint16_t ggml_half;

typedef struct {
    ggml_half d;
    uint8_t qs[16];
} block_q4_0;
typedef struct {
    ggml_half d, m;
    uint8_t qs[16];
} block_q4_1;
typedef struct {
    ggml_half d;
    uint8_t qh[4];
    uint8_t qs[16];
} block_q5_0;
typedef struct {
    ggml_half d, m;
    uint8_t qh[4];
    uint8_t qs[16];
} block_q5_1;
typedef struct {
    ggml_half d;
    int8_t qs[32];
} block_q8_0;
typedef struct {
    uint8_t scales[16];
    uint8_t qs[64];
    ggml_half d, dmin;
} block_q2_K;
typedef struct {
    uint8_t hmask[32];
    uint8_t qs[64];
    uint8_t scales[12];
    ggml_half d;
} block_q3_K;
typedef struct {
    ggml_half d, dmin;
    uint8_t scales[12];
    uint8_t qs[128];
} block_q4_K;
typedef struct {
    ggml_half d, dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
} block_q5_K;
typedef struct {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    ggml_half d;
} block_q6_K;
/* activation format for K-quant dot products: f32 scale, 256 int8, sums of each 16 */
typedef struct {
    float d;
    int8_t qs[256];
    int16_t bsums[16];
} block_q8_K;
typedef struct {
    ggml_half d;
    uint8_t qs[16];
} block_iq4_nl;
typedef struct {
    ggml_half d;
    uint16_t scales_h;
    uint8_t scales_l[4];
    uint8_t qs[128];
} block_iq4_xs;
typedef struct {
    uint8_t e;
    uint8_t qs[16];
} block_mxfp4;
/* the importance-matrix types (ggml's ggml-common.h defines the blocks; iq_grids.h the grids) */
typedef struct {
    ggml_half d;
    uint16_t qs[32]; /* per 32 weights: 4 grid indices (bytes), then 4 x 7 sign bits and the scale (top 4) */
} block_iq2_xxs;
typedef struct {
    ggml_half d;
    uint16_t qs[32];   /* per 8 weights: grid index (9 bits) | 7 sign bits << 9 */
    uint8_t scales[8]; /* per 32 weights: two 4-bit scales (16 weights each) */
} block_iq2_xs;
typedef struct {
    ggml_half d;
    uint8_t qs[64];    /* grid indices' low 8 bits (32), then the sign bytes (32) */
    uint8_t qh[8];     /* per 32 weights: the indices' 2 high bits */
    uint8_t scales[8]; /* per 32 weights: two 4-bit scales */
} block_iq2_s;
typedef struct {
    ggml_half d;
    uint8_t qs[96]; /* 64 grid indices (4 weights each), then per 32 weights 4 x 7 sign bits and the scale */
} block_iq3_xxs;
typedef struct {
    ggml_half d;
    uint8_t qs[64];    /* grid indices' low 8 bits */
    uint8_t qh[8];     /* per 32 weights: the 8 indices' high bits */
    uint8_t signs[32]; /* a bit per weight */
    uint8_t scales[4]; /* per 64 weights: two 4-bit scales (32 weights each) */
} block_iq3_s;
typedef struct {
    ggml_half d;
    uint8_t qs[32]; /* grid indices' low 8 bits */
    uint16_t qh[8]; /* per 32 weights: 4 x 3 high bits, the 3-bit scale, the delta's sign */
} block_iq1_s;
typedef struct {
    uint8_t qs[32];    /* grid indices' low 8 bits */
    uint8_t qh[16];    /* per 16 weights: 2 x (3 high bits, the delta's sign) */
    uint8_t scales[8]; /* 4 x 16 bits: 3-bit scales of 16 weights, and d's 16 bits 4 at a time (top nibbles) */
} block_iq1_m;
/* IQ1_M's d: its 16 bits kept 4 at a time in the top nibbles of the 4 scale words */
static inline uint16_t iq1m_d(const uint8_t *scales) {
    const uint16_t s0 = (uint16_t)(scales[0] | scales[1] << 8), s1 = (uint16_t)(scales[2] | scales[3] << 8);
    const uint16_t s2 = (uint16_t)(scales[4] | scales[5] << 8), s3 = (uint16_t)(scales[6] | scales[7] << 8);
    return (uint16_t)(s0 >> 12 | (s1 >> 8 & 0x00f0) | (s2 >> 4 & 0x0f00) | (s3 & 0xf000));
}

#ifdef __cplusplus /* the CUDA sources include this file (the enum and block structs) */
extern "C" {
#endif

/* A row of the type table (GGML_TYPE_TABLE above), or of an internal layout. */
typedef struct ggml_type_info {
    const char *name;
    int block_size;        /* weights per block (1 for float types) */
    int type_size;         /* bytes per block */
    uint32_t vec_dot_type; /* the activation format the CPU multiplies it with (GGML_TYPE_TABLE) */
    unsigned runs;         /* GGML_RUN_* */
    unsigned flags;        /* GGML_TF_* */
    uint32_t fallback;     /* GGML_TYPE_TABLE's fallback */
    uint32_t x16;          /* its interleaved layout (below), 0: none */
    uint32_t base;         /* an internal layout: the file's type it holds; else 0 */
    /* n weights (a multiple of block_size) from src, bit for bit as llama.cpp's to_float;
     * NULL where there is none (activation formats, internal layouts: x16_unpack first) */
    void (*to_float)(const void *src, float *dst, int64_t n);
} ggml_type_info;

const ggml_type_info *ggml_type_get(uint32_t type); /* NULL for unknown ids */
/* The type of that name (case-insensitive: "q4_k", "Q4_K"); -1 if none. Internal layouts are
 * not found by name. */
int ggml_type_by_name(const char *name);
/* Whether the engine reads tensors of this type: a file's type with a dequantizer. */
bool ggml_type_readable(uint32_t type);
/* bytes of a row of n weights; 0 if n is not a multiple of the block size */
size_t ggml_row_size(uint32_t type, int64_t n);

float fp16_to_f32(ggml_half h);
ggml_half f32_to_fp16(float f); /* round to nearest even, like F16C */
float bf16_to_f32(uint16_t b);
uint16_t f32_to_bf16(float f); /* round to nearest even; NaN kept quiet */

/* Dequantize n weights (a multiple of the block size) of `type` starting at src (its row's
 * to_float; zeros for a type without one). */
void dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

/* Activation quantization (reference semantics, see spec 2.8). */
void quantize_row_q8_0(const float *x, block_q8_0 *y, int64_t n);
void quantize_row_q8_K(const float *x, block_q8_K *y, int64_t n);

/* The activation format a weight type is multiplied with on the fast path (its row's vec_dot):
 * GGML_Q8_0, GGML_Q8_K, or GGML_F32 (float activations); GGML_F32 for unknown ids. */
uint32_t vec_dot_type(uint32_t weight_type);

/* The X16 layouts: the same bytes as 16 consecutive rows of a K-quant, interleaved so that one
 * 512-bit vector holds 4 consecutive weights of each of the 16 rows (the int8 dot product
 * instructions then sum 4 weights per row lane, and a sub-block's scale is applied once per
 * sub-block instead of once per pair of weights). A group of 16 rows of nb blocks takes as many
 * bytes as the rows did, so row r0 (a multiple of 16) still starts at r0 * row_bytes; block b of
 * a group is 16 blocks' bytes at b * 16 * type_size.
 * GGML_Q4_K_X16 (2304 bytes a block):
 *   [0, 32)      d of rows 0..15 (fp16)            [32, 64)     dmin of rows 0..15 (fp16)
 *   [64, 192)    byte j * 16 + r: low 4 bits of row r's scale of sub-block j, min's in the high 4
 *   [192, 256)   byte jj * 16 + r: the high 2 bits of row r's scales of sub-blocks 2jj, 2jj + 1
 *                (bits 0-1, 2-3) and of its mins of those sub-blocks (bits 4-5, 6-7)
 *   [256, 2304)  64 bytes per (jj, g), jj < 4, g < 8, in that order: for each row r the 4 bytes
 *                qs[32 jj + 4 g .. + 3] of its Q4_K block (low nibbles: weights 64 jj + 4 g + i
 *                of sub-block 2 jj; high nibbles: the same positions of sub-block 2 jj + 1).
 * GGML_Q6_K_X16 (3360 bytes a block; q = the unsigned 6-bit values, weight = d * sc * (q - 32);
 * quad k = weights 4k .. 4k + 3, k < 64), every byte in the order decode reads it (one forward
 * stream: a core's prefetcher follows it, where three streams 1 KB apart, or a jump back to the
 * block's scales at each sub-block, lost it; bench/CPU.md):
 *   [0, 32)      d of rows 0..15 (fp16)
 *   then 4 quarters of 832 bytes, quarter j < 4:
 *     192 bytes per u = 4j .. 4j + 3: nibble vectors u and u + 16, then high-bit vector u
 *                (x16q6_nib, x16q6_hi). Nibble vector v < 32, 64 bytes: for each row r 4 bytes,
 *                byte i = low 4 bits of q of weight i of quad v | those of quad v + 32 << 4.
 *                High-bit vector u < 16, 64 bytes: for each row r 4 bytes, byte i = the high 2
 *                bits of q of weight i of quads u, u + 16, u + 32, u + 48 (bits 0-1, 2-3, 4-5, 6-7).
 *     64 bytes: the scales of sub-blocks j, j + 4, j + 8, j + 12, the ones those quads end
 *                (x16q6_sc): 16 bytes each, byte r = row r's scale (int8).
 * GGML_Q2_K_X16 (1344 bytes a block; q = the 2-bit values 0..3, weight = d sc q - dmin mn, sc and
 * mn the low and high 4 bits of the block's scale byte of the weight's sub-block of 16; quad
 * v = weights 4v .. 4v + 3, of sub-block v / 4), in the order decode reads it:
 *   [0, 256)     the scale bytes, 64 per quarter j < 4 (x16q2_sc(j, p), p < 2): byte 2r + e = row
 *                r's scale byte of sub-block j + 8p + 4e (the sub-blocks j, j + 4, j + 8, j + 12
 *                that the quarter's quads complete; zero-extended to int16 the 32 bytes are the
 *                (sub-block j + 8p, j + 8p + 4) pairs of each row in a dword)
 *   [256, 1280)  16 crumb vectors u < 16 (x16q2_vec(u)), 64 bytes: for each row r 4 bytes, byte
 *                i = q of weight i of quads u, u + 16, u + 32, u + 48 (bits 0-1, 2-3, 4-5, 6-7);
 *                quarter j's are u = 4j .. 4j + 3
 *   [1280, 1312) d of rows 0..15 (fp16)                [1312, 1344) dmin of rows 0..15 (fp16)
 * GGML_Q3_K_X16 (1760 bytes a block; q = low 2 bits + 4 h - 4, h the hmask bit; s = the 6-bit
 * scale of a sub-block of 16, weight = d (s - 32) q):
 *   [0, 192)     the scales, 48 bytes per quarter j (x16q3_sc(j)): byte r = low 4 bits of row r's
 *                s of sub-block j | those of j + 4 << 4; at 16 + r the same for j + 8, j + 12; at
 *                32 + r the high 2 bits of its s of j, j + 4, j + 8, j + 12 (bits 0-1 .. 6-7)
 *   [192, 1728)  384 bytes per quarter j: the crumb vectors u = 4j .. 4j + 3 of the low 2 bits (as
 *                Q2_K_X16's, x16q3_lo(u)), then the h vectors t = 0, 1 (x16q3_hi(j, t)) of
 *                u0 = 4j + 2t and u1 = u0 + 1: for each row r 4 bytes, byte i = h of weight i of
 *                quad u0 + 16f at bit 2 + 2f and of u1 + 16f at bit 3 + 2f (f < 3), of u0 + 48 at
 *                bit 0 and of u1 + 48 at bit 1 (so that one AND and one OR put a quad's
 *                low 2 bits + 4 h in place for f < 3)
 *   [1728, 1760) d of rows 0..15 (fp16)
 * x16_type says which layout a type has (0: none) and x16_base which type a layout holds (0:
 * not a layout); x16_pack makes groups from rows (n_rows a multiple of 16), x16_unpack gives the
 * rows back, x16_unpack_row row r (0..15) of one group. */
enum { X16_ROWS = 16 };
/* where a Q6_K_X16 block keeps nibble vector v (< 32), high-bit vector u (< 16) and the 16 scales
 * of sub-block j (< 16) */
static inline size_t x16q6_nib(int v) {
    return 32 + 832 * (size_t)((v & 15) >> 2) + 192 * (size_t)(v & 3) + 64 * (size_t)(v >> 4);
}
static inline size_t x16q6_hi(int u) { return 32 + 832 * (size_t)(u >> 2) + 192 * (size_t)(u & 3) + 128; }
static inline size_t x16q6_sc(int j) { return 32 + 832 * (size_t)(j & 3) + 768 + 16 * (size_t)(j >> 2); }
/* where a Q2_K_X16 / Q3_K_X16 block keeps its parts (above) */
enum { X16Q2_D = 1280, X16Q2_DMIN = 1312, X16Q3_D = 1728 };
static inline size_t x16q2_sc(int j, int p) { return 64 * (size_t)j + 32 * (size_t)p; }
static inline size_t x16q2_vec(int u) { return 256 + 64 * (size_t)u; }
static inline size_t x16q3_sc(int j) { return 48 * (size_t)j; }
static inline size_t x16q3_lo(int u) { return 192 + 384 * (size_t)(u >> 2) + 64 * (size_t)(u & 3); }
static inline size_t x16q3_hi(int j, int t) { return 192 + 384 * (size_t)j + 256 + 64 * (size_t)t; }
uint32_t x16_type(uint32_t type);
uint32_t x16_base(uint32_t type);
void x16_pack(uint32_t type, const uint8_t *rows, size_t row_bytes, int64_t n_rows, uint8_t *dst);
void x16_unpack(uint32_t type, const uint8_t *src, size_t row_bytes, int64_t n_rows, uint8_t *rows);
void x16_unpack_row(uint32_t type, const uint8_t *group, size_t row_bytes, int r, uint8_t *row);

/* The 12 packed bytes of Q4_K / Q5_K from the eight 6-bit scales and mins (each at most 63):
 * kq_scale_min's inverse. */
static inline void kq_pack_scale_min(uint8_t *s, const uint8_t sc[8], const uint8_t mn[8]) {
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] = sc[j];
            s[j + 4] = mn[j];
        } else {
            s[j + 4] = (uint8_t)((sc[j] & 0xF) | ((mn[j] & 0xF) << 4));
            s[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
            s[j] |= (uint8_t)((mn[j] >> 4) << 6);
        }
    }
}
/* 6-bit scale and min of sub-block j from the 12 packed bytes of Q4_K / Q5_K */
static inline void kq_scale_min(int j, const uint8_t *s, uint8_t *sc, uint8_t *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

#ifdef __cplusplus
}
#endif
#endif
