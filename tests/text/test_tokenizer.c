/* test_tokenizer.c — the LFM2 tokenizer against the reference goldens, an independent Python
 * implementation's ids for our own texts (scripts/gen_tokenizer_tests.py), the pre-token split
 * cases of a real LFM2.5 tokenizer, round trips, streaming decode, and malformed vocabularies. */
#include "test.h"
#include "formats/gguf.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

#include <jansson.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

static lfm2c_tokenizer *open_tok(const char *path, gguf_file **g) {
    lfm2c_error err = {0};
    *g = gguf_open(path, &err);
    if (!*g) {
        fprintf(stderr, "%s: %s\n", path, err.msg);
        return NULL;
    }
    lfm2c_tokenizer *t = tokenizer_new(*g, &err);
    if (!t) fprintf(stderr, "%s: %s\n", path, err.msg);
    return t;
}

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }
static size_t unhex(const char *h, char *out) {
    size_t n = strlen(h) / 2;
    for (size_t i = 0; i < n; i++) out[i] = (char)(hexval(h[2 * i]) << 4 | hexval(h[2 * i + 1]));
    return n;
}

/* Input bytes of a case ("text" or "text_hex"); caller frees. */
static char *case_text(json_t *c, size_t *len) {
    json_t *hx = json_object_get(c, "text_hex");
    if (hx) {
        const char *h = json_string_value(hx);
        char *b = malloc(strlen(h) / 2 + 1);
        *len = unhex(h, b);
        return b;
    }
    json_t *t = json_object_get(c, "text");
    *len = json_string_length(t);
    char *b = malloc(*len + 1);
    memcpy(b, json_string_value(t), *len);
    return b;
}

static bool ids_equal(const int32_t *ids, int n, json_t *want) {
    if (!json_is_array(want) || (int)json_array_size(want) != n) return false;
    for (int i = 0; i < n; i++)
        if (ids[i] != json_integer_value(json_array_get(want, (size_t)i))) return false;
    return true;
}

/* Concatenated bytes of ids[from..n) (special tokens as text); caller frees. */
static char *decode_all(const lfm2c_tokenizer *t, const int32_t *ids, int from, int n, size_t *len) {
    size_t cap = 64, o = 0;
    char *out = malloc(cap);
    for (int i = from; i < n; i++) {
        int k = tokenizer_token_to_bytes(t, ids[i], true, NULL, 0);
        while (o + (size_t)k + 1 > cap) out = realloc(out, cap *= 2);
        tokenizer_token_to_bytes(t, ids[i], true, out + o, k);
        o += (size_t)k;
    }
    *len = o;
    return out;
}

/* The reference's view of the input: lenient decoding re-encoded (invalid bytes -> U+FFFD). */
static char *lenient_normalize(const char *s, size_t n, size_t *len) {
    char *out = malloc(3 * n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int l;
        uint32_t cp = utf8_decode_lenient((const uint8_t *)s + i, n - i, &l);
        o += (size_t)utf8_encode(cp, out + o);
        i += (size_t)l;
    }
    *len = o;
    return out;
}

static bool valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        int r = utf8_valid_prefix((const uint8_t *)s + i, n - i);
        if (r <= 0) return false;
        i += (size_t)r;
    }
    return true;
}

