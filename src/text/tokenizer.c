/* tokenizer.c — LFM2 byte-level BPE (see tokenizer.h for the contract).
 *
 * Strings are handled as raw bytes throughout: vocabulary entries and merges are decoded once from
 * the GPT-2 byte-to-unicode form ("Ġthe" -> " the"), so encoding never maps text back and forth.
 * Every string that BPE can produce gets a "symbol" id: token ids for vocabulary entries, ids from
 * n_vocab up for merge parts / results that are not in the vocabulary. A merge is then a hash
 * lookup (left symbol, right symbol) -> (rank, result symbol). */
#include "base/error.h"
#include "text/tokenizer.h"
#include "text/unicode.h"
#include "base/buf.h"
#include "base/os.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* ---- byte pool: strings addressed by (offset, length) ---------------------------------------- */
typedef struct strpool {
    char *data;
    size_t len, cap;
    uint32_t *off, *slen; /* per string */
    int n, ncap;
} strpool;

static int pool_add(strpool *p, const char *s, size_t n) {
    if (p->n == p->ncap) {
        int nc = p->ncap ? 2 * p->ncap : 1024;
        uint32_t *o = realloc(p->off, (size_t)nc * sizeof *o);
        if (!o) return -1;
        p->off = o;
        uint32_t *l = realloc(p->slen, (size_t)nc * sizeof *l);
        if (!l) return -1;
        p->slen = l;
        p->ncap = nc;
    }
    if (n > UINT32_MAX - p->len) return -1;
    char *d = lfm2c_grow(p->data, &p->cap, p->len, n, 1, 4096);
    if (!d) return -1;
    p->data = d;
    if (n) memcpy(p->data + p->len, s, n);
    p->off[p->n] = (uint32_t)p->len;
    p->slen[p->n] = (uint32_t)n;
    p->len += n;
    return p->n++;
}

static void pool_free(strpool *p) {
    free(p->data);
    free(p->off);
    free(p->slen);
}

/* ---- string -> id hash map (open addressing; keys live in a strpool) ------------------------ */
typedef struct strmap {
    uint32_t *slot;
    uint32_t *hash;
    uint32_t mask;
    uint32_t n;
} strmap;

static uint32_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    return (uint32_t)h;
}

static bool map_init(strmap *m, uint32_t expect) {
    uint32_t cap = 16;
    while (cap < expect * 2 + 16) cap *= 2;
    m->slot = calloc(cap, sizeof *m->slot);
    m->hash = calloc(cap, sizeof *m->hash);
    m->mask = cap - 1;
    m->n = 0;
    return m->slot && m->hash;
}

static void map_free(strmap *m) {
    free(m->slot);
    free(m->hash);
}

/* Slot of key s (empty slot if absent). Slots hold id + 1; 0 = empty. */
static uint32_t map_probe(const strmap *m, const strpool *p, const char *s, size_t n, uint32_t h) {
    uint32_t i = h & m->mask;
    for (;;) {
        uint32_t v = m->slot[i];
        if (!v) return i;
        if (m->hash[i] == h) {
            uint32_t id = v - 1;
            if (p->slen[id] == n && memcmp(p->data + p->off[id], s, n) == 0) return i;
        }
        i = (i + 1) & m->mask;
    }
}

static int map_get(const strmap *m, const strpool *p, const char *s, size_t n) {
    uint32_t v = m->slot[map_probe(m, p, s, n, hash_bytes(s, n))];
    return v ? (int)v - 1 : -1;
}

static bool map_grow(strmap *m, const strpool *p) {
    strmap nm;
    if (!map_init(&nm, (m->mask + 1))) {
        map_free(&nm);
        return false;
    }
    for (uint32_t i = 0; i <= m->mask; i++) {
        if (!m->slot[i]) continue;
        uint32_t j = m->hash[i] & nm.mask;
        while (nm.slot[j]) j = (j + 1) & nm.mask;
        nm.slot[j] = m->slot[i];
        nm.hash[j] = m->hash[i];
    }
    nm.n = m->n;
    map_free(m);
    *m = nm;
    (void)p;
    return true;
}

/* Maps string id (already in the pool) under its text; replaces an existing entry when
 * `replace` (the reference keeps the last vocabulary entry of a duplicated string). */
static bool map_put(strmap *m, const strpool *p, int id, bool replace) {
    if ((m->n + 1) * 2 > m->mask + 1 && !map_grow(m, p)) return false;
    const char *s = p->data + p->off[id];
    size_t n = p->slen[id];
    uint32_t h = hash_bytes(s, n);
    uint32_t i = map_probe(m, p, s, n, h);
    if (m->slot[i] && !replace) return true;
    if (!m->slot[i]) m->n++;
    m->slot[i] = (uint32_t)id + 1;
    m->hash[i] = h;
    return true;
}

