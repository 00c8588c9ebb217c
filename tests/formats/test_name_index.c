/* test_name_index.c — the name index (src/formats/name_index.c) and the readers that use it: lookups and
 * duplicates on a small table, then files with hundreds of thousands of names (a GGUF of 300,000
 * tensors, a safetensors header of 100,000 tensors, an index.json of 100,000 entries), which took
 * minutes with the old quadratic checks; each must be read (or refused for its one duplicate) in
 * a bounded time — a complexity guard with a wide margin, not a speed measurement. */
#include "test.h"
#include "formats/gguf.h"
#include "formats/name_index.h"
#include "formats/safetensors.h"
#include "base/os.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *names_at(const void *owner, uint32_t i) { return ((const char *const *)owner)[i]; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void test_small(void) {
    const char *names[] = {"a", "b", "c", "a", "", "bb"};
    name_index x = {0};
    uint32_t dup = 99;
    CHECK(name_index_add(&x, 0, names_at, names, NULL) == 0, "add a");
    CHECK(name_index_add(&x, 1, names_at, names, NULL) == 0, "add b");
    CHECK(name_index_add(&x, 2, names_at, names, NULL) == 0, "add c");
    CHECK(name_index_add(&x, 3, names_at, names, &dup) == 1 && dup == 0, "second a is a duplicate of 0 (%u)", dup);
    CHECK(name_index_add(&x, 4, names_at, names, NULL) == 0 && name_index_add(&x, 5, names_at, names, NULL) == 0,
          "add more");
    CHECK(name_index_find(&x, "b", names_at, names) == 1 && name_index_find(&x, "bb", names_at, names) == 5, "find");
    CHECK(name_index_find(&x, "", names_at, names) == 4 && name_index_find(&x, "z", names_at, names) == -1,
          "find edge");
    name_index_free(&x);
    CHECK(name_index_find(&x, "a", names_at, names) == -1, "empty index");
}

static void put_u32(FILE *f, uint32_t v) { fwrite(&v, 4, 1, f); }
static void put_u64(FILE *f, uint64_t v) { fwrite(&v, 8, 1, f); }

/* A GGUF v3 of n one-element F32 tensors named t0000000.. (the last repeats the first if dup),
 * all reading the same 32 data bytes. */
static void write_gguf(const char *path, uint32_t n, int dup) {
    FILE *f = fopen(path, "wb");
    fwrite("GGUF", 1, 4, f);
    put_u32(f, 3);
    put_u64(f, n);
    put_u64(f, 0);
    long pos = 24;
    for (uint32_t i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "t%07u", dup && i == n - 1 ? 0u : i);
        put_u64(f, strlen(name));
        fwrite(name, 1, strlen(name), f);
        put_u32(f, 1);
        put_u64(f, 1);
        put_u32(f, 0); /* F32 */
        put_u64(f, 0);
        pos += 8 + (long)strlen(name) + 4 + 8 + 4 + 8;
    }
    for (long pad = (32 - pos % 32) % 32 + 32; pad > 0; pad--) fputc(0, f);
    fclose(f);
}

static void test_big_gguf(void) {
    char path[] = "/tmp/lfm2c-names-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    for (int dup = 0; dup < 2; dup++) {
        write_gguf(path, 300000, dup);
        lfm2c_error err = {0};
        double t0 = now();
        gguf_file *g = gguf_open(path, &err);
        double dt = now() - t0;
        if (!dup) {
            CHECK(g && g->n_tensors == 300000, "300,000-tensor GGUF opens: %s", err.msg);
            CHECK(g && gguf_find_tensor(g, "t0299999") == &g->tensors[299999] && !gguf_find_tensor(g, "t0300000"),
                  "lookups");
        } else {
            CHECK(!g && strstr(err.msg, "duplicate tensor name 't0000000'"), "the one duplicate is found: %s", err.msg);
        }
        CHECK(dt < 30, "300,000 tensors read in %.2f s (minutes when quadratic)", dt);
        gguf_close(g);
    }
    unlink(path);
}

/* FNV-1a (the index's hash before it was keyed) over the low `bits` bits. */
static uint32_t fnv_low(uint64_t h, const char *s, int bits) {
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (uint32_t)(h & ((1ull << bits) - 1));
}

/* n printable names "cNNNNNNxy" that all fall in one slot of a 2^bits table under FNV-1a: the low
 * bits of FNV-1a depend only on the low bits, so x is searched and y solves the last step. */
static char **colliding_names(int n, int bits) {
    char **names = calloc((size_t)n, sizeof *names);
    const uint64_t P = 1099511628211ull, mask = (1ull << bits) - 1;
    uint64_t pinv = 1; /* P^-1 mod 2^64 by Newton's iteration */
    for (int i = 0; i < 6; i++) pinv *= 2 - P * pinv;
    const uint64_t u = (0x5a5a5ull * pinv) & mask; /* the state before the last step's multiply */
    int got = 0;
    for (uint32_t k = 0; got < n; k++) {
        char name[12];
        snprintf(name, sizeof name, "c%07u", k % 10000000u);
        uint64_t h = 1469598103934665603ull;
        for (const char *c = name; *c; c++) h = (h ^ (unsigned char)*c) * P;
        for (int x = 0x21; x < 0x7f && got < n; x++) {
            uint64_t s1 = (h ^ (uint64_t)x) * P;
            if (((s1 ^ u) & mask) >> 8) continue; /* y can only fix the low 8 bits */
            int y = (int)((s1 ^ u) & 0xff);
            if (y < 0x21 || y > 0x7e || y == '"' || y == '\\') continue;
            names[got] = malloc(24);
            snprintf(names[got], 24, "%s%c%c", name, x, y);
            got++;
        }
    }
    return names;
}

