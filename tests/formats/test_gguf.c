/* test_gguf.c — src/formats/gguf.c's split models: a fixture written as 3 parts
 * (NAME-0000K-of-00003.gguf with split.no / split.count / split.tensors.count, as gguf-split
 * writes them) loads as one model whose logits are bitwise those of the single file; a part
 * other than the first, a missing part, a wrong split.no and a tensor count that does not add up
 * are refused with a clear error; a file of mixed types (the IQ fixture) split in two loads with
 * the single file's logits. The huge-page copy holds the file's bytes with its tensors
 * moved onto 64-byte lines (gguf_copy_shift). */
#include "formats/gguf.h"
#include "formats/gguf_write.h"
#include "test.h"
#include "base/os.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* writes tensors [t0, t1) of g (with all metadata when no == 0) as part no of count */
static bool write_part(const gguf_file *g, const char *path, int no, int count, uint64_t t0, uint64_t t1,
                       int64_t tensors_count, int bad_no) {
    lfm2c_error err = {0};
    gguf_writer *w = gguf_writer_new();
    bool ok = w != NULL;
    if (ok && no == 0)
        for (uint64_t i = 0; i < g->n_kv; i++) ok = ok && gguf_set_kv(w, &g->kv[i]);
    ok = ok && gguf_set_u16(w, "split.no", (uint16_t)(bad_no >= 0 ? bad_no : no)) &&
         gguf_set_u16(w, "split.count", (uint16_t)count) &&
         gguf_set_i32(w, "split.tensors.count", (int32_t)tensors_count);
    for (uint64_t i = t0; ok && i < t1; i++)
        ok = gguf_add_tensor(w, g->tensors[i].name, g->tensors[i].type, g->tensors[i].n_dims, g->tensors[i].ne, &err);
    ok = ok && gguf_writer_open(w, path, &err);
    for (uint64_t i = t0; ok && i < t1; i++) ok = gguf_write_data(w, g->tensors[i].data, g->tensors[i].nbytes, &err);
    ok = ok && gguf_writer_finish(w, &err);
    if (!ok) fprintf(stderr, "write %s: %s\n", path, err.msg);
    gguf_writer_free(w);
    return ok;
}

static float *logits_of(const char *path, int *n_vocab, lfm2c_error *err) {
    lfm2c_model_params p = lfm2c_model_default_params();
    p.n_threads = 1;
    lfm2c_model *m = lfm2c_model_open(path, &p, err);
    if (!m) return NULL;
    lfm2c_session *s = lfm2c_session_new(m, 32, err);
    float *out = NULL;
    int32_t toks[4] = {1, 498, 582, 17};
    if (s && lfm2c_session_decode(s, toks, 4, LFM2C_LOGITS_LAST, err) == 0) {
        *n_vocab = lfm2c_vocab_size(m);
        out = malloc(sizeof(float) * (size_t)*n_vocab);
        if (out) memcpy(out, lfm2c_session_logits(s, 0), sizeof(float) * (size_t)*n_vocab);
    }
    lfm2c_session_free(s);
    lfm2c_model_free(m);
    return out;
}

/* the automatic huge-page copy rule: THP offered (always / madvise), 1 GiB to spare */
static void test_huge_copy_rule(void) {
    const uint64_t G = 1ull << 30;
    CHECK(gguf_huge_copy_wanted(14 * G, 16 * G, "always [madvise] never\n"), "madvise, 2 GiB spare: copy");
    CHECK(gguf_huge_copy_wanted(14 * G, 15 * G, "[always] madvise never\n"), "always, exactly 1 GiB spare: copy");
    CHECK(!gguf_huge_copy_wanted(14 * G, 15 * G - 1, "always [madvise] never\n"), "less than 1 GiB spare: map");
    CHECK(!gguf_huge_copy_wanted(1 * G, 64 * G, "always madvise [never]\n"), "THP never: map");
    CHECK(!gguf_huge_copy_wanted(1 * G, 64 * G, ""), "THP unknown: map");
    CHECK(!gguf_huge_copy_wanted(1 * G, 64 * G, NULL), "no THP file: map");
    CHECK(!gguf_huge_copy_wanted(1 * G, -1, "always [madvise] never"), "MemAvailable unknown: map");
}