/* ---- merge table: (left symbol, right symbol) -> (rank, result symbol) ---------------------- */
typedef struct merge_entry {
    uint64_t key;
    int32_t rank;
    int32_t result;
} merge_entry;
typedef struct mergemap {
    merge_entry *e;
    uint32_t mask;
} mergemap;
#define MERGE_EMPTY UINT64_MAX

static uint32_t hash_pair(uint64_t k) {
    k *= 0x9E3779B97F4A7C15ull;
    return (uint32_t)(k >> 32);
}

static const merge_entry *merge_find(const mergemap *m, int32_t l, int32_t r) {
    uint64_t k = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    for (uint32_t i = hash_pair(k) & m->mask;; i = (i + 1) & m->mask) {
        if (m->e[i].key == k) return &m->e[i];
        if (m->e[i].key == MERGE_EMPTY) return NULL;
    }
}

/* ---- the tokenizer --------------------------------------------------------------------------- */
#define MAX_EOG 16

struct lfm2c_tokenizer {
    int n_vocab;
    int32_t *type;   /* TOKEN_TYPE_* per token */
    strpool text;    /* stored token strings (GGUF form), index = token id */
    strpool out;     /* decoded bytes of each token (what decoding emits), index = token id */
    strpool sym;     /* symbol strings: raw bytes; ids < n_vocab are tokens */
    strmap sym_map;  /* raw bytes -> symbol id (tokens whose string decodes) */
    strmap text_map; /* stored string -> token id */
    mergemap merges;
    int32_t byte_sym[256]; /* symbol of each single byte */
    /* special tokens matched in text, by priority (longest first) */
    int32_t *special; /* token ids */
    int n_special;
    strmap special_map;    /* stored string -> index into special[] (keys in `text`) */
    int32_t *special_rank; /* token id -> index in special[], or -1 */
    int *special_lens;     /* distinct lengths, longest first */
    int n_special_lens;
    uint8_t special_first[32]; /* bitset of first bytes of special strings */
    int bos, eos;
    bool add_bos, add_eos;
    int32_t eog[MAX_EOG];
    int n_eog;
};

/* GPT-2 bytes_to_unicode: printable bytes map to themselves, the other 68 to U+0100.. in order. */
static void byte_map(uint32_t fwd[256], int16_t inv[0x144]) {
    int extra = 0;
    for (int i = 0; i < 0x144; i++) inv[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        fwd[b] = keep ? (uint32_t)b : 0x100u + (uint32_t)extra++;
        inv[fwd[b]] = (int16_t)b;
    }
}

/* Decodes a stored (byte-mapped) string into raw bytes. Returns the length, or -1 if the string
 * has characters outside the byte map (such strings can never be produced from text). With
 * `lenient`, such characters are copied through as UTF-8 instead (for display). */
static long unmap_string(const int16_t inv[0x144], const char *s, size_t n, char *dst, bool lenient) {
    size_t i = 0, o = 0;
    while (i < n) {
        int len;
        uint32_t cp = utf8_decode_lenient((const uint8_t *)s + i, n - i, &len);
        if (cp < 0x144 && inv[cp] >= 0) {
            dst[o++] = (char)inv[cp];
        } else {
            if (!lenient) return -1;
            memcpy(dst + o, s + i, (size_t)len);
            o += (size_t)len;
        }
        i += (size_t)len;
    }
    return (long)o;
}


void tokenizer_free(lfm2c_tokenizer *t) {
    if (!t) return;
    free(t->type);
    pool_free(&t->text);
    pool_free(&t->out);
    pool_free(&t->sym);
    map_free(&t->sym_map);
    map_free(&t->text_map);
    free(t->merges.e);
    free(t->special);
    map_free(&t->special_map);
    free(t->special_rank);
    free(t->special_lens);
    free(t);
}

/* Symbol id of raw string s, adding a merge-only symbol if it is new. -1: out of memory. */
static int intern(lfm2c_tokenizer *t, const char *s, size_t n) {
    int id = map_get(&t->sym_map, &t->sym, s, n);
    if (id >= 0) return id;
    id = pool_add(&t->sym, s, n);
    if (id < 0 || !map_put(&t->sym_map, &t->sym, id, false)) return -1;
    return id;
}

