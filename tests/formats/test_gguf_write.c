/* test_gguf_write.c — the streaming writer: write every value type, arrays, copied keys and
 * tensors of several types, read it back with gguf.h; abandoned / short writes leave no file. */
#include "formats/gguf.h"
#include "formats/gguf_write.h"
#include "formats/ggml_types.h"
#include "test.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

static bool exists(const char *p) { return access(p, F_OK) == 0; }

static void roundtrip(uint32_t alignment) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/lfm2c_test_gw_%d_%u.gguf", (int)getpid(), alignment);
    lfm2c_error err = {0};
    gguf_file *src = gguf_open(DATA("lfm2-tiny-dense-q8_0.gguf"), &err);
    CHECK(src != NULL, "open fixture: %s", err.msg);
    if (!src) return;

    gguf_writer *w = gguf_writer_new();
    CHECK(gguf_set_u8(w, "t.u8", 200), "u8");
    CHECK(gguf_set_i8(w, "t.i8", -100), "i8");
    CHECK(gguf_set_u16(w, "t.u16", 60000), "u16");
    CHECK(gguf_set_i16(w, "t.i16", -30000), "i16");
    CHECK(gguf_set_u32(w, "t.u32", 4000000000u), "u32");
    CHECK(gguf_set_i32(w, "t.i32", -2000000000), "i32");
    CHECK(gguf_set_f32(w, "t.f32", 1.5f), "f32");
    CHECK(gguf_set_bool(w, "t.bool", true), "bool");
    CHECK(gguf_set_u64(w, "t.u64", 1ull << 40), "u64");
    CHECK(gguf_set_i64(w, "t.i64", -(1ll << 40)), "i64");
    CHECK(gguf_set_f64(w, "t.f64", 0.125), "f64");
    CHECK(gguf_set_str(w, "t.str", "first"), "str");
    CHECK(gguf_set_str(w, "t.str", "héllo"), "str replace");
    CHECK(gguf_set_strn(w, "t.empty", "", 0), "empty str");
    int32_t ia[5] = {0, 0, 8, 0, -1};
    CHECK(gguf_set_arr(w, "t.arr_i32", GGUF_I32, ia, 5), "arr");
    float fa[2] = {0.5f, -2.0f};
    CHECK(gguf_set_arr(w, "t.arr_f32", GGUF_F32, fa, 2), "arr f32");
    CHECK(gguf_set_arr(w, "t.arr_empty", GGUF_U8, NULL, 0), "empty arr");
    const char *sa[3] = {"a", "", "Ġb c"};
    CHECK(gguf_set_arr_str(w, "t.arr_str", sa, 3), "arr str");
    CHECK(!gguf_set_arr(w, "t.bad", GGUF_STR, sa, 1), "string elements need gguf_set_arr_str");
    for (uint64_t i = 0; i < src->n_kv; i++) CHECK(gguf_set_kv(w, &src->kv[i]), "copy %s", src->kv[i].key);
    CHECK(gguf_set_str(w, "t.gone", "x") && gguf_remove_key(w, "t.gone"), "remove");
    CHECK(!gguf_remove_key(w, "t.gone"), "remove twice");
    if (alignment != 32) CHECK(gguf_set_u32(w, "general.alignment", alignment), "alignment");

    /* tensors: F32 [3,2], Q8_0 [64,3], Q4_K [256,2,2], F16 [5] */
    int64_t ne_a[2] = {3, 2}, ne_b[2] = {64, 3}, ne_c[3] = {256, 2, 2}, ne_d[1] = {5};
    CHECK(gguf_add_tensor(w, "a", GGML_F32, 2, ne_a, &err), "%s", err.msg);
    CHECK(gguf_add_tensor(w, "b", GGML_Q8_0, 2, ne_b, &err), "%s", err.msg);
    CHECK(gguf_add_tensor(w, "c", GGML_Q4_K, 3, ne_c, &err), "%s", err.msg);
    CHECK(gguf_add_tensor(w, "d", GGML_F16, 1, ne_d, &err), "%s", err.msg);
    CHECK(!gguf_add_tensor(w, "a", GGML_F32, 2, ne_a, &err), "duplicate name rejected");
    int64_t bad_ne[1] = {33};
    CHECK(!gguf_add_tensor(w, "e", GGML_Q8_0, 1, bad_ne, &err), "ne0 not a block multiple rejected");
    CHECK(gguf_writer_n_tensors(w) == 4, "4 tensors");
    uint64_t sizes[4] = {24, 6 * 34, 4 * 144, 10};
    for (int i = 0; i < 4; i++) CHECK(gguf_writer_tensor_nbytes(w, (uint64_t)i) == sizes[i], "nbytes %d", i);
    uint64_t expect_size = gguf_writer_file_size(w);

    CHECK(gguf_writer_open(w, path, &err), "%s", err.msg);
    char tmp[80];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(exists(tmp) && !exists(path), "writes to PATH.tmp first");
    uint8_t buf[1024];
    uint64_t total = 0;
    for (int i = 0; i < 4; i++) total += sizes[i];
    for (uint64_t i = 0; i < total; i++) buf[i] = (uint8_t)(i * 7 + 3);
    /* odd chunking across tensor boundaries */
    CHECK(gguf_write_data(w, buf, 5, &err), "%s", err.msg);
    CHECK(gguf_write_data(w, buf + 5, 100, &err), "%s", err.msg);
    CHECK(gguf_writer_cur_tensor(w) == 1, "in tensor b");
    CHECK(gguf_write_data(w, buf + 105, total - 105, &err), "%s", err.msg);
    CHECK(!gguf_write_data(w, buf, 1, &err), "extra data rejected");
    CHECK(gguf_writer_finish(w, &err), "%s", err.msg);
    gguf_writer_free(w);
    CHECK(exists(path) && !exists(tmp), "renamed");

    gguf_file *g = gguf_open(path, &err);
    CHECK(g != NULL, "reopen: %s", err.msg);
    if (g) {
        CHECK(g->size == expect_size, "file size %zu vs %llu", g->size, (unsigned long long)expect_size);
        CHECK(g->alignment == alignment, "alignment %llu", (unsigned long long)g->alignment);
        int64_t v;
        double d;
        bool b;
        CHECK(gguf_get_int(g, "t.u8", &v) && v == 200, "u8");
        CHECK(gguf_get_int(g, "t.i8", &v) && v == -100, "i8");
        CHECK(gguf_get_int(g, "t.u16", &v) && v == 60000, "u16");
        CHECK(gguf_get_int(g, "t.i16", &v) && v == -30000, "i16");
        CHECK(gguf_get_int(g, "t.u32", &v) && v == 4000000000ll, "u32");
        CHECK(gguf_get_int(g, "t.i32", &v) && v == -2000000000, "i32");
        CHECK(gguf_get_int(g, "t.u64", &v) && v == (1ll << 40), "u64");
        CHECK(gguf_get_int(g, "t.i64", &v) && v == -(1ll << 40), "i64");
        CHECK(gguf_get_float(g, "t.f32", &d) && d == 1.5, "f32");
        CHECK(gguf_get_float(g, "t.f64", &d) && d == 0.125, "f64");
        CHECK(gguf_get_bool(g, "t.bool", &b) && b, "bool");
        char *s = gguf_get_string(g, "t.str");
        CHECK(s && !strcmp(s, "héllo"), "str %s", s ? s : "(null)");
        free(s);
        s = gguf_get_string(g, "t.empty");
        CHECK(s && !*s, "empty string");
        free(s);
        CHECK(gguf_find(g, "t.gone") == NULL, "removed key absent");
        const gguf_kv *kv = gguf_find(g, "t.arr_i32");
        CHECK(kv && kv->type == GGUF_ARR && kv->arr_type == GGUF_I32 && kv->n == 5, "arr i32");
        if (kv) CHECK(gguf_arr_int(kv, 2, &v) && v == 8 && gguf_arr_int(kv, 4, &v) && v == -1, "arr values");
        kv = gguf_find(g, "t.arr_f32");
        CHECK(kv && kv->n == 2 && gguf_arr_float(kv, 1, &d) && d == -2.0, "arr f32");
        kv = gguf_find(g, "t.arr_empty");
        CHECK(kv && kv->n == 0, "empty arr");
        kv = gguf_find(g, "t.arr_str");
        CHECK(kv && kv->arr_type == GGUF_STR && kv->n == 3, "arr str");
        if (kv && kv->n == 3)
            CHECK(kv->strs[1].n == 0 && kv->strs[2].n == strlen(sa[2]) && !memcmp(kv->strs[2].p, sa[2], kv->strs[2].n),
                  "arr str values");
        /* every copied key equal to the source, byte for byte */
        for (uint64_t i = 0; i < src->n_kv; i++) {
            const gguf_kv *a = &src->kv[i], *c = gguf_find(g, a->key);
            if (!strcmp(a->key, "general.alignment")) continue;
            bool same = c && c->type == a->type && c->n == a->n && c->arr_type == a->arr_type;
            if (same && (a->type == GGUF_STR || (a->type == GGUF_ARR && a->arr_type == GGUF_STR))) {
                for (uint64_t j = 0; j < a->n && same; j++)
                    same = a->strs[j].n == c->strs[j].n && !memcmp(a->strs[j].p, c->strs[j].p, a->strs[j].n);
            } else if (same) {
                size_t es = gguf_vtype_size(a->type == GGUF_ARR ? a->arr_type : a->type);
                same = !memcmp(a->data, c->data, es * a->n);
            }
            CHECK(same, "copied key %s", a->key);
        }
        const char *names[4] = {"a", "b", "c", "d"};
        uint32_t types[4] = {GGML_F32, GGML_Q8_0, GGML_Q4_K, GGML_F16};
        uint64_t off = 0;
        for (int i = 0; i < 4; i++) {
            const gguf_tensor *t = gguf_find_tensor(g, names[i]);
            CHECK(t && t->type == types[i] && t->nbytes == sizes[i], "tensor %s", names[i]);
            if (t) {
                CHECK(t->offset % alignment == 0, "offset aligned");
                CHECK(!memcmp(t->data, buf + off, sizes[i]), "data of %s", names[i]);
            }
            off += sizes[i];
        }
        const gguf_tensor *t = gguf_find_tensor(g, "c");
        CHECK(t && t->n_dims == 3 && t->ne[0] == 256 && t->ne[1] == 2 && t->ne[2] == 2, "shape of c");
        gguf_close(g);
    }
    unlink(path);
    gguf_close(src);
}