/* the copy puts the file where most tensor bytes start on a 64-byte line, and holds the same
 * bytes as the mapped file */
static void test_copy_alignment(void) {
    gguf_tensor ts[3] = {{.offset = 0, .nbytes = 100}, {.offset = 32, .nbytes = 1000}, {.offset = 96, .nbytes = 10}};
    gguf_file f = {.n_tensors = 3, .tensors = ts, .data_offset = 64 * 7 + 16};
    CHECK(gguf_copy_shift(&f) == 16, "shift %zu: the 1010 bytes at 48 mod 64 go to 0", gguf_copy_shift(&f));
    f.data_offset = 64 * 7 + 32;
    CHECK(gguf_copy_shift(&f) == 0, "shift %zu: the 1010 bytes at 0 mod 64 stay", gguf_copy_shift(&f));
    lfm2c_error err = {0};
    const char *path = DATA("lfm2-kq-moe-q4_k_m.gguf");
    gguf_file *m = gguf_open(path, &err), *c = gguf_open_ex(path, GGUF_OPEN_HUGE_COPY, &err);
    CHECK(m && c && c->copied && !m->copied, "open mapped and copied: %s", err.msg);
    if (m && c) {
        double best[64] = {0}, aligned = 0, top = 0;
        CHECK(m->n_tensors == c->n_tensors, "same tensor count");
        for (uint64_t i = 0; i < m->n_tensors && i < c->n_tensors; i++) {
            const gguf_tensor *a = &m->tensors[i], *b = &c->tensors[i];
            CHECK(a->nbytes == b->nbytes && !memcmp(a->data, b->data, a->nbytes), "tensor %s: same bytes", a->name);
            best[(m->data_offset + a->offset) % 64] += (double)a->nbytes;
            if ((uintptr_t)b->data % 64 == 0) aligned += (double)b->nbytes;
        }
        for (int r = 0; r < 64; r++) top = best[r] > top ? best[r] : top;
        CHECK(aligned == top && top > 0, "%.0f of the most aligned %.0f tensor bytes start on a 64-byte line", aligned,
              top);
        CHECK(gguf_set_writable(c, true) == 0 && gguf_set_writable(c, false) == 0,
              "the copy can be made writable and back");
    }
    /* read by several threads (1 MB chunks for a 7 MB file): the same bytes, the same place */
    gguf_file *c4 = gguf_open_ex(path, GGUF_OPEN_HUGE_COPY | GGUF_OPEN_READERS(4), &err);
    CHECK(m && c && c4 && c4->copied && c4->size == m->size && c4->map - c4->copy_base == c->map - c->copy_base,
          "copied by 4 readers: %s", err.msg);
    if (m && c4) CHECK(!memcmp(m->map, c4->map, m->size), "4 readers copy the file's bytes");
    gguf_close(c4);
    gguf_close(m);
    gguf_close(c);
}

/* A file of mixed types (the importance-matrix fixture: IQ1_S .. IQ3_S, Q4_K and F32 tensors)
 * split in 2 parts loads as one model with the single file's logits bit for bit. */
