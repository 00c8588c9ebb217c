/* bench_grammar.c — cost of the constrained-decoding token mask (grammar_allowed) on a
 * 65,536-token vocabulary, along constrained outputs of a few real schemas.
 *
 * The fixtures' tokenizers are too small (8192 / ~6300 tokens), so the vocabulary is
 * synthesized in the shape of a byte-level BPE vocabulary: the 256 single bytes, then words
 * (with and without a leading space, capitalized), numbers, JSON punctuation runs, whitespace
 * runs, code pieces, and multi-byte UTF-8 (whole characters and split ones), deduplicated.
 * For each schema a walk picks a random allowed token at every step (biased toward the
 * completion's next bytes after 150 tokens so outputs end) and times every mask call.
 * Usage: bench_grammar [SCHEMA.json | ~REGEX ...] (default: a built-in set; ~REGEX: raw text matching
 * REGEX, vLLM's structured outputs "regex"). Prints µs/token, mean and p99. */
#include "chat/grammar.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { N_VOCAB = 65536 };

static unsigned long long rng = 0x9e3779b97f4a7c15ull;
static unsigned rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng >> 11);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int piece(char *out) {
    static const char *punct[] = {"\":",  "\",",    "\":\"", "\"}", "{\"", "},{\"", "\"],", "[{\"", "\":[",
                                  "\": ", "\", \"", "}}",    "]}",  "\\n", "\\\"",  ",\n",  ": ",   "://",
                                  ".com", "-",      "--",    "...", "();", "=>",    "</"};
    static const char *cjk[] = {"\xe4\xb8\xad", "\xe6\x96\x87", "\xe7\x9a\x84",     "\xe6\x98\xaf",
                                "\xe3\x81\xae", "\xed\x95\x9c", "\xc3\xa9",         "\xc3\xa0",
                                "\xd0\xb4",     "\xd0\xb0",     "\xf0\x9f\x98\x80", "\xf0\x9f\x91\x8d"};
    int n = 0, kind = (int)(rnd() % 100);
    if (kind < 55) {
        if (rnd() % 10 < 6) out[n++] = ' ';
        int len = 2 + (int)(rnd() % 9);
        for (int i = 0; i < len; i++) out[n++] = (char)('a' + rnd() % 26);
        if (rnd() % 8 == 0) out[n - len] = (char)(out[n - len] - 32);
    } else if (kind < 65) {
        if (rnd() % 4 == 0) out[n++] = ' ';
        int len = 1 + (int)(rnd() % 3);
        for (int i = 0; i < len; i++) out[n++] = (char)('0' + rnd() % 10);
    } else if (kind < 77) {
        const char *p = punct[rnd() % (sizeof punct / sizeof *punct)];
        n = (int)strlen(p);
        memcpy(out, p, (size_t)n);
    } else if (kind < 90) {
        int k = 1 + (int)(rnd() % 3);
        for (int i = 0; i < k; i++) {
            const char *c = cjk[rnd() % (sizeof cjk / sizeof *cjk)];
            memcpy(out + n, c, strlen(c));
            n += (int)strlen(c);
        }
        if (rnd() % 4 == 0) n -= 1 + (int)(rnd() % 2); /* a split character */
        if (n <= 0) n = 1;
    } else if (kind < 95) {
        int len = 1 + (int)(rnd() % 8);
        char c = " \n\t"[rnd() % 3];
        for (int i = 0; i < len; i++) out[n++] = c;
    } else {
        static const char *code[] = {"_id",    ".get",  "self", "::",  "#include",
                                     "return", "_name", "http", "www", "@gmail"};
        const char *p = code[rnd() % 10];
        n = (int)strlen(p);
        memcpy(out, p, (size_t)n);
    }
    return n;
}