/* Runs a file of cases {text|text_hex, add_bos, parse_special, ids}. */
static void run_cases(const lfm2c_tokenizer *t, json_t *cases, const char *what) {
    size_t i;
    json_t *c;
    int ok = 0;
    json_array_foreach(cases, i, c) {
        size_t len;
        char *text = case_text(c, &len);
        bool bos = json_is_true(json_object_get(c, "add_bos"));
        bool sp = json_is_true(json_object_get(c, "parse_special"));
        const char *id = json_string_value(json_object_get(c, "id"));
        int n;
        lfm2c_error err = {0};
        int32_t *ids = tokenizer_encode(t, text, len, bos, sp, &n, &err);
        CHECK(ids != NULL, "%s %s: %s", what, id, err.msg);
        if (!ids) {
            free(text);
            continue;
        }
        bool eq = ids_equal(ids, n, json_object_get(c, "ids"));
        CHECK(eq, "%s %s: ids differ (got %d ids)", what, id, n);
        ok += eq;
        /* decoding gives back the input as the reference saw it */
        size_t dl, nl;
        char *dec = decode_all(t, ids, bos ? 1 : 0, n, &dl);
        char *norm;
        json_t *dh = json_object_get(c, "decoded_hex");
        if (dh) {
            norm = malloc(strlen(json_string_value(dh)) / 2 + 1);
            nl = unhex(json_string_value(dh), norm);
        } else {
            norm = lenient_normalize(text, len, &nl);
        }
        CHECK(dl == nl && memcmp(dec, norm, dl) == 0, "%s %s: decode differs from the input", what, id);
        free(dec);
        free(norm);
        free(ids);
        free(text);
    }
    printf("%s: %d/%zu cases exact\n", what, ok, json_array_size(cases));
}

/* Streaming decode: pushes ids one by one and checks every piece is well-formed UTF-8. */
static char *stream_decode(const lfm2c_tokenizer *t, const int32_t *ids, int n, bool special, size_t *len,
                           bool *pieces_valid) {
    lfm2c_detok d;
    memset(&d, 0, sizeof d);
    d.special = special;
    size_t cap = 256, o = 0;
    char *out = malloc(cap);
    *pieces_valid = true;
    char buf[1024];
    for (int i = 0; i <= n; i++) {
        int k =
            i < n ? tokenizer_detok_push(&d, t, ids[i], buf, sizeof buf) : tokenizer_detok_flush(&d, buf, sizeof buf);
        if (!valid_utf8(buf, (size_t)k)) *pieces_valid = false;
        while (o + (size_t)k > cap) out = realloc(out, cap *= 2);
        memcpy(out + o, buf, (size_t)k);
        o += (size_t)k;
    }
    *len = o;
    return out;
}

static void test_detok_vectors(const lfm2c_tokenizer *t, json_t *vecs) {
    size_t i;
    json_t *v;
    json_array_foreach(vecs, i, v) {
        json_t *ja = json_object_get(v, "ids");
        int n = (int)json_array_size(ja);
        int32_t *ids = malloc((size_t)n * sizeof *ids);
        for (int k = 0; k < n; k++) ids[k] = (int32_t)json_integer_value(json_array_get(ja, (size_t)k));
        for (int sp = 0; sp < 2; sp++) {
            const char *h = json_string_value(json_object_get(v, sp ? "special_hex" : "nospecial_hex"));
            char *want = malloc(strlen(h) / 2 + 1);
            size_t wl = unhex(h, want), gl;
            bool pv;
            char *got = stream_decode(t, ids, n, sp, &gl, &pv);
            CHECK(pv, "detok vector %zu: a piece is not well-formed UTF-8", i);
            CHECK(gl == wl && memcmp(got, want, gl) == 0, "detok vector %zu (special=%d) differs", i, sp);
            free(got);
            free(want);
        }
        free(ids);
    }
}

static uint64_t rng_state = 0x1234567887654321ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

/* Random code point from ranges that exercise every class of the split. */
static uint32_t random_cp(void) {
    static const uint32_t ranges[][2] = {
        {0x20, 0x7E},     {0x20, 0x7E},     {0x30, 0x39},     {0x09, 0x0D},       {0xA0, 0x17F},      {0x300, 0x36F},
        {0x391, 0x3C9},   {0x410, 0x44F},   {0x600, 0x6FF},   {0x900, 0x97F},     {0x2000, 0x206F},   {0x3000, 0x30FF},
        {0x4E00, 0x9FFF}, {0xAC00, 0xD7A3}, {0xFE00, 0xFFFD}, {0x1F300, 0x1FAFF}, {0x10000, 0x10FFFF}};
    int k = (int)(rnd() % (sizeof ranges / sizeof *ranges));
    uint32_t cp = ranges[k][0] + rnd() % (ranges[k][1] - ranges[k][0] + 1);
    return (cp >= 0xD800 && cp <= 0xDFFF) ? 'x' : cp;
}