static void test_split_mixed(void) {
    lfm2c_error err = {0};
    const char *src = DATA("iq/lfm2-iq-dense.gguf");
    gguf_file *g = gguf_open(src, &err);
    CHECK(g != NULL, "%s: %s", src, err.msg);
    if (!g) return;
    char dir[] = "/tmp/lfm2c-split-iq-XXXXXX", p1[256], p2[256];
    CHECK(os_mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(p1, sizeof p1, "%s/m-00001-of-00002.gguf", dir);
    snprintf(p2, sizeof p2, "%s/m-00002-of-00002.gguf", dir);
    const uint64_t n = g->n_tensors;
    CHECK(write_part(g, p1, 0, 2, 0, n / 2, (int64_t)n, -1) && write_part(g, p2, 1, 2, n / 2, n, (int64_t)n, -1),
          "writing the parts");
    int nv1 = 0, nv2 = 0;
    float *l1 = logits_of(src, &nv1, &err), *l2 = logits_of(p1, &nv2, &err);
    CHECK(l1 && l2 && nv1 == nv2 && !memcmp(l1, l2, sizeof(float) * (size_t)nv1),
          "the mixed file's split logits differ from the single file's: %s", err.msg);
    free(l1);
    free(l2);
    unlink(p1);
    unlink(p2);
    rmdir(dir);
    gguf_close(g);
}

int main(void) {
    test_huge_copy_rule();
    test_copy_alignment();
    test_split_mixed();
    lfm2c_error err = {0};
    const char *src = DATA("lfm2-tiny-dense-f32.gguf");
    gguf_file *g = gguf_open(src, &err);
    CHECK(g != NULL, "%s", err.msg);
    if (!g) TEST_MAIN_END();
    CHECK(g->n_parts == 0, "a single file has no parts");
    char dir[] = "/tmp/lfm2c-split-XXXXXX";
    CHECK(os_mkdtemp(dir) != NULL, "mkdtemp");
    char p1[256], p2[256], p3[256];
    snprintf(p1, sizeof p1, "%s/m-00001-of-00003.gguf", dir);
    snprintf(p2, sizeof p2, "%s/m-00002-of-00003.gguf", dir);
    snprintf(p3, sizeof p3, "%s/m-00003-of-00003.gguf", dir);
    uint64_t n = g->n_tensors, a = n / 3, b = 2 * n / 3;
    CHECK(write_part(g, p1, 0, 3, 0, a, (int64_t)n, -1) && write_part(g, p2, 1, 3, a, b, (int64_t)n, -1) &&
              write_part(g, p3, 2, 3, b, n, (int64_t)n, -1),
          "writing the parts");

    gguf_file *s = gguf_open(p1, &err);
    CHECK(s != NULL, "split open: %s", err.msg);
    if (s) {
        CHECK(s->n_tensors == n && s->n_parts == 2, "%llu tensors, %u parts", (unsigned long long)s->n_tensors,
              s->n_parts);
        for (uint64_t i = 0; i < n; i++) {
            const gguf_tensor *t = gguf_find_tensor(s, g->tensors[i].name);
            CHECK(t && t->nbytes == g->tensors[i].nbytes && !memcmp(t->data, g->tensors[i].data, t->nbytes),
                  "tensor %s", g->tensors[i].name);
        }
        gguf_close(s);
    }
    int nv1 = 0, nv2 = 0;
    float *l1 = logits_of(src, &nv1, &err), *l2 = logits_of(p1, &nv2, &err);
    CHECK(l1 && l2 && nv1 == nv2 && !memcmp(l1, l2, sizeof(float) * (size_t)nv1),
          "split logits differ from the single file's: %s", err.msg);
    free(l1);
    free(l2);

    err.msg[0] = 0;
    CHECK(gguf_open(p2, &err) == NULL && strstr(err.msg, "part 2"), "opening part 2: '%s'", err.msg);
    /* a tensor count that does not add up */
    CHECK(write_part(g, p1, 0, 3, 0, a, (int64_t)n + 1, -1), "rewrite part 1");
    CHECK(gguf_open(p1, &err) == NULL && strstr(err.msg, "split.tensors.count"), "bad tensor count: '%s'", err.msg);
    CHECK(write_part(g, p1, 0, 3, 0, a, (int64_t)n, -1), "rewrite part 1");
    /* a part with the wrong split.no */
    CHECK(write_part(g, p3, 2, 3, b, n, (int64_t)n, 1), "rewrite part 3");
    CHECK(gguf_open(p1, &err) == NULL && strstr(err.msg, "split.no"), "wrong split.no: '%s'", err.msg);
    /* a missing part */
    unlink(p3);
    CHECK(gguf_open(p1, &err) == NULL && strstr(err.msg, "00003-of-00003"), "missing part: '%s'", err.msg);
    /* a duplicate tensor across parts */
    CHECK(write_part(g, p3, 2, 3, b - 1, n, (int64_t)n + 1, -1), "part 3 with a duplicate");
    CHECK(write_part(g, p1, 0, 3, 0, a, (int64_t)n + 1, -1), "rewrite part 1");
    CHECK(gguf_open(p1, &err) == NULL && strstr(err.msg, "two parts"), "duplicate tensor: '%s'", err.msg);
    unlink(p1);
    unlink(p2);
    unlink(p3);
    rmdir(dir);
    gguf_close(g);
    TEST_MAIN_END();
}