static const char *DEFAULT_SCHEMAS[] = {
    "{\"type\":\"object\",\"properties\":{\"steps\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":"
    "{\"explanation\":{\"type\":\"string\"},\"output\":{\"type\":\"string\"}},\"required\":[\"explanation\",\"output\"]"
    ","
    "\"additionalProperties\":false}},\"final_answer\":{\"type\":\"string\"}},\"required\":[\"steps\",\"final_answer\"]"
    ","
    "\"additionalProperties\":false}",
    "{\"$defs\":{\"Node\":{\"type\":\"object\",\"properties\":{\"type\":{\"enum\":[\"div\",\"button\",\"header\"]},"
    "\"label\":{\"type\":\"string\",\"maxLength\":40},\"children\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/"
    "Node\"},"
    "\"maxItems\":3}},\"required\":[\"type\",\"label\",\"children\"],\"additionalProperties\":false}},\"$ref\":\"#/"
    "$defs/Node\"}",
    "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\",\"format\":\"uuid\"},\"at\":{\"type\":\"string\","
    "\"format\":\"date-time\"},\"email\":{\"type\":\"string\",\"format\":\"email\"},\"age\":{\"type\":\"integer\","
    "\"minimum\":0,\"maximum\":9007199254740991},\"nick\":{\"anyOf\":[{\"type\":\"string\",\"pattern\":\"^[a-z0-9_]{3,"
    "16}$\"},"
    "{\"type\":\"null\"}]}},\"required\":[\"id\",\"at\",\"email\",\"age\",\"nick\"],\"additionalProperties\":false}",
    "{\"type\":\"array\",\"items\":{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"kind\":{\"const\":\"a\"},\"x\":{"
    "\"type\":\"number\"}},"
    "\"required\":[\"kind\",\"x\"]},{\"type\":\"object\",\"properties\":{\"kind\":{\"const\":\"b\"},\"s\":{\"type\":"
    "\"string\"}},"
    "\"required\":[\"kind\",\"s\"]},{\"type\":\"string\"},{\"type\":\"null\"}]},\"maxItems\":8}",
    "{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"}}",
};

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    char **bytes = calloc(N_VOCAB, sizeof *bytes);
    int *lens = calloc(N_VOCAB, sizeof *lens);
    int n = 0;
    for (int b = 0; b < 256; b++, n++) {
        bytes[n] = malloc(1);
        bytes[n][0] = (char)b;
        lens[n] = 1;
    }
    for (int i = 0; i < 8; i++, n++) {
        bytes[n] = malloc(1);
        lens[n] = 0;
    } /* specials: no bytes */
    int guard = 0;
    while (n < N_VOCAB && guard++ < 10 * N_VOCAB) {
        char buf[64];
        int m = piece(buf);
        /* dedupe against recent pieces cheaply; exact duplicates only cost trie chains */
        bytes[n] = malloc((size_t)m);
        memcpy(bytes[n], buf, (size_t)m);
        lens[n++] = m;
    }
    grammar_vocab *v = grammar_vocab_new((const char *const *)bytes, lens, n);
    if (!v) {
        fprintf(stderr, "vocab failed\n");
        return 1;
    }
    bool *allowed = malloc((size_t)n);
    int32_t end = 256;
    int n_schemas = argc > 1 ? argc - 1 : (int)(sizeof DEFAULT_SCHEMAS / sizeof *DEFAULT_SCHEMAS);
    double *all = malloc(sizeof(double) * 400 * 64);
    int n_all = 0;
    printf("vocabulary: %d tokens\n", n);
    for (int s = 0; s < n_schemas && s < 64; s++) {
        char *text = NULL;
        const char *rx = argc > 1 && argv[s + 1][0] == '~' ? argv[s + 1] + 1 : NULL; /* ~REGEX: raw text */
        if (argc > 1 && !rx) {
            FILE *f = fopen(argv[s + 1], "rb");
            if (!f) {
                fprintf(stderr, "cannot read %s\n", argv[s + 1]);
                return 1;
            }
            fseek(f, 0, SEEK_END);
            long sz = ftell(f);
            fseek(f, 0, SEEK_SET);
            text = malloc((size_t)sz + 1);
            if (fread(text, 1, (size_t)sz, f) != (size_t)sz) return 1;
            text[sz] = 0;
            fclose(f);
        }
        char err[256];
        grammar *g = rx ? grammar_from_regex(rx, strlen(rx), NULL, err, sizeof err)
                        : grammar_from_schema(text ? text : DEFAULT_SCHEMAS[s], err, sizeof err);
        free(text);
        if (!g) {
            fprintf(stderr, "schema %d: %s\n", s, err);
            return 1;
        }
        grammar_state *st = malloc(sizeof *st);
        grammar_state_init(g, st);
        double *t = malloc(sizeof(double) * 400);
        int steps = 0, out_bytes = 0;
        for (; steps < 400; steps++) {
            double t0 = now();
            int k = grammar_allowed(g, st, v, &end, 1, allowed);
            t[steps] = now() - t0;
            if (k == 0 || (allowed[end] && (st->depth == 0 || steps > 150 || k == 1))) {
                steps++;
                break;
            }
            int pick = -1;
            if (steps > 150) { /* head for the end: a token matching the completion's next bytes */
                char c[4096];
                int m = grammar_completion(g, st, c, sizeof c);
                for (int i = 0; m > 0 && i < n && pick < 0; i++)
                    if (allowed[i] && lens[i] == 1 && bytes[i][0] == c[0]) pick = i;
            }
            while (pick < 0) {
                int i = (int)(rnd() % (unsigned)n);
                if (allowed[i] && i != end) pick = i;
            }
            if (!grammar_accept(g, st, bytes[pick], (size_t)lens[pick])) {
                fprintf(stderr, "mask/accept mismatch\n");
                return 1;
            }
            out_bytes += lens[pick];
        }
        double sum = 0;
        for (int i = 0; i < steps; i++) {
            sum += t[i];
            all[n_all++] = t[i];
        }
        qsort(t, (size_t)steps, sizeof *t, cmp_d);
        printf("schema %d: %3d tokens (%4d bytes, complete: %s)  mean %7.1f us  p99 %7.1f us  max %7.1f us\n", s, steps,
               out_bytes, grammar_complete(g, st) ? "yes" : "no", 1e6 * sum / steps, 1e6 * t[(int)(0.99 * (steps - 1))],
               1e6 * t[steps - 1]);
        free(t);
        free(st);
        grammar_free(g);
    }
    double sum = 0;
    for (int i = 0; i < n_all; i++) sum += all[i];
    qsort(all, (size_t)n_all, sizeof *all, cmp_d);
    printf("all: %d mask calls  mean %.1f us/token  p99 %.1f us/token\n", n_all, 1e6 * sum / n_all,
           1e6 * all[(int)(0.99 * (n_all - 1))]);
    grammar_vocab_free(v);
    for (int i = 0; i < n; i++) free(bytes[i]);
    free(bytes);
    free(lens);
    free(allowed);
    free(all);
    return 0;
}