/* A writer freed before finishing, or finishing short of data, leaves nothing behind. */
static void abandoned(void) {
    char path[64], tmp[80];
    snprintf(path, sizeof path, "/tmp/lfm2c_test_gw_%d_ab.gguf", (int)getpid());
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    lfm2c_error err = {0};
    int64_t ne[1] = {64};
    for (int mode = 0; mode < 2; mode++) {
        gguf_writer *w = gguf_writer_new();
        gguf_set_str(w, "general.architecture", "lfm2");
        CHECK(gguf_add_tensor(w, "x", GGML_F32, 1, ne, &err), "%s", err.msg);
        CHECK(gguf_writer_open(w, path, &err), "%s", err.msg);
        float data[10] = {0};
        CHECK(gguf_write_data(w, data, sizeof data, &err), "%s", err.msg);
        if (mode == 1) CHECK(!gguf_writer_finish(w, &err) && strstr(err.msg, "not written"), "short: %s", err.msg);
        gguf_writer_free(w);
        CHECK(!exists(path) && !exists(tmp), "no file left (mode %d)", mode);
    }
    gguf_writer *w = gguf_writer_new();
    CHECK(!gguf_writer_open(w, "/nonexistent-dir/x.gguf", &err) && err.code == LFM2C_EIO, "bad dir: %s", err.msg);
    gguf_writer_free(w);
}

int main(void) {
    roundtrip(32);
    roundtrip(64);
    abandoned();
    TEST_MAIN_END();
}