static void test_round_trips(const lfm2c_tokenizer *t) {
    int bad_valid = 0, bad_bytes = 0, bad_stream = 0;
    for (int it = 0; it < 400; it++) {
        /* valid UTF-8: decode(encode(x)) == x, also streamed token by token */
        char text[4 * 300];
        size_t len = 0;
        int n_cp = 1 + (int)(rnd() % 300);
        for (int i = 0; i < n_cp; i++) len += (size_t)utf8_encode(random_cp(), text + len);
        int n;
        lfm2c_error err = {0};
        int32_t *ids = tokenizer_encode(t, text, len, false, false, &n, &err);
        size_t dl;
        char *dec = decode_all(t, ids, 0, n, &dl);
        bad_valid += !(dl == len && memcmp(dec, text, len) == 0);
        bool pv;
        char *st = stream_decode(t, ids, n, false, &dl, &pv);
        bad_stream += !pv || !(dl == len && memcmp(st, text, len) == 0);
        free(st);
        free(dec);
        free(ids);
        /* arbitrary bytes: decodes to the lenient reading of the input, stream stays valid */
        size_t nb = 1 + rnd() % 200;
        for (size_t i = 0; i < nb; i++) text[i] = (char)rnd();
        ids = tokenizer_encode(t, text, nb, false, rnd() & 1, &n, &err);
        dec = decode_all(t, ids, 0, n, &dl);
        size_t nl;
        char *norm = lenient_normalize(text, nb, &nl);
        bad_bytes += !(dl == nl && memcmp(dec, norm, dl) == 0);
        st = stream_decode(t, ids, n, true, &dl, &pv);
        bad_stream += !pv;
        free(st);
        free(norm);
        free(dec);
        free(ids);
    }
    CHECK(bad_valid == 0, "%d random UTF-8 texts do not round-trip", bad_valid);
    CHECK(bad_bytes == 0, "%d random byte strings do not decode to their lenient reading", bad_bytes);
    CHECK(bad_stream == 0, "%d streamed decodes differ or cut a character", bad_stream);

    /* byte tokens pushed one at a time (every multi-byte character split across pushes) */
    const char *s = "ñ東😀\xE2\x82 z\xF0\x9F\x98"; /* ends with an incomplete character */
    int32_t ids[32];
    int n = 0;
    for (const char *p = s; *p; p++) {
        char b = *p;
        /* the byte token of byte b: its stored form is the byte-mapped character */
        for (int id = 0; id < tokenizer_n_vocab(t); id++) {
            char tmp[8];
            if (tokenizer_token_to_bytes(t, id, false, tmp, sizeof tmp) == 1 && tmp[0] == b &&
                tokenizer_token_type(t, id) == TOKEN_TYPE_NORMAL) {
                ids[n++] = id;
                break;
            }
        }
    }
    size_t dl;
    bool pv;
    char *st = stream_decode(t, ids, n, false, &dl, &pv);
    const char *want = "ñ東😀\xEF\xBF\xBD z\xEF\xBF\xBD";
    CHECK(n == (int)strlen(s) && pv && dl == strlen(want) && memcmp(st, want, dl) == 0,
          "byte-by-byte streaming decode");
    free(st);
}