static bool build_vocab(lfm2c_tokenizer *t, const gguf_file *g, const int16_t inv[0x144], lfm2c_error *err) {
    const gguf_kv *tok = gguf_find(g, "tokenizer.ggml.tokens");
    if (!tok || tok->type != GGUF_ARR || tok->arr_type != GGUF_STR || tok->n == 0) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "GGUF has no tokenizer.ggml.tokens string array");
        return false;
    }
    if (tok->n > (1u << 24)) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "vocabulary too large (%llu tokens)", (unsigned long long)tok->n);
        return false;
    }
    int n = t->n_vocab = (int)tok->n;
    const gguf_kv *types = gguf_find(g, "tokenizer.ggml.token_type");
    if (types && (types->type != GGUF_ARR || types->n != tok->n)) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "tokenizer.ggml.token_type has %llu entries for %d tokens",
                        (unsigned long long)types->n, n);
        return false;
    }
    t->type = malloc((size_t)n * sizeof *t->type);
    if (!t->type || !map_init(&t->sym_map, (uint32_t)n) || !map_init(&t->text_map, (uint32_t)n)) goto oom;
    size_t longest = 0;
    for (int i = 0; i < n; i++) {
        int64_t ty = TOKEN_TYPE_NORMAL;
        if (types && !gguf_arr_int(types, (uint64_t)i, &ty)) {
            lfm2c_set_error(err, LFM2C_EFORMAT, "tokenizer.ggml.token_type is not an integer array");
            return false;
        }
        t->type[i] = (int32_t)ty;
        if (tok->strs[i].n > longest) longest = tok->strs[i].n;
    }
    char *buf = malloc(longest + 1);
    if (!buf) goto oom;
    for (int i = 0; i < n; i++) {
        const gguf_str *s = &tok->strs[i];
        if (pool_add(&t->text, s->p, s->n) != i) {
            free(buf);
            goto oom;
        }
        if (!map_put(&t->text_map, &t->text, i, true)) {
            free(buf);
            goto oom;
        }
        /* symbol string: the raw bytes, or (undecodable) an empty string never looked up */
        long r = unmap_string(inv, s->p, s->n, buf, false);
        if (pool_add(&t->sym, buf, r > 0 ? (size_t)r : 0) != i) {
            free(buf);
            goto oom;
        }
        if (r > 0 && !map_put(&t->sym_map, &t->sym, i, true)) {
            free(buf);
            goto oom;
        }
        /* what decoding emits */
        int ty = t->type[i];
        long o;
        if (ty == TOKEN_TYPE_NORMAL || ty == TOKEN_TYPE_BYTE) o = unmap_string(inv, s->p, s->n, buf, true);
        else if (ty == TOKEN_TYPE_UNUSED) o = 0;
        else {
            memcpy(buf, s->p, s->n);
            o = (long)s->n;
        }
        if (pool_add(&t->out, buf, (size_t)o) != i) {
            free(buf);
            goto oom;
        }
    }
    free(buf);
    return true;
oom:
    lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory building the vocabulary");
    return false;
}

static bool build_merges(lfm2c_tokenizer *t, const gguf_file *g, const int16_t inv[0x144], lfm2c_error *err) {
    const gguf_kv *mk = gguf_find(g, "tokenizer.ggml.merges");
    uint64_t nm = 0;
    if (mk) {
        if (mk->type != GGUF_ARR || mk->arr_type != GGUF_STR) {
            lfm2c_set_error(err, LFM2C_EFORMAT, "tokenizer.ggml.merges is not a string array");
            return false;
        }
        nm = mk->n;
    }
    if (nm > (1u << 26)) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "too many merges (%llu)", (unsigned long long)nm);
        return false;
    }
    uint32_t cap = 16;
    while (cap < nm * 2 + 16) cap *= 2;
    t->merges.e = malloc((size_t)cap * sizeof *t->merges.e);
    if (!t->merges.e) goto oom;
    t->merges.mask = cap - 1;
    for (uint32_t i = 0; i < cap; i++) t->merges.e[i].key = MERGE_EMPTY;
    size_t longest = 0;
    for (uint64_t i = 0; i < nm; i++)
        if (mk->strs[i].n > longest) longest = mk->strs[i].n;
    char *buf = malloc(longest + 1);
    if (!buf) goto oom;
    for (uint64_t i = 0; i < nm; i++) {
        const gguf_str *s = &mk->strs[i];
        /* "A B": the separator is the first space after the first byte (raw spaces never occur
         * inside the byte-mapped strings) */
        const char *sp = s->n > 1 ? memchr(s->p + 1, ' ', s->n - 1) : NULL;
        if (!sp) {
            lfm2c_set_error(err, LFM2C_EFORMAT, "tokenizer.ggml.merges[%llu] is not \"A B\"", (unsigned long long)i);
            free(buf);
            return false;
        }
        size_t na = (size_t)(sp - s->p), nb = s->n - na - 1;
        long ra = unmap_string(inv, s->p, na, buf, false);
        long rb = ra > 0 ? unmap_string(inv, sp + 1, nb, buf + ra, false) : -1;
        if (ra <= 0 || rb <= 0) continue; /* can never apply to text */
        int l = intern(t, buf, (size_t)ra);
        int r = l >= 0 ? intern(t, buf + ra, (size_t)rb) : -1;
        int res = r >= 0 ? intern(t, buf, (size_t)(ra + rb)) : -1;
        if (res < 0) {
            free(buf);
            goto oom;
        }
        uint64_t k = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
        uint32_t j = hash_pair(k) & t->merges.mask;
        while (t->merges.e[j].key != MERGE_EMPTY && t->merges.e[j].key != k) j = (j + 1) & t->merges.mask;
        if (t->merges.e[j].key == k) continue; /* a repeated pair keeps its first rank */
        t->merges.e[j] = (merge_entry){k, (int32_t)i, res};
    }
    free(buf);
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_sym[b] = intern(t, &c, 1);
        if (t->byte_sym[b] < 0) goto oom;
    }
    return true;