/* A GGUF of tensors named by `names` (one F32 element each, the same data). */
static void write_gguf_names(const char *path, char **names, uint32_t n) {
    FILE *f = fopen(path, "wb");
    fwrite("GGUF", 1, 4, f);
    put_u32(f, 3);
    put_u64(f, n);
    put_u64(f, 0);
    long pos = 24;
    for (uint32_t i = 0; i < n; i++) {
        put_u64(f, strlen(names[i]));
        fwrite(names[i], 1, strlen(names[i]), f);
        put_u32(f, 1);
        put_u64(f, 1);
        put_u32(f, 0);
        put_u64(f, 0);
        pos += 8 + (long)strlen(names[i]) + 4 + 8 + 4 + 8;
    }
    for (long pad = (32 - pos % 32) % 32 + 32; pad > 0; pad--) fputc(0, f);
    fclose(f);
}

/* Names chosen to collide under the old unkeyed hash: with a keyed one they spread, and the file
 * opens as fast as any other (the old index took O(n^2) string compares: ~2e9 here). */
static void test_colliding_names(void) {
    enum { N = 60000, BITS = 17 }; /* 60,000 names: a table of 2^17 slots */
    char **names = colliding_names(N, BITS);
    uint32_t first = fnv_low(1469598103934665603ull, names[0], BITS);
    int same = 0;
    for (int i = 0; i < N; i++) same += fnv_low(1469598103934665603ull, names[i], BITS) == first;
    CHECK(same == N, "the names collide under the old hash (%d of %d)", same, N);
    char path[] = "/tmp/lfm2c-collide-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    write_gguf_names(path, names, N);
    lfm2c_error err = {0};
    double t0 = now();
    gguf_file *g = gguf_open(path, &err);
    double dt = now() - t0;
    CHECK(g && g->n_tensors == N && gguf_find_tensor(g, names[N - 1]) == &g->tensors[N - 1], "colliding names open: %s",
          err.msg);
    CHECK(dt < 2, "60,000 names colliding under the old hash read in %.2f s", dt);
    gguf_close(g);
    unlink(path);
    /* the index alone, with the same names */
    name_index x = {0};
    t0 = now();
    for (uint32_t i = 0; i < N; i++) name_index_add(&x, i, names_at, names, NULL);
    dt = now() - t0;
    CHECK(x.n == N && name_index_find(&x, names[12345], names_at, names) == 12345, "index of colliding names");
    CHECK(dt < 1, "60,000 colliding names indexed in %.2f s", dt);
    name_index_free(&x);
    for (int i = 0; i < N; i++) free(names[i]);
    free(names);
}

/* A safetensors file of n one-element F32 tensors (the last repeats the first name if dup). */
static void write_st(const char *path, int n, int dup) {
    FILE *f = fopen(path, "wb");
    size_t cap = (size_t)n * 80 + 64, len = 0;
    char *h = malloc(cap);
    len += (size_t)snprintf(h + len, cap - len, "{");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(h + len, cap - len,
                                "%s\"w%06d\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[%d,%d]}", i ? "," : "",
                                dup && i == n - 1 ? 0 : i, 4 * i, 4 * i + 4);
    len += (size_t)snprintf(h + len, cap - len, "}");
    uint64_t hl = len;
    fwrite(&hl, 8, 1, f);
    fwrite(h, 1, len, f);
    for (int i = 0; i < n; i++) put_u32(f, 0);
    fclose(f);
    free(h);
}

static void test_big_safetensors(void) {
    char dir[] = "/tmp/lfm2c-stnames-XXXXXX";
    CHECK(os_mkdtemp(dir) != NULL, "temp dir");
    char file[256], index[256];
    snprintf(file, sizeof file, "%s/model-00001-of-00001.safetensors", dir);
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    write_st(file, 100000, 0);
    lfm2c_error err = {0};
    double t0 = now();
    st_model *m = st_open_file(file, &err);
    CHECK(m && m->n_tensors == 100000 && st_find(m, "w099999") == &m->tensors[99999], "100,000-tensor header: %s",
          err.msg);
    st_close(m);
    /* an index of 100,000 entries over that shard */
    FILE *f = fopen(index, "wb");
    fprintf(f, "{\"weight_map\":{");
    for (int i = 0; i < 100000; i++) fprintf(f, "%s\"w%06d\":\"model-00001-of-00001.safetensors\"", i ? "," : "", i);
    fprintf(f, "}}");
    fclose(f);
    m = st_open_dir(dir, &err);
    CHECK(m && m->n_tensors == 100000, "100,000-entry index: %s", err.msg);
    st_close(m);
    unlink(index);
    write_st(file, 100000, 1);
    m = st_open_file(file, &err);
    CHECK(!m && (strstr(err.msg, "appears twice") || strstr(err.msg, "duplicate")),
          "duplicate in a 100,000-tensor header: %s", err.msg);
    double dt = now() - t0;
    CHECK(dt < 60, "safetensors with 100,000 names read in %.2f s (quadratic before)", dt);
    unlink(file);
    rmdir(dir);
}

int main(void) {
    test_small();
    test_colliding_names();
    test_big_gguf();
    test_big_safetensors();
    TEST_MAIN_END();
}