static void test_long_inputs(const lfm2c_tokenizer *t) {
    static const char *units[] = {" ", "\n", "1", "東", "a", "😀", " \t"};
    for (size_t u = 0; u < sizeof units / sizeof *units; u++) {
        size_t ul = strlen(units[u]), reps = 200000 / ul, len = reps * ul;
        char *text = malloc(len);
        for (size_t i = 0; i < reps; i++) memcpy(text + i * ul, units[u], ul);
        int n;
        lfm2c_error err = {0};
        int32_t *ids = tokenizer_encode(t, text, len, true, true, &n, &err);
        CHECK(ids && n >= 2, "long run of '%s'", units[u]);
        size_t dl;
        char *dec = ids ? decode_all(t, ids, 1, n, &dl) : NULL;
        CHECK(dec && dl == len && memcmp(dec, text, len) == 0, "long run of '%s' round trip", units[u]);
        free(dec);
        free(ids);
        free(text);
    }
}

static void test_pretokenizer(void) {
    json_error_t je;
    json_t *cases = json_load_file(DATA("lfm2/LFM2.5-350M.tokenizer-test-cases.ordinary.json"), 0, &je);
    CHECK(cases != NULL, "load pre-token cases: %s", je.text);
    if (!cases) return;
    /* GPT-2 byte map, to compare pieces in the stored form */
    uint32_t fwd[256];
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        fwd[b] = keep ? (uint32_t)b : 0x100u + (uint32_t)extra++;
    }
    size_t i;
    json_t *c;
    int ok = 0;
    json_array_foreach(cases, i, c) {
        const char *text = json_string_value(json_object_get(c, "text"));
        json_t *want = json_object_get(c, "pretokens");
        char *norm;
        size_t *offs;
        int n = tokenizer_pretokenize(text, strlen(text), &norm, &offs);
        bool eq = n == (int)json_array_size(want);
        for (int k = 0; eq && k < n; k++) {
            char mapped[1024];
            size_t m = 0;
            for (size_t j = offs[k]; j < offs[k + 1] && m + 4 < sizeof mapped; j++)
                m += (size_t)utf8_encode(fwd[(uint8_t)norm[j]], mapped + m);
            const char *w = json_string_value(json_array_get(want, (size_t)k));
            eq = strlen(w) == m && memcmp(w, mapped, m) == 0;
        }
        CHECK(eq, "pre-token split of case %zu (\"%.40s\")", i, text);
        ok += eq;
        free(norm);
        free(offs);
    }
    printf("pre-token split: %d/%zu cases\n", ok, json_array_size(cases));
    json_decref(cases);
}

/* Every golden fixture's token_ids re-made from its prompt (add BOS, parse specials). */
static void test_goldens(void) {
    static const char *names[] = {"lfm2-tiny-dense-f32",  "lfm2-tiny-dense-q4_0", "lfm2-tiny-dense-q8_0",
                                  "lfm2-tiny-moe-f32",    "lfm2-tiny-moe-q4_0",   "lfm2-tiny-moe-q8_0",
                                  "lfm2-kq-dense-q4_k_m", "lfm2-kq-moe-q4_k_m",   "lfm2-kq-moe-q5_k_m",
                                  "lfm2-kq-moe-q6_k"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char path[256];
        snprintf(path, sizeof path, "data/%s.golden.json", names[i]);
        json_error_t je;
        json_t *gj = json_load_file(path, 0, &je);
        CHECK(gj != NULL, "%s: %s", path, je.text);
        if (!gj) continue;
        snprintf(path, sizeof path, "data/%s", json_string_value(json_object_get(gj, "model")));
        gguf_file *g;
        lfm2c_tokenizer *t = open_tok(path, &g);
        CHECK(t != NULL, "open %s", path);
        if (t) {
            const char *prompt = json_string_value(json_object_get(gj, "prompt"));
            int n;
            lfm2c_error err = {0};
            int32_t *ids = tokenizer_encode(t, prompt, strlen(prompt), true, true, &n, &err);
            CHECK(ids && ids_equal(ids, n, json_object_get(gj, "token_ids")), "%s: token_ids", names[i]);
            json_t *pieces = json_object_get(gj, "token_pieces");
            for (int k = 0; ids && k < n && k < (int)json_array_size(pieces); k++) {
                char buf[256];
                int m = tokenizer_token_to_bytes(t, ids[k], true, buf, sizeof buf);
                const char *w = json_string_value(json_array_get(pieces, (size_t)k));
                CHECK((size_t)m == strlen(w) && memcmp(buf, w, (size_t)m) == 0, "%s: piece %d", names[i], k);
            }
            CHECK(tokenizer_is_eog(t, 7) && tokenizer_is_eog(t, 2) && !tokenizer_is_eog(t, 1), "%s: EOG set", names[i]);
            free(ids);
            tokenizer_free(t);
        }
        if (g) gguf_close(g);
        json_decref(gj);
    }
}