oom:
    lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory building the merge table");
    return false;
}

static int cmp_special(const void *a, const void *b, void *ctx) {
    const lfm2c_tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t lx = t->text.slen[x], ly = t->text.slen[y];
    if (lx != ly) return lx > ly ? -1 : 1;
    return (x > y) - (x < y);
}

static bool build_specials(lfm2c_tokenizer *t, lfm2c_error *err) {
    int n = 0;
    t->special = malloc((size_t)t->n_vocab * sizeof *t->special);
    t->special_rank = malloc((size_t)t->n_vocab * sizeof *t->special_rank);
    if (!t->special || !t->special_rank) goto oom;
    for (int i = 0; i < t->n_vocab; i++) {
        int ty = t->type[i];
        t->special_rank[i] = -1;
        if ((ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_USER_DEFINED || ty == TOKEN_TYPE_UNKNOWN) &&
            t->text.slen[i] > 0)
            t->special[n++] = i;
    }
    t->n_special = n;
    qsort_r(t->special, (size_t)n, sizeof *t->special, cmp_special, t);
    if (!map_init(&t->special_map, (uint32_t)n + 1)) goto oom;
    t->special_lens = malloc(((size_t)n + 1) * sizeof *t->special_lens);
    if (!t->special_lens) goto oom;
    for (int k = 0; k < n; k++) {
        int id = t->special[k];
        t->special_rank[id] = k;
        const char *s = t->text.data + t->text.off[id];
        uint32_t len = t->text.slen[id];
        if (map_get(&t->special_map, &t->text, s, len) < 0 && !map_put(&t->special_map, &t->text, id, false)) goto oom;
        if (!t->n_special_lens || t->special_lens[t->n_special_lens - 1] != (int)len)
            t->special_lens[t->n_special_lens++] = (int)len;
        uint8_t c = (uint8_t)s[0];
        t->special_first[c >> 3] |= (uint8_t)(1u << (c & 7));
    }
    return true;
oom:
    lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
    return false;
}

/* End-of-generation tokens: EOS, EOT / EOM if given, and the usual end-of-turn strings. Like the
 * reference, a token with one of those strings is treated as CONTROL whatever its stored type. */
static void build_eog(lfm2c_tokenizer *t, const gguf_file *g) {
    static const char *names[] = {"<|im_end|>",    "<|endoftext|>",   "<|eot_id|>", "<|eom_id|>",        "<|end|>",
                                  "<end_of_turn>", "<|end_of_text|>", "<EOT>",      "<end_of_utterance>"};
    int64_t v;
    int32_t cand[3 + sizeof names / sizeof *names];
    int nc = 0;
    cand[nc++] = t->eos;
    cand[nc++] = gguf_get_int(g, "tokenizer.ggml.eot_token_id", &v) ? (int32_t)v : -1;
    cand[nc++] = gguf_get_int(g, "tokenizer.ggml.eom_token_id", &v) ? (int32_t)v : -1;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        int id = tokenizer_find_token(t, names[i], strlen(names[i]));
        if (id >= 0) t->type[id] = TOKEN_TYPE_CONTROL;
        cand[nc++] = id;
    }
    for (int i = 0; i < nc; i++) {
        int id = cand[i];
        if (id < 0 || id >= t->n_vocab || tokenizer_is_eog(t, id) || t->n_eog == MAX_EOG) continue;
        t->eog[t->n_eog++] = id;
    }
}

