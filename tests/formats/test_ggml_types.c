/* test_ggml_types.c — the type table (src/formats/ggml_types.{h,c}): every row of GGML_TYPE_TABLE
 * answers what the rest of the engine asks of it, consistently: its id, name (found back by name,
 * in any case), block size and bytes (the block struct's), the activation format it multiplies
 * with (an integer one only for block types of whole activation blocks), its dequantizer (every
 * weight type has one, the activation formats none), the CPU among its backends wherever it is
 * read, its fallback (a smaller block), the interleaved layouts and their base both ways; the
 * backend table's bits (core/backend.h) agree with the rows; the importance-matrix types'
 * dequantization is llama.cpp's bit for bit (goldens: tests/data/iq). */
#include "test.h"
#include "core/backend.h"
#include "formats/ggml_types.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the rows of the table as the header writes them */
#define ROW_OF(N, id, bs, sz, vd, runs, fl, fb) {#N, id, bs, (int)(sz), vd, runs, fl, fb},
static const struct {
    const char *name;
    uint32_t id;
    int bs, sz;
    uint32_t vd;
    unsigned runs, flags;
    uint32_t fallback;
} ROWS[] = {GGML_TYPE_TABLE(ROW_OF)};
#undef ROW_OF
enum { N_ROWS = sizeof ROWS / sizeof *ROWS };

static void test_rows(void) {
    int seen[GGML_NTYPES] = {0};
    for (int i = 0; i < N_ROWS; i++) {
        const uint32_t id = ROWS[i].id;
        const ggml_type_info *t = ggml_type_get(id);
        CHECK(id < GGML_NTYPES && t && !seen[id]++, "%s: id %u once, below GGML_NTYPES", ROWS[i].name, id);
        if (!t) continue;
        CHECK(!strcmp(t->name, ROWS[i].name) && t->block_size == ROWS[i].bs && t->type_size == ROWS[i].sz,
              "%s: the C row is the table's", ROWS[i].name);
        CHECK(t->vec_dot_type == ROWS[i].vd && t->runs == ROWS[i].runs && t->flags == ROWS[i].flags &&
                  t->fallback == ROWS[i].fallback,
              "%s: the C row's columns", ROWS[i].name);
        /* found by its name, in either case */
        char lower[16];
        size_t n = strlen(t->name);
        for (size_t k = 0; k <= n && k < sizeof lower; k++)
            lower[k] = (char)(t->name[k] >= 'A' && t->name[k] <= 'Z' ? t->name[k] + 32 : t->name[k]);
        CHECK(ggml_type_by_name(t->name) == (int)id && ggml_type_by_name(lower) == (int)id, "%s by name", t->name);
        CHECK(t->block_size == 1 || t->block_size == 32 || t->block_size == 256, "%s: block of %d", t->name,
              t->block_size);
        CHECK(ggml_row_size(id, 256 * 3) == (size_t)(256 * 3 / t->block_size) * (size_t)t->type_size &&
                  (t->block_size == 1 || ggml_row_size(id, t->block_size + 1) == 0),
              "%s: row sizes", t->name);
        const bool act = (t->flags & GGML_TF_ACT) != 0;
        CHECK(act == !t->to_float && act == !ggml_type_readable(id), "%s: a dequantizer iff a weight type", t->name);
        CHECK(act == !(t->runs & GGML_RUN_CPU), "%s: every weight type runs on the CPU (its truth)", t->name);
        CHECK(!act || !(t->flags & (GGML_TF_QUANTIZE | GGML_TF_IMATRIX)), "%s: activations are not made", t->name);
        /* integer activations: whole activation blocks per weight block */
        const uint32_t vd = t->vec_dot_type;
        CHECK(vd == GGML_F32 || (vd == GGML_Q8_0 && t->block_size == 32) || (vd == GGML_Q8_K && t->block_size == 256),
              "%s: multiplied with %s", t->name, ggml_type_get(vd)->name);
        /* a fallback has smaller blocks that divide the type's */
        if (t->fallback != GGML_F32) {
            const ggml_type_info *f = ggml_type_get(t->fallback);
            CHECK(f && f->block_size < t->block_size && t->block_size % f->block_size == 0 && !(f->flags & GGML_TF_ACT),
                  "%s: falls back to %s", t->name, f ? f->name : "?");
        }
        /* its interleaved layout holds it */
        if (t->x16) {
            const ggml_type_info *x = ggml_type_get(t->x16);
            CHECK(x && x->base == id && x16_type(id) == t->x16 && x16_base(t->x16) == id &&
                      x->block_size == t->block_size && x->type_size == t->type_size &&
                      x->vec_dot_type == t->vec_dot_type && !x->to_float,
                  "%s: its layout %s", t->name, x ? x->name : "?");
        }
        CHECK(t->base == 0 && x16_base(id) == 0, "%s: a file's type is no layout", t->name);
    }
    int rows = 0;
    for (uint32_t id = 0; id < GGML_NTYPES_ALL; id++) rows += ggml_type_get(id) != NULL;
    CHECK(rows == N_ROWS + 4, "%d rows: the table's %d and the four layouts", rows, N_ROWS);
    CHECK(ggml_type_by_name("Q4_K_X16") < 0 && ggml_type_by_name("nope") < 0 && ggml_type_by_name(NULL) < 0,
          "internal layouts and unknown names are not found");
    CHECK(!ggml_type_get(GGML_NTYPES_ALL) && !ggml_type_get(41) && !ggml_type_readable(GGML_Q4_K_X16),
          "unknown ids and layouts");
    CHECK(vec_dot_type(GGML_Q4_K_X16) == GGML_Q8_K && vec_dot_type(7777) == GGML_F32, "vec_dot_type");
    float z[32];
    memset(z, 0xff, sizeof z);
    uint8_t blk[64] = {0};
    dequantize_row(GGML_Q8_K + 100, blk, z, 32);
    int zeros = 0;
    for (int i = 0; i < 32; i++) zeros += z[i] == 0.0f;
    CHECK(zeros == 32, "an unknown type dequantizes to zeros");
}