/* ---- a hand-made vocabulary in an in-memory GGUF --------------------------------------------- */
typedef struct gbuf {
    uint8_t *p;
    size_t n, cap;
} gbuf;
static void put(gbuf *b, const void *d, size_t n) {
    while (b->n + n > b->cap) b->p = realloc(b->p, b->cap = b->cap ? 2 * b->cap : 4096);
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u32(gbuf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(gbuf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(gbuf *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void kv_str(gbuf *b, const char *k, const char *v) {
    put_str(b, k);
    put_u32(b, GGUF_STR);
    put_str(b, v);
}
static void kv_strs(gbuf *b, const char *k, const char **v, int n) {
    put_str(b, k);
    put_u32(b, GGUF_ARR);
    put_u32(b, GGUF_STR);
    put_u64(b, (uint64_t)n);
    for (int i = 0; i < n; i++) put_str(b, v[i]);
}
static void kv_i32s(gbuf *b, const char *k, const int32_t *v, int n) {
    put_str(b, k);
    put_u32(b, GGUF_ARR);
    put_u32(b, GGUF_I32);
    put_u64(b, (uint64_t)n);
    put(b, v, 4 * (size_t)n);
}
static void gguf_header(gbuf *b, int n_kv) {
    put(b, "GGUF", 4);
    put_u32(b, 3);
    put_u64(b, 0);
    put_u64(b, (uint64_t)n_kv);
}

static lfm2c_tokenizer *tok_from(gbuf *b, gguf_file **g, lfm2c_error *err) {
    *g = gguf_open_memory(b->p, b->n, err);
    if (!*g) return NULL;
    lfm2c_tokenizer *t = tokenizer_new(*g, err);
    return t;
}

static void encode_is(const lfm2c_tokenizer *t, const char *text, bool sp, const int32_t *want, int nw) {
    int n;
    lfm2c_error err = {0};
    int32_t *ids = tokenizer_encode(t, text, strlen(text), false, sp, &n, &err);
    bool eq = ids && n == nw && memcmp(ids, want, (size_t)nw * sizeof *ids) == 0;
    CHECK(eq, "hand-made vocab: \"%s\" (parse_special=%d) gives %d ids", text, sp, n);
    free(ids);
}

static void test_handmade_vocab(void) {
    /* ids 0..255: the byte tokens in byte order; then merge results and specials */
    static char store[256][4];
    const char *tokens[262];
    int32_t types[262];
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        store[b][utf8_encode(keep ? (uint32_t)b : 0x100u + (uint32_t)extra++, store[b])] = 0;
        tokens[b] = store[b];
        types[b] = TOKEN_TYPE_NORMAL;
    }
    tokens[256] = "ab";
    types[256] = TOKEN_TYPE_NORMAL;
    tokens[257] = "<s>";
    types[257] = TOKEN_TYPE_CONTROL;
    tokens[258] = "<tool>";
    types[258] = TOKEN_TYPE_USER_DEFINED;
    tokens[259] = "<to";
    types[259] = TOKEN_TYPE_CONTROL;
    tokens[260] = "xyz";
    types[260] = TOKEN_TYPE_NORMAL; /* reachable only as a whole piece */
    tokens[261] = "ab";
    types[261] = TOKEN_TYPE_NORMAL;                       /* duplicate: the later id wins */
    const char *merges[] = {"a b", "ab c", "a b", "x y"}; /* "abc" and "xy" are not tokens */
    gbuf b = {0};
    gguf_header(&b, 5);
    kv_str(&b, "tokenizer.ggml.model", "gpt2");
    kv_str(&b, "tokenizer.ggml.pre", "lfm2");
    kv_strs(&b, "tokenizer.ggml.tokens", tokens, 262);
    kv_i32s(&b, "tokenizer.ggml.token_type", types, 262);
    kv_strs(&b, "tokenizer.ggml.merges", merges, 4);
    gguf_file *g;
    lfm2c_error err = {0};
    lfm2c_tokenizer *t = tok_from(&b, &g, &err);
    CHECK(t != NULL, "hand-made vocab loads: %s", err.msg);
    if (t) {
        encode_is(t, "ab", false, (int32_t[]){261}, 1);
        encode_is(t, "abc", false, (int32_t[]){'a', 'b', 'c'}, 3); /* byte fallback */
        encode_is(t, "xyz", false, (int32_t[]){260}, 1);           /* whole piece */
        encode_is(t, "xyzw", false, (int32_t[]){'x', 'y', 'z', 'w'}, 4);
        encode_is(t, "<s>", false, (int32_t[]){'<', 's', '>'}, 3);
        encode_is(t, "<s>", true, (int32_t[]){257}, 1);
        encode_is(t, "a<tool>", false, (int32_t[]){'a', 258}, 2);  /* user-defined: always */
        encode_is(t, "<to<tool>", true, (int32_t[]){259, 258}, 2); /* longest first */
        encode_is(t, "<tool>", true, (int32_t[]){258}, 1);
        CHECK(tokenizer_bos(t) == -1 && tokenizer_find_token(t, "<s>", 3) == 257, "bos / find_token");
        int n;
        int32_t *ids = tokenizer_encode(t, "", 0, true, true, &n, &err);
        CHECK(ids && n == 0, "empty text without a BOS token");
        free(ids);
        char buf[8];
        CHECK(tokenizer_token_to_bytes(t, 257, false, buf, sizeof buf) == 0 &&
                  tokenizer_token_to_bytes(t, 257, true, buf, sizeof buf) == 3 &&
                  tokenizer_token_to_bytes(t, 258, false, buf, sizeof buf) == 6 &&
                  tokenizer_token_to_bytes(t, 9999, true, buf, sizeof buf) == 0 &&
                  tokenizer_token_to_bytes(t, -1, true, buf, sizeof buf) == 0,
              "token_to_bytes by type");
        tokenizer_free(t);
    }
    if (g) gguf_close(g);
    free(b.p);

    /* malformed tokenizers: clear errors */
    struct {
        const char *what;
        int code;
    } bad[] = {{"no tokenizer", LFM2C_EFORMAT},     {"llama model", LFM2C_EUNSUPPORTED},
               {"unknown pre", LFM2C_EUNSUPPORTED}, {"no tokens", LFM2C_EFORMAT},
               {"bad merge", LFM2C_EFORMAT},        {"types count", LFM2C_EFORMAT},
               {"bos range", LFM2C_EFORMAT}};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        gbuf m = {0};
        const char *toks[] = {"a", "b"};
        int32_t ty[] = {1};
        const char *mg[] = {"ab"};
        switch (k) {
        case 0:
            gguf_header(&m, 1);
            kv_str(&m, "general.architecture", "lfm2");
            break;
        case 1:
            gguf_header(&m, 1);
            kv_str(&m, "tokenizer.ggml.model", "llama");
            break;
        case 2:
            gguf_header(&m, 2);
            kv_str(&m, "tokenizer.ggml.model", "gpt2");
            kv_str(&m, "tokenizer.ggml.pre", "qwen2");
            break;
        case 3:
            gguf_header(&m, 1);
            kv_str(&m, "tokenizer.ggml.model", "gpt2");
            break;
        case 4:
            gguf_header(&m, 3);
            kv_str(&m, "tokenizer.ggml.model", "gpt2");
            kv_strs(&m, "tokenizer.ggml.tokens", toks, 2);
            kv_strs(&m, "tokenizer.ggml.merges", mg, 1);
            break;
        case 5:
            gguf_header(&m, 3);
            kv_str(&m, "tokenizer.ggml.model", "gpt2");
            kv_strs(&m, "tokenizer.ggml.tokens", toks, 2);
            kv_i32s(&m, "tokenizer.ggml.token_type", ty, 1);
            break;
        case 6:
            gguf_header(&m, 3);
            kv_str(&m, "tokenizer.ggml.model", "gpt2");
            kv_strs(&m, "tokenizer.ggml.tokens", toks, 2);
            put_str(&m, "tokenizer.ggml.bos_token_id");
            put_u32(&m, GGUF_I32);
            put_u32(&m, 5);
            break;
        }
        gguf_file *mg_g;
        lfm2c_error e = {0};
        lfm2c_tokenizer *mt = tok_from(&m, &mg_g, &e);
        CHECK(mt == NULL && e.code == bad[k].code && e.msg[0], "malformed (%s): code %d, msg '%s'", bad[k].what, e.code,
              e.msg);
        tokenizer_free(mt);
        if (mg_g) gguf_close(mg_g);
        free(m.p);
    }
}

/* Throughput on ~1 MB of mixed-language text made from the test texts (printed, not checked). */
static void measure_speed(const lfm2c_tokenizer *t, json_t *extra) {
    size_t cap = 1 << 20, len = 0;
    char *text = malloc(cap + 4096);
    json_t *enc = json_object_get(extra, "encode");
    for (size_t i = 0; len < cap; i = (i + 1) % json_array_size(enc)) {
        json_t *tx = json_object_get(json_array_get(enc, i), "text");
        if (!tx) continue;
        memcpy(text + len, json_string_value(tx), json_string_length(tx));
        len += json_string_length(tx);
        text[len++] = ' ';
    }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int n;
    lfm2c_error err = {0};
    int32_t *ids = tokenizer_encode(t, text, len, true, true, &n, &err);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
    printf("speed: %.2f MB in %.1f ms -> %.1f MB/s, %d tokens (%.2f M tokens/s)\n", len / 1e6, s * 1e3, len / 1e6 / s,
           n, n / 1e6 / s);
    CHECK(ids != NULL, "speed text encodes");
    free(ids);
    free(text);
}

int main(void) {
    gguf_file *g;
    lfm2c_tokenizer *t = open_tok(DATA("tokenizer/lfm2-tok-multilingual.gguf"), &g);
    CHECK(t != NULL, "open the tokenizer fixture");
    if (!t) TEST_MAIN_END();
    json_error_t je;
    json_t *cases = json_load_file(DATA("tokenizer/cases.json"), 0, &je);
    CHECK(cases != NULL, "cases.json: %s", je.text);
    if (cases) run_cases(t, cases, "reference goldens");
    json_t *extra = json_load_file(DATA("tokenizer/extra_cases.json"), 0, &je);
    CHECK(extra != NULL, "extra_cases.json: %s", je.text);
    if (extra) {
        run_cases(t, json_object_get(extra, "encode"), "own cases");
        test_detok_vectors(t, json_object_get(extra, "detok"));
    }
    CHECK(tokenizer_n_vocab(t) == 16384 && tokenizer_bos(t) == 1 && tokenizer_eos(t) == 7 && tokenizer_add_bos(t),
          "vocabulary facts");
    CHECK(tokenizer_is_eog(t, 7) && tokenizer_is_eog(t, 2) && !tokenizer_is_eog(t, 6), "EOG set");
    test_round_trips(t);
    test_long_inputs(t);
    test_pretokenizer();
    test_goldens();
    test_handmade_vocab();
    if (extra) measure_speed(t, extra);
    json_decref(cases);
    json_decref(extra);
    tokenizer_free(t);
    gguf_close(g);
    TEST_MAIN_END();
}