lfm2c_tokenizer *tokenizer_new(const gguf_file *g, lfm2c_error *err) {
    char *model = gguf_get_string(g, "tokenizer.ggml.model");
    if (!model) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "GGUF has no tokenizer (tokenizer.ggml.model missing)");
        return NULL;
    }
    bool ok = strcmp(model, "gpt2") == 0;
    if (!ok)
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "tokenizer model '%.100s' not supported (only gpt2 byte-level BPE)",
                        model);
    free(model);
    if (!ok) return NULL;
    char *pre = gguf_get_string(g, "tokenizer.ggml.pre");
    ok = !pre || !strcmp(pre, "lfm2") || !strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3");
    if (!ok) lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "pre-tokenizer '%.100s' not supported (only lfm2 / llama3)", pre);
    free(pre);
    if (!ok) return NULL;

    lfm2c_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return NULL;
    }
    uint32_t fwd[256];
    int16_t inv[0x144];
    byte_map(fwd, inv);
    if (!build_vocab(t, g, inv, err) || !build_merges(t, g, inv, err)) {
        tokenizer_free(t);
        return NULL;
    }
    int64_t v;
    t->bos = gguf_get_int(g, "tokenizer.ggml.bos_token_id", &v) ? (int)v : -1;
    t->eos = gguf_get_int(g, "tokenizer.ggml.eos_token_id", &v) ? (int)v : -1;
    if (t->bos >= t->n_vocab || t->eos >= t->n_vocab || t->bos < -1 || t->eos < -1) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "bos/eos token id out of range (%d / %d, vocabulary %d)", t->bos, t->eos,
                        t->n_vocab);
        tokenizer_free(t);
        return NULL;
    }
    t->add_bos = true; /* the reference's default for the lfm2 pre-tokenizer */
    t->add_eos = false;
    gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos);
    gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &t->add_eos);
    build_eog(t, g);
    if (!build_specials(t, err)) {
        tokenizer_free(t);
        return NULL;
    }
    return t;
}

/* ---- pre-token split (LFM2 / Llama-3 regex, by hand) ----------------------------------------
 *   (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|
 *   \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * Alternatives are tried in order at each position, as a backtracking regex engine does. */

static inline bool is_crlf(uint32_t c) { return c == '\r' || c == '\n'; }

/* Length (in code points) of the piece starting at i of cp[0..n) with classes cls[]. */
static int split_piece(const uint32_t *cp, const uint8_t *cls, int n, int i) {
    uint32_t c = cp[i];
    if (c == '\'' && i + 1 < n) {
        uint32_t a = cp[i + 1] | 0x20, b = i + 2 < n ? (cp[i + 2] | 0x20) : 0;
        if (cp[i + 1] < 0x80) {
            if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
            if (i + 2 < n && cp[i + 2] < 0x80 &&
                ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')))
                return 3;
        }
    }
    if (!is_crlf(c) && cls[i] != UCLASS_NUMBER &&
        (cls[i] == UCLASS_LETTER || (i + 1 < n && cls[i + 1] == UCLASS_LETTER))) {
        int j = i + 1;
        while (j < n && cls[j] == UCLASS_LETTER) j++;
        return j - i;
    }
    if (cls[i] == UCLASS_NUMBER) {
        int j = i + 1;
        while (j < n && j < i + 3 && cls[j] == UCLASS_NUMBER) j++;
        return j - i;
    }
    int s = (c == ' ' && i + 1 < n && cls[i + 1] == UCLASS_OTHER) ? i + 1 : i;
    if (cls[s] == UCLASS_OTHER) {
        int j = s + 1;
        while (j < n && cls[j] == UCLASS_OTHER) j++;
        while (j < n && is_crlf(cp[j])) j++;
        return j - i;
    }
    /* whitespace run */
    int j = i, last_nl = -1;
    while (j < n && cls[j] == UCLASS_SPACE) {
        if (is_crlf(cp[j])) last_nl = j;
        j++;
    }
    if (last_nl >= 0) return last_nl + 1 - i; /* \s*[\r\n]+ */
    if (j - i > 1 && j < n) return j - 1 - i; /* \s+(?!\S) */
    return j > i ? j - i : 1;                 /* \s+ */
}

/* Scratch of one encode call (the tokenizer itself stays read-only). */
typedef struct heap_item {
    int32_t rank, left, right, lsym, rsym, result;
} heap_item;
typedef struct bpe_sym {
    int32_t sym, prev, next;
} bpe_sym;
typedef struct encoder {
    const lfm2c_tokenizer *t;
    int32_t *ids;
    size_t n_ids, cap_ids;
    /* decoded fragment: code points, classes, byte offsets into norm (the re-encoded text) */
    uint32_t *cp;
    uint8_t *cls;
    uint32_t *cpoff;
    char *norm;
    size_t cap_cp;
    bpe_sym *s;
    size_t cap_s;
    heap_item *heap;
    size_t n_heap, cap_heap;
} encoder;

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    void *q = lfm2c_grow(*p, cap, 0, need, elem, 64);
    if (!q) return false;
    *p = q;
    return true;
}

static bool emit(encoder *e, int32_t id) {
    if (!grow((void **)&e->ids, &e->cap_ids, e->n_ids + 1, sizeof *e->ids)) return false;
    e->ids[e->n_ids++] = id;
    return true;
}

static bool heap_less(const heap_item *a, const heap_item *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static bool heap_push(encoder *e, heap_item it) {
    if (!grow((void **)&e->heap, &e->cap_heap, e->n_heap + 1, sizeof *e->heap)) return false;
    size_t i = e->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&it, &e->heap[p])) break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = it;
    return true;
}