/* The backends of this build: each one's bit is its rows', and the refusal names them. */
static void test_backend_bits(void) {
    for (uint32_t id = 0; id < GGML_NTYPES; id++) {
        const ggml_type_info *t = ggml_type_get(id);
        if (!t) continue;
        CHECK(backend_runs_type(&backend_cpu, id) == ((t->runs & GGML_RUN_CPU) != 0), "%s on the cpu backend", t->name);
        char who[96];
        backend_type_runners(id, who, sizeof who);
        if (t->runs & GGML_RUN_CPU) CHECK(!strncmp(who, "cpu", 3), "%s runs on: %s", t->name, who);
        else CHECK(!strcmp(who, "none in this build"), "%s runs on: %s", t->name, who);
    }
    CHECK(backend_cpu.types == GGML_RUN_CPU, "the CPU backend's bit");
    CHECK(!backend_runs_type(&backend_cpu, 7777), "an unknown type runs nowhere");
}

/* FNV-1a, 64 bits, of n bytes */
static uint64_t fnv1a64(const void *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ ((const uint8_t *)p)[i]) * 0x100000001b3ull;
    return h;
}

/* The importance-matrix types dequantize as llama.cpp does, bit for bit (tests/data/iq/README.md):
 * blocks of the llama-quantize fixture, random blocks and blocks whose grid indices run through
 * the whole grid; the first 8 blocks' floats compared one by one, all of them by their hash. */
static void test_iq_goldens(void) {
    static const struct {
        const char *name;
        uint32_t type;
    } IQ[] = {{"iq2_xxs", GGML_IQ2_XXS}, {"iq2_xs", GGML_IQ2_XS}, {"iq2_s", GGML_IQ2_S}, {"iq3_xxs", GGML_IQ3_XXS},
              {"iq3_s", GGML_IQ3_S},     {"iq1_s", GGML_IQ1_S},   {"iq1_m", GGML_IQ1_M}};
    char *sums = test_read_file(DATA("iq/dequant.fnv1a64.txt"), NULL);
    CHECK(sums != NULL, "the hashes");
    for (size_t i = 0; sums && i < sizeof IQ / sizeof *IQ; i++) {
        char path[128];
        size_t nb_bytes = 0, nf_bytes = 0;
        snprintf(path, sizeof path, DATA("iq/%s.blocks.bin"), IQ[i].name);
        uint8_t *blocks = test_read_file(path, &nb_bytes);
        snprintf(path, sizeof path, DATA("iq/%s.dequant.f32.bin"), IQ[i].name);
        float *want = test_read_file(path, &nf_bytes);
        const ggml_type_info *t = ggml_type_get(IQ[i].type);
        const size_t nb = t && blocks ? nb_bytes / (size_t)t->type_size : 0;
        CHECK(t && blocks && want && nb >= 8 && nb * (size_t)t->type_size == nb_bytes && nf_bytes == 8 * QK_K * 4,
              "%s: the goldens", IQ[i].name);
        float *got = nb >= 8 && want ? malloc(nb * QK_K * sizeof(float)) : NULL;
        if (got) {
            dequantize_row(IQ[i].type, blocks, got, (int64_t)(nb * QK_K));
            int bad = 0;
            for (size_t k = 0; k < 8 * QK_K; k++) bad += memcmp(&got[k], &want[k], 4) != 0;
            CHECK(bad == 0, "%s: %d of %d floats differ from llama.cpp's", IQ[i].name, bad, 8 * QK_K);
            char line[96];
            snprintf(line, sizeof line, "%s %zu %016llx\n", IQ[i].name, nb,
                     (unsigned long long)fnv1a64(got, nb * QK_K * sizeof(float)));
            CHECK(strstr(sums, line) != NULL, "%s: all %zu blocks: %s", IQ[i].name, nb, line);
        }
        free(got);
        free(blocks);
        free(want);
    }
    free(sums);
}

int main(void) {
    test_rows();
    test_iq_goldens();
    test_backend_bits();
    TEST_MAIN_END();
}