static heap_item heap_pop(encoder *e) {
    heap_item top = e->heap[0], last = e->heap[--e->n_heap];
    size_t i = 0, n = e->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_less(&e->heap[c + 1], &e->heap[c])) c++;
        if (!heap_less(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n) e->heap[i] = last;
    return top;
}

static bool add_pair(encoder *e, int l, int r) {
    if (l < 0 || r < 0) return true;
    const merge_entry *m = merge_find(&e->t->merges, e->s[l].sym, e->s[r].sym);
    if (!m) return true;
    return heap_push(e, (heap_item){m->rank, l, r, e->s[l].sym, e->s[r].sym, m->result});
}

/* One pre-token piece (raw bytes) -> ids. */
static bool encode_piece(encoder *e, const char *p, size_t n) {
    const lfm2c_tokenizer *t = e->t;
    int whole = map_get(&t->sym_map, &t->sym, p, n);
    if (whole >= 0 && whole < t->n_vocab) return emit(e, whole); /* ignore_merges */
    if (!grow((void **)&e->s, &e->cap_s, n, sizeof *e->s)) return false;
    bpe_sym *s = e->s;
    int m = (int)n;
    for (int i = 0; i < m; i++) s[i] = (bpe_sym){t->byte_sym[(uint8_t)p[i]], i - 1, i + 1 < m ? i + 1 : -1};
    e->n_heap = 0;
    for (int i = 0; i + 1 < m; i++)
        if (!add_pair(e, i, i + 1)) return false;
    while (e->n_heap) {
        heap_item it = heap_pop(e);
        int l = it.left, r = it.right;
        /* stale: left was absorbed or grew, or right changed */
        if (s[l].sym != it.lsym || s[l].next != r || s[r].sym != it.rsym) continue;
        s[l].sym = it.result;
        s[l].next = s[r].next;
        if (s[r].next >= 0) s[s[r].next].prev = l;
        s[r].sym = -1;
        s[r].next = -2;
        if (!add_pair(e, s[l].prev, l) || !add_pair(e, l, s[l].next)) return false;
    }
    for (int i = 0; i >= 0; i = s[i].next) {
        int sy = s[i].sym;
        if (sy < t->n_vocab) {
            if (!emit(e, sy)) return false;
            continue;
        }
        /* a merge result that is not a token: fall back to the byte tokens */
        const char *b = t->sym.data + t->sym.off[sy];
        for (uint32_t k = 0; k < t->sym.slen[sy]; k++) {
            int bs = t->byte_sym[(uint8_t)b[k]];
            if (bs < t->n_vocab && !emit(e, bs)) return false;
        }
    }
    return true;
}

/* Decodes text leniently into e->cp / e->cls and re-encodes it into e->norm; returns the number
 * of code points (e->cpoff[i] = byte offset of code point i in norm, cpoff[n] = its length). */
static long decode_fragment(encoder *e, const char *text, size_t len) {
    /* every input byte gives at most one code point and at most 3 re-encoded bytes (U+FFFD) */
    if (len + 1 > e->cap_cp) {
        size_t cap = len + 1 < 256 ? 256 : len + 1;
        free(e->cp);
        free(e->cls);
        free(e->cpoff);
        free(e->norm);
        e->cp = malloc(cap * sizeof *e->cp);
        e->cls = malloc(cap);
        e->cpoff = malloc(cap * sizeof *e->cpoff);
        e->norm = malloc(cap * 3);
        e->cap_cp = e->cp && e->cls && e->cpoff && e->norm ? cap : 0;
        if (!e->cap_cp) return -1;
    }
    size_t i = 0, out = 0;
    long n = 0;
    while (i < len) {
        int l;
        uint32_t cp = utf8_decode_lenient((const uint8_t *)text + i, len - i, &l);
        e->cp[n] = cp;
        e->cls[n] = (uint8_t)unicode_class(cp);
        e->cpoff[n] = (uint32_t)out;
        if (cp == 0xFFFD || (l > 1 && utf8_valid_prefix((const uint8_t *)text + i, len - i) != l))
            out += (size_t)utf8_encode(cp, e->norm + out); /* replaced or re-encoded (overlong) */
        else {
            memcpy(e->norm + out, text + i, (size_t)l);
            out += (size_t)l;
        }
        i += (size_t)l;
        n++;
    }
    e->cpoff[n] = (uint32_t)out;
    return n;
}

static bool encode_fragment(encoder *e, const char *text, size_t len) {
    long n = decode_fragment(e, text, len);
    if (n < 0) return false;
    for (long i = 0; i < n;) {
        int k = split_piece(e->cp, e->cls, (int)n, (int)i);
        if (!encode_piece(e, e->norm + e->cpoff[i], e->cpoff[i + k] - e->cpoff[i])) return false;
        i += k;
    }
    return true;
}

/* Special-token partition, as the reference does it: for each special token, longest first, every
 * non-overlapping occurrence (left to right) inside a not yet claimed stretch of text is claimed.
 * Found here in one pass: all occurrences, then claimed in that priority order. */
typedef struct special_match {
    int32_t rank;
    uint32_t pos;
} special_match;

static int cmp_match(const void *a, const void *b) {
    const special_match *x = a, *y = b;
    if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}
static int cmp_pos(const void *a, const void *b) {
    const special_match *x = a, *y = b;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

size_t tokenizer_special_at(const lfm2c_tokenizer *t, const char *text, size_t len, size_t i) {
    uint8_t c = (uint8_t)text[i];
    if (!t->n_special || !(t->special_first[c >> 3] & (1u << (c & 7)))) return 0;
    size_t best = 0;
    for (int k = 0; k < t->n_special_lens; k++) {
        size_t l = (size_t)t->special_lens[k];
        if (l <= len - i && l > best && map_get(&t->special_map, &t->text, text + i, l) >= 0) best = l;
    }
    return best;
}

/* no_special (len bytes, or NULL): where it is non-zero no special token may start. */
static bool encode_text(encoder *e, const char *text, size_t len, bool parse_special, const uint8_t *no_special) {
    const lfm2c_tokenizer *t = e->t;
    special_match *m = NULL;
    size_t nm = 0, cap = 0;
    bool ok = false;
    if (t->n_special) {
        for (size_t i = 0; i < len; i++) {
            uint8_t c = (uint8_t)text[i];
            if (!(t->special_first[c >> 3] & (1u << (c & 7))) || (no_special && no_special[i])) continue;
            for (int k = 0; k < t->n_special_lens; k++) {
                size_t l = (size_t)t->special_lens[k];
                if (l > len - i) continue;
                int id = map_get(&t->special_map, &t->text, text + i, l);
                if (id < 0) continue;
                if (!parse_special && t->type[id] != TOKEN_TYPE_USER_DEFINED) continue;
                if (!grow((void **)&m, &cap, nm + 1, sizeof *m)) goto done;
                m[nm++] = (special_match){t->special_rank[id], (uint32_t)i};
            }
        }
    }
    if (nm) {
        qsort(m, nm, sizeof *m, cmp_match);
        uint8_t *claimed = calloc(len, 1);
        if (!claimed) goto done;
        size_t kept = 0;
        for (size_t k = 0; k < nm; k++) {
            uint32_t l = t->text.slen[t->special[m[k].rank]];
            bool free_ = true;
            for (uint32_t j = 0; j < l && free_; j++) free_ = !claimed[m[k].pos + j];
            if (!free_) continue;
            memset(claimed + m[k].pos, 1, l);
            m[kept++] = m[k];
        }
        free(claimed);
        nm = kept;
        qsort(m, nm, sizeof *m, cmp_pos);
    }
    size_t at = 0;
    for (size_t k = 0; k <= nm; k++) {
        size_t end = k < nm ? m[k].pos : len;
        if (end > at && !encode_fragment(e, text + at, end - at)) goto done;
        if (k < nm) {
            int id = t->special[m[k].rank];
            if (!emit(e, id)) goto done;
            at = end + t->text.slen[id];
        }
    }
    ok = true;
done:
    free(m);
    return ok;
}

int32_t *tokenizer_encode(const lfm2c_tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                          int *n_out, lfm2c_error *err) {
    return tokenizer_encode_masked(t, text, len, add_bos, parse_special, NULL, n_out, err);
}

int32_t *tokenizer_encode_masked(const lfm2c_tokenizer *t, const char *text, size_t len, bool add_bos,
                                 bool parse_special, const uint8_t *no_special, int *n_out, lfm2c_error *err) {
    *n_out = 0;
    if (!text && len) {
        lfm2c_set_error(err, LFM2C_EINVAL, "tokenize: NULL text");
        return NULL;
    }
    if (len > (size_t)1 << 30) {
        lfm2c_set_error(err, LFM2C_EINVAL, "tokenize: text too long (%zu bytes)", len);
        return NULL;
    }
    encoder e = {.t = t};
    bool ok = true;
    if (add_bos && t->add_bos && t->bos >= 0) ok = emit(&e, t->bos);
    ok = ok && encode_text(&e, text, len, parse_special, no_special);
    if (ok && add_bos && t->add_eos && t->eos >= 0) ok = emit(&e, t->eos);
    if (ok && !e.ids) ok = grow((void **)&e.ids, &e.cap_ids, 1, sizeof *e.ids);
    free(e.cp);
    free(e.cls);
    free(e.cpoff);
    free(e.norm);
    free(e.s);
    free(e.heap);
    if (!ok) {
        free(e.ids);
        lfm2c_set_error(err, LFM2C_ENOMEM, "tokenize: out of memory");
        return NULL;
    }
    *n_out = (int)e.n_ids;
    return e.ids;
}

int tokenizer_pretokenize(const char *text, size_t len, char **norm, size_t **offs) {
    encoder e = {0};
    long n = decode_fragment(&e, text, len);
    size_t *o = n >= 0 ? malloc(((size_t)n + 1) * sizeof *o) : NULL;
    int np = -1;
    if (o) {
        np = 0;
        for (long i = 0; i < n;) {
            o[np++] = e.cpoff[i];
            i += split_piece(e.cp, e.cls, (int)n, (int)i);
        }
        o[np] = n >= 0 ? e.cpoff[n] : 0;
        *norm = e.norm;
        *offs = o;
        e.norm = NULL;
    }
    free(e.cp);
    free(e.cls);
    free(e.cpoff);
    free(e.norm);
    return np;
}

/* ---- decoding -------------------------------------------------------------------------------- */
int tokenizer_token_to_bytes(const lfm2c_tokenizer *t, int32_t id, bool special, char *buf, int cap) {
    if (id < 0 || id >= t->n_vocab) return 0;
    int ty = t->type[id];
    if (!special && (ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_UNKNOWN)) return 0;
    int n = (int)t->out.slen[id];
    if (cap > 0) memcpy(buf, t->out.data + t->out.off[id], (size_t)(n < cap ? n : cap));
    return n;
}

/* Appends one U+FFFD if it fits. */
static int put_replacement(char *out, int w, int cap) {
    if (w + 3 > cap) return w;
    memcpy(out + w, "\xEF\xBF\xBD", 3);
    return w + 3;
}

/* Writes the well-formed part of s[0..n) (ill-formed parts as U+FFFD); keeps a trailing
 * incomplete character in d->pending. */
static int detok_bytes(lfm2c_detok *d, const uint8_t *s, size_t n, char *out, int cap) {
    int w = 0;
    size_t i = 0;
    while (i < n) {
        int r = utf8_valid_prefix(s + i, n - i);
        if (r > 0) {
            if (w + r <= cap) {
                memcpy(out + w, s + i, (size_t)r);
                w += r;
            }
            i += (size_t)r;
        } else if (r == 0) { /* incomplete: at most 3 bytes */
            d->n_pending = (int)(n - i);
            memcpy(d->pending, s + i, (size_t)d->n_pending);
            return w;
        } else {
            w = put_replacement(out, w, cap);
            i += (size_t)-r;
        }
    }
    d->n_pending = 0;
    return w;
}

int tokenizer_detok_push(lfm2c_detok *d, const lfm2c_tokenizer *t, int32_t id, char *out, int cap) {
    if (id < 0 || id >= t->n_vocab) return 0;
    int ty = t->type[id];
    if (!d->special && (ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_UNKNOWN)) return 0;
    const char *tok = t->out.data + t->out.off[id];
    size_t n = t->out.slen[id], total = (size_t)d->n_pending + n;
    if (n == 0) return 0;
    uint8_t small[256], *buf = total <= sizeof small ? small : malloc(total);
    if (!buf) return 0;
    memcpy(buf, d->pending, (size_t)d->n_pending);
    memcpy(buf + d->n_pending, tok, n);
    int w = detok_bytes(d, buf, total, out, cap);
    if (buf != small) free(buf);
    return w;
}

int tokenizer_detok_flush(lfm2c_detok *d, char *out, int cap) {
    int w = d->n_pending ? put_replacement(out, 0, cap) : 0;
    d->n_pending = 0;
    return w;
}

/* ---- small accessors ------------------------------------------------------------------------- */
int tokenizer_n_vocab(const lfm2c_tokenizer *t) { return t->n_vocab; }
int tokenizer_bos(const lfm2c_tokenizer *t) { return t->bos; }
int tokenizer_eos(const lfm2c_tokenizer *t) { return t->eos; }
bool tokenizer_add_bos(const lfm2c_tokenizer *t) { return t->add_bos; }

bool tokenizer_is_eog(const lfm2c_tokenizer *t, int32_t id) {
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return true;
    return false;
}

int tokenizer_token_type(const lfm2c_tokenizer *t, int32_t id) { return id >= 0 && id < t->n_vocab ? t->type[id] : 0; }

const char *tokenizer_token_text(const lfm2c_tokenizer *t, int32_t id, int *len) {
    if (id < 0 || id >= t->n_vocab) return NULL;
    if (len) *len = (int)t->text.slen[id];
    return t->text.data + t->text.off[id];
}

int32_t tokenizer_find_token(const lfm2c_tokenizer *t, const char *text, size_t len) {
    return map_get(&t->text_map, &t->text, text, len);
}
