/* grammar.c — JSON-schema constrained decoding as a byte-level pushdown automaton.
 *
 * The schema is compiled into nodes (allowed types + per-type constraints); $ref targets are
 * compiled once and shared, so recursive schemas become cycles between nodes. The parse state is
 * a small set of frame stacks (one frame per open value: object, array, string, number, literal,
 * enum); anyOf forks a stack per alternative at the value's first byte and dead stacks are
 * dropped, so a state is a plain struct the token mask can copy while it walks a trie of token
 * byte strings, cutting a subtree as soon as its prefix is rejected.
 *
 * Supported keywords: type (string or list), enum, const, properties, required,
 * additionalProperties (bool or schema), propertyNames (only {"type":"string"}), items (schema or
 * false), prefixItems (and draft-4 tuple items + additionalItems), minItems, maxItems,
 * uniqueItems (arrays of enum/const/boolean items, or maxItems <= 1), minLength, maxLength (code
 * points), pattern, format (date-time, date, time, duration, email, uuid, uri, hostname, ipv4,
 * ipv6), minimum, maximum, exclusiveMinimum, exclusiveMaximum (numbers or the draft-4 booleans),
 * multipleOf (integers exact; numbers: an integer multipleOf makes them integers, 10^-d allows at
 * most d decimals), anyOf, oneOf (as anyOf: exact when the alternatives are disjoint, as
 * generators emit them), allOf (merged into one schema), $ref (local JSON pointers), $defs,
 * definitions, nullable (OpenAPI). Ignored annotations: title, description, default, examples,
 * $schema, $id, $comment, deprecated, readOnly, writeOnly, $anchor, discriminator, x-*. Other
 * keywords with a meaning we cannot enforce (not, if/then/else, contains, minProperties, ...) are
 * an error naming them.
 *
 * Numbers: integers are exact in 64-bit arithmetic (at most 16 digits; 15 when unbounded). A
 * bounded number has no exponent and at most 15 significant digits, so the decimal text and the
 * double a JSON parser reads have the same value; a prefix is kept while the interval of values
 * it can still become meets the bounds.
 *
 * Regular expressions (pattern, format) are parsed from the ECMA-262 subset schemas use and
 * compiled to a DFA over code points (see the regex section); strings carry the DFA state. */
#include "chat/grammar.h"
#include "base/error.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { T_NULL = 1, T_BOOL = 2, T_INT = 4, T_NUM = 8, T_STR = 16, T_ARR = 32, T_OBJ = 64, T_ALL = 127 };
enum { MAX_NODES = 8192, MAX_PROPS = 64, MAX_ENUM = 64, MAX_NUM_BYTES = 40, MAX_SCHEMA_DEPTH = 48,
       MAX_PREFIX = 16, MAX_REFS = 512, MAX_ENUM_VALUES = 4096 };

typedef struct gstr { char *s; int n; } gstr;

/* ---- regular expressions: ECMA-262 subset -> NFA -> DFA over code points ----------------- *
 * Syntax: literals, '.', classes [...] with ranges and negation, escapes \d \D \w \W \s \S \t \n
 * \r \f \v \0 \xHH \uHHHH and escaped punctuation, groups (...), (?:...), (?<name>...),
 * alternation, quantifiers * + ? {n} {n,} {n,m} (lazy forms match the same language), anchors
 * ^ and $. Without a leading ^ / trailing $ the pattern matches anywhere (JSON Schema's
 * "contains a match"): the compiled language is .* P .* with the anchors as assertions.
 * Rejected (error): backreferences, lookahead/lookbehind, \b \B, Unicode property escapes. */

typedef struct redge { uint32_t lo, hi; int to; } redge;

/* Work units (NFA states visited, product pairs probed) left for the patterns of one request; a
 * set cancel flag empties it. Past zero a pattern fails with "too costly to compile". */
enum { RX_BUDGET = 60000000 };
typedef struct rxbudget { long left; const volatile bool *cancel; } rxbudget;

static bool rx_spent(rxbudget *b) {
    if (b->cancel && *b->cancel) b->left = -1;
    return b->left < 0;
}
typedef struct rdfa {
    int n;                   /* states; 0 is the start */
    int *first;              /* edges of state s: edges[first[s] .. first[s+1]) sorted by lo */
    redge *edges;
    unsigned char *accept;
    int *dist;               /* code points to the nearest accepting state */
    uint32_t *next_cp;       /* a code point on such a shortest path */
} rdfa;

typedef struct rxrange { uint32_t lo, hi; } rxrange;
typedef struct rcls { rxrange *r; int n; } rcls;
enum { RN_CHAR, RN_SPLIT, RN_EPS, RN_BOL, RN_EOL, RN_MATCH };
typedef struct rnst { int type, out1, out2, cls; } rnst;

enum { RA_CLS, RA_CAT, RA_ALT, RA_REP, RA_BOL, RA_EOL, RA_EMPTY };
typedef struct rast { int type, a, b, min, max, cls; } rast; /* CAT/ALT: a,b children */

typedef struct rxc {
    const char *p, *end;
    rast *ast; int n_ast, cap_ast;
    rcls *cls; int n_cls, cap_cls;
    rnst *nfa; int n_nfa, cap_nfa;
    lfm2c_error *err; bool failed;   /* failed: a message is set */
    int depth;
    rxbudget *budget;            /* work units left for this request's patterns (see RX_BUDGET) */
} rxc;

/* An EINVAL with a formatted message (the compile errors of patterns and schemas). */
static void set_einval(lfm2c_error *err, const char *fmt, va_list ap) {
    char msg[sizeof err->msg];
    vsnprintf(msg, sizeof msg, fmt, ap);
    lfm2c_set_error(err, LFM2C_EINVAL, "%s", msg);
}

/* Sets the message of a pattern that cannot be compiled; returns -1. */
static int rx_fail(rxc *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int rx_fail(rxc *x, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_einval(x->err, fmt, ap);
    va_end(ap);
    x->failed = true;
    return -1;
}

static int rx_oom(rxc *x) {
    lfm2c_set_error(x->err, LFM2C_ENOMEM, "out of memory");
    x->failed = true;
    return -1;
}

static int rx_node(rxc *x, int type, int a, int b) {
    if (x->n_ast >= 100000) return rx_fail(x, "pattern too large");
    if (x->n_ast == x->cap_ast) {
        int nc = x->cap_ast ? 2 * x->cap_ast : 64;
        rast *na = realloc(x->ast, (size_t)nc * sizeof *na);
        if (!na) return rx_oom(x);
        x->ast = na; x->cap_ast = nc;
    }
    x->ast[x->n_ast] = (rast){type, a, b, 0, 0, -1};
    return x->n_ast++;
}

/* Classes: sorted, merged ranges over 0..0x10FFFF minus the surrogates. */
static int cls_new(rxc *x) {
    if (x->n_cls == x->cap_cls) {
        int nc = x->cap_cls ? 2 * x->cap_cls : 32;
        rcls *n = realloc(x->cls, (size_t)nc * sizeof *n);
        if (!n) return rx_oom(x);
        x->cls = n; x->cap_cls = nc;
    }
    x->cls[x->n_cls] = (rcls){NULL, 0};
    return x->n_cls++;
}

static int cls_add(rxc *x, int c, uint32_t lo, uint32_t hi) {
    rcls *k = &x->cls[c];
    if (k->n % 16 == 0) {
        rxrange *n = realloc(k->r, (size_t)(k->n + 16) * sizeof *n);
        if (!n) return rx_oom(x);
        k->r = n;
    }
    k->r[k->n++] = (rxrange){lo, hi};
    return 0;
}

static int range_cmp(const void *a, const void *b) {
    const rxrange *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static void cls_norm(rxc *x, int c, bool negate) {
    rcls *k = &x->cls[c];
    qsort(k->r, (size_t)k->n, sizeof *k->r, range_cmp);
    int m = 0;
    for (int i = 0; i < k->n; i++) {
        if (m && k->r[i].lo <= k->r[m - 1].hi + 1) {
            if (k->r[i].hi > k->r[m - 1].hi) k->r[m - 1].hi = k->r[i].hi;
        } else k->r[m++] = k->r[i];
    }
    k->n = m;
    if (negate) {
        rxrange tmp[512];
        int t = 0;
        uint32_t at = 0;
        for (int i = 0; i < k->n && t < 510; i++) {
            if (k->r[i].lo > at) tmp[t++] = (rxrange){at, k->r[i].lo - 1};
            at = k->r[i].hi + 1;
        }
        /* only the Basic Multilingual Plane: a character past it is one code point for a
         * validator that reads patterns with the u flag and two for one that does not, so '.',
         * [^...] and \\S-like classes keep to characters both count alike */
        if (at <= 0xFFFF) tmp[t++] = (rxrange){at, 0xFFFF};
        k->n = 0;
        for (int i = 0; i < t; i++) if (tmp[i].lo <= 0xFFFF) cls_add(x, c, tmp[i].lo, tmp[i].hi > 0xFFFF ? 0xFFFF : tmp[i].hi);
    }
    /* cut out the surrogates (never in UTF-8 text) */
    int n = k->n;
    for (int i = 0; i < n; i++) {
        rxrange r = k->r[i];
        if (r.hi < 0xD800 || r.lo > 0xDFFF) continue;
        if (r.lo < 0xD800 && r.hi > 0xDFFF) { k->r[i].hi = 0xD7FF; cls_add(x, c, 0xE000, r.hi); }
        else if (r.lo < 0xD800) k->r[i].hi = 0xD7FF;
        else if (r.hi > 0xDFFF) k->r[i].lo = 0xE000;
        else k->r[i].lo = 1, k->r[i].hi = 0; /* empty: dropped below */
    }
    m = 0;
    for (int i = 0; i < k->n; i++) if (k->r[i].lo <= k->r[i].hi) k->r[m++] = k->r[i];
    k->n = m;
    qsort(k->r, (size_t)k->n, sizeof *k->r, range_cmp);
}

static void add_named(rxc *x, int c, char e) {
    switch (e) {
    case 'd': case 'D': cls_add(x, c, '0', '9'); break;
    case 'w': case 'W': cls_add(x, c, '0', '9'); cls_add(x, c, 'A', 'Z'); cls_add(x, c, 'a', 'z'); cls_add(x, c, '_', '_'); break;
    case 's': case 'S':
        cls_add(x, c, 9, 13); cls_add(x, c, ' ', ' '); cls_add(x, c, 0xA0, 0xA0); cls_add(x, c, 0x1680, 0x1680);
        cls_add(x, c, 0x2000, 0x200A); cls_add(x, c, 0x2028, 0x2029); cls_add(x, c, 0x202F, 0x202F);
        cls_add(x, c, 0x205F, 0x205F); cls_add(x, c, 0x3000, 0x3000); cls_add(x, c, 0xFEFF, 0xFEFF); break;
    }
}

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f') return (ch | 0x20) - 'a' + 10;
    return -1;
}

/* Reads one UTF-8 code point of the pattern text. */
static int rx_cp(rxc *x, uint32_t *cp) {
    const unsigned char *s = (const unsigned char *)x->p;
    int n = s[0] < 0x80 ? 1 : s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3 : 4;
    if (x->p + n > x->end) return rx_fail(x, "pattern is not valid UTF-8");
    uint32_t c = n == 1 ? s[0] : n == 2 ? s[0] & 0x1F : n == 3 ? s[0] & 0x0F : s[0] & 0x07;
    for (int i = 1; i < n; i++) c = c << 6 | (s[i] & 0x3F);
    x->p += n;
    *cp = c;
    return 0;
}

/* An escape after '\\' (x->p at the letter). Returns 1 and a code point, or 2 and a named class
 * letter in *named, or -1. */
static int rx_escape(rxc *x, uint32_t *cp, char *named) {
    if (x->p >= x->end) return rx_fail(x, "pattern ends with '\\'");
    char e = *x->p++;
    switch (e) {
    case 'd': case 'D': case 'w': case 'W': case 's': case 'S': *named = e; return 2;
    case 't': *cp = 9; return 1;
    case 'n': *cp = 10; return 1;
    case 'r': *cp = 13; return 1;
    case 'f': *cp = 12; return 1;
    case 'v': *cp = 11; return 1;
    case '0': *cp = 0; return 1;
    case 'x': case 'u': {
        int nd = e == 'x' ? 2 : 4;
        uint32_t v = 0;
        if (e == 'u' && x->p < x->end && *x->p == '{') {
            x->p++;
            int k = 0;
            while (x->p < x->end && *x->p != '}' && hexval(*x->p) >= 0 && k < 6) v = v * 16 + (uint32_t)hexval(*x->p++), k++;
            if (x->p >= x->end || *x->p != '}' || !k || v > 0x10FFFF) return rx_fail(x, "bad \\u{...} escape in pattern");
            x->p++;
            *cp = v;
            return 1;
        }
        for (int i = 0; i < nd; i++) {
            if (x->p >= x->end || hexval(*x->p) < 0) return rx_fail(x, "bad \\%c escape in pattern", e);
            v = v * 16 + (uint32_t)hexval(*x->p++);
        }
        *cp = v;
        return 1;
    }
    case 'b': case 'B': return rx_fail(x, "pattern: word boundaries (\\b, \\B) are not supported");
    case 'p': case 'P': return rx_fail(x, "pattern: Unicode property escapes are not supported");
    case 'k': return rx_fail(x, "pattern: backreferences are not supported");
    case 'c': return rx_fail(x, "pattern: \\c escapes are not supported");
    default:
        if (e >= '1' && e <= '9') return rx_fail(x, "pattern: backreferences are not supported");
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z')) return rx_fail(x, "pattern: unknown escape \\%c", e);
        x->p--;
        return rx_cp(x, cp) ? -1 : 1;
    }
}

static int rx_class(rxc *x) {
    int c = cls_new(x);
    if (c < 0) return -1;
    bool neg = false;
    if (x->p < x->end && *x->p == '^') { neg = true; x->p++; }
    bool first = true;
    for (;;) {
        if (x->p >= x->end) return rx_fail(x, "pattern: unterminated character class");
        if (*x->p == ']' && !first) { x->p++; break; }
        first = false;
        uint32_t lo;
        char named = 0;
        if (*x->p == '\\') {
            x->p++;
            if (x->p < x->end && *x->p == 'b') { x->p++; lo = 8; }
            else {
                int r = rx_escape(x, &lo, &named);
                if (r < 0) return -1;
            }
        } else if (rx_cp(x, &lo)) return -1;
        if (named) {
            if (named >= 'A' && named <= 'Z') {
                int t = cls_new(x);
                if (t < 0) return -1;
                add_named(x, t, named);
                cls_norm(x, t, true);
                for (int i = 0; i < x->cls[t].n; i++) cls_add(x, c, x->cls[t].r[i].lo, x->cls[t].r[i].hi);
            } else add_named(x, c, named);
            continue;
        }
        uint32_t hi = lo;
        if (x->p + 1 < x->end && *x->p == '-' && x->p[1] != ']') {
            x->p++;
            if (*x->p == '\\') {
                x->p++;
                int r = rx_escape(x, &hi, &named);
                if (r < 0) return -1;
                if (named) return rx_fail(x, "pattern: class range ends in a class escape");
            } else if (rx_cp(x, &hi)) return -1;
            if (hi < lo) return rx_fail(x, "pattern: class range out of order");
        }
        cls_add(x, c, lo, hi);
    }
    cls_norm(x, c, neg);
    int n = rx_node(x, RA_CLS, -1, -1);
    if (n >= 0) x->ast[n].cls = c;
    return n;
}

static int rx_alt(rxc *x);

static int rx_atom(rxc *x) {
    char ch = *x->p;
    if (ch == '(') {
        x->p++;
        if (x->p < x->end && *x->p == '?') {
            x->p++;
            if (x->p < x->end && *x->p == ':') x->p++;
            else if (x->p < x->end && *x->p == '<' && x->p + 1 < x->end && x->p[1] != '=' && x->p[1] != '!') {
                while (x->p < x->end && *x->p != '>') x->p++;
                if (x->p >= x->end) return rx_fail(x, "pattern: bad group name");
                x->p++;
            } else return rx_fail(x, "pattern: lookahead/lookbehind assertions are not supported");
        }
        if (++x->depth > 200) return rx_fail(x, "pattern nested too deeply");
        int a = rx_alt(x);
        x->depth--;
        if (a < 0) return -1;
        if (x->p >= x->end || *x->p != ')') return rx_fail(x, "pattern: missing ')'");
        x->p++;
        return a;
    }
    if (ch == '[') { x->p++; return rx_class(x); }
    if (ch == '^') { x->p++; return rx_node(x, RA_BOL, -1, -1); }
    if (ch == '$') { x->p++; return rx_node(x, RA_EOL, -1, -1); }
    int c = cls_new(x);
    if (c < 0) return -1;
    if (ch == '.') {
        x->p++;
        cls_add(x, c, 10, 10); cls_add(x, c, 13, 13); cls_add(x, c, 0x2028, 0x2029);
        cls_norm(x, c, true);
    } else if (ch == '\\') {
        x->p++;
        uint32_t cp = 0;
        char named = 0;
        int r = rx_escape(x, &cp, &named);
        if (r < 0) return -1;
        if (named) add_named(x, c, named);
        else cls_add(x, c, cp, cp);
        cls_norm(x, c, named >= 'A' && named <= 'Z');
    } else {
        if (ch == '*' || ch == '+' || ch == '?' || ch == '{' || ch == ')' || ch == ']' || ch == '}' || ch == '|')
            if (ch != ']' && ch != '}') return rx_fail(x, "pattern: nothing to repeat or unbalanced '%c'", ch);
        uint32_t cp = 0;
        if (rx_cp(x, &cp)) return -1;
        cls_add(x, c, cp, cp);
        cls_norm(x, c, false);
    }
    int n = rx_node(x, RA_CLS, -1, -1);
    if (n >= 0) x->ast[n].cls = c;
    return n;
}

static bool rx_number(rxc *x, int *v) {
    if (x->p >= x->end || *x->p < '0' || *x->p > '9') return false;
    long n = 0;
    while (x->p < x->end && *x->p >= '0' && *x->p <= '9') { n = n * 10 + (*x->p++ - '0'); if (n > 100000) n = 100000; }
    *v = (int)n;
    return true;
}

static int rx_piece(rxc *x) {
    int a = rx_atom(x);
    if (a < 0) return -1;
    for (;;) {
        if (x->p >= x->end) return a;
        int mn, mx;
        char ch = *x->p;
        if (ch == '*') { mn = 0; mx = -1; x->p++; }
        else if (ch == '+') { mn = 1; mx = -1; x->p++; }
        else if (ch == '?') { mn = 0; mx = 1; x->p++; }
        else if (ch == '{') {
            const char *save = x->p++;
            if (!rx_number(x, &mn)) { x->p = save; return a; }
            mx = mn;
            if (x->p < x->end && *x->p == ',') {
                x->p++;
                if (!rx_number(x, &mx)) mx = -1;
            }
            if (x->p >= x->end || *x->p != '}') { x->p = save; return a; }
            x->p++;
            if (mx >= 0 && mx < mn) return rx_fail(x, "pattern: {m,n} with m > n");
            if (mn > 1000 || mx > 1000) return rx_fail(x, "pattern: repetition count over 1000");
        } else return a;
        if (x->p < x->end && *x->p == '?') x->p++; /* lazy: same language */
        int t = x->ast[a].type;
        if (t == RA_BOL || t == RA_EOL) return rx_fail(x, "pattern: quantified anchor");
        int r = rx_node(x, RA_REP, a, -1);
        if (r < 0) return -1;
        x->ast[r].min = mn;
        x->ast[r].max = mx;
        a = r;
    }
}

static int rx_seq(rxc *x) {
    int seq = rx_node(x, RA_EMPTY, -1, -1);
    while (seq >= 0 && x->p < x->end && *x->p != '|' && *x->p != ')') {
        int p = rx_piece(x);
        if (p < 0) return -1;
        seq = rx_node(x, RA_CAT, seq, p);
    }
    return seq;
}

static int rx_alt(rxc *x) {
    int a = rx_seq(x);
    while (a >= 0 && x->p < x->end && *x->p == '|') {
        x->p++;
        int b = rx_seq(x);
        if (b < 0) return -1;
        a = rx_node(x, RA_ALT, a, b);
    }
    return a;
}

static int nfa_new(rxc *x, int type, int out1, int out2, int cls) {
    if (x->n_nfa >= 60000) return rx_fail(x, "pattern too large (automaton over 60000 states)");
    if (x->n_nfa == x->cap_nfa) {
        int nc = x->cap_nfa ? 2 * x->cap_nfa : 256;
        rnst *n = realloc(x->nfa, (size_t)nc * sizeof *n);
        if (!n) return rx_oom(x);
        x->nfa = n; x->cap_nfa = nc;
    }
    x->nfa[x->n_nfa] = (rnst){type, out1, out2, cls};
    return x->n_nfa++;
}

/* Builds the NFA of AST node a followed by state next; returns the entry state. */
static int nfa_build(rxc *x, int a, int next) {
    if (next < 0) return -1;
    rast n = x->ast[a];
    switch (n.type) {
    case RA_EMPTY: return next;
    case RA_CLS: return nfa_new(x, RN_CHAR, next, -1, n.cls);
    case RA_BOL: return nfa_new(x, RN_BOL, next, -1, -1);
    case RA_EOL: return nfa_new(x, RN_EOL, next, -1, -1);
    case RA_CAT: return nfa_build(x, n.a, nfa_build(x, n.b, next));
    case RA_ALT: {
        int l = nfa_build(x, n.a, next), r = nfa_build(x, n.b, next);
        return l < 0 || r < 0 ? -1 : nfa_new(x, RN_SPLIT, l, r, -1);
    }
    case RA_REP: {
        int cur;
        if (n.max < 0) {
            int loop = nfa_new(x, RN_SPLIT, -1, next, -1);
            if (loop < 0) return -1;
            int body = nfa_build(x, n.a, loop);
            if (body < 0) return -1;
            x->nfa[loop].out1 = body;
            cur = loop;
        } else {
            cur = next;
            for (int i = 0; i < n.max - n.min && cur >= 0; i++) {
                int body = nfa_build(x, n.a, cur);
                cur = body < 0 ? -1 : nfa_new(x, RN_SPLIT, body, next, -1);
            }
        }
        for (int i = 0; i < n.min && cur >= 0; i++) cur = nfa_build(x, n.a, cur);
        return cur;
    }
    }
    return -1;
}

/* ---- subset construction ---- */

typedef struct dset { uint64_t *bits; int words; } dset;

typedef struct dbuild {
    rxc *x;
    int words;
    uint64_t *sets;          /* n * words */
    int n, cap;
    int *hash; int hcap;     /* open addressing of state ids, -1 empty */
    redge *edges; int n_edges, cap_edges;
    int *first;
    unsigned char *accept;
} dbuild;

static void closure(rxc *x, uint64_t *set, int s, bool at_start, bool at_end, int *stack) {
    int sp = 0;
    stack[sp++] = s;
    while (sp) {
        int t = stack[--sp];
        --x->budget->left;
        if (t < 0 || (set[t >> 6] >> (t & 63) & 1)) continue;
        set[t >> 6] |= 1ull << (t & 63);
        const rnst *n = &x->nfa[t];
        if (n->type == RN_SPLIT) { stack[sp++] = n->out1; stack[sp++] = n->out2; }
        else if (n->type == RN_EPS) stack[sp++] = n->out1;
        else if (n->type == RN_BOL && at_start) stack[sp++] = n->out1;
        else if (n->type == RN_EOL && at_end) stack[sp++] = n->out1;
    }
}

static uint64_t set_hash(const uint64_t *s, int w) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < w; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h ^ h >> 29;
}

/* Finds or adds the DFA state of a closed set. -1 on overflow. */
static int dstate(dbuild *b, const uint64_t *set) {
    if (b->n * 2 >= b->hcap) {
        int nc = b->hcap ? 2 * b->hcap : 1024;
        int *nh = malloc((size_t)nc * sizeof *nh);
        if (!nh) return -1;
        for (int i = 0; i < nc; i++) nh[i] = -1;
        for (int i = 0; i < b->n; i++) {
            uint64_t h = set_hash(b->sets + (size_t)i * b->words, b->words);
            int k = (int)(h & (uint64_t)(nc - 1));
            while (nh[k] >= 0) k = (k + 1) & (nc - 1);
            nh[k] = i;
        }
        free(b->hash);
        b->hash = nh;
        b->hcap = nc;
    }
    uint64_t h = set_hash(set, b->words);
    int k = (int)(h & (uint64_t)(b->hcap - 1));
    while (b->hash[k] >= 0) {
        if (!memcmp(b->sets + (size_t)b->hash[k] * b->words, set, (size_t)b->words * 8)) return b->hash[k];
        k = (k + 1) & (b->hcap - 1);
    }
    if (b->n >= 4000) return -1;
    if (b->n == b->cap) {
        int nc = b->cap ? 2 * b->cap : 64;
        uint64_t *ns = realloc(b->sets, (size_t)nc * b->words * 8);
        if (!ns) return -1;
        b->sets = ns;
        b->cap = nc;
    }
    memcpy(b->sets + (size_t)b->n * b->words, set, (size_t)b->words * 8);
    b->hash[k] = b->n;
    return b->n++;
}

static int push_edge(dbuild *b, uint32_t lo, uint32_t hi, int to) {
    if (b->n_edges && b->edges[b->n_edges - 1].to == to && b->edges[b->n_edges - 1].hi + 1 == lo &&
        b->edges[b->n_edges - 1].lo <= lo) {
        b->edges[b->n_edges - 1].hi = hi;
        return 0;
    }
    if (b->n_edges == b->cap_edges) {
        int nc = b->cap_edges ? 2 * b->cap_edges : 256;
        redge *ne = realloc(b->edges, (size_t)nc * sizeof *ne);
        if (!ne) return -1;
        b->edges = ne;
        b->cap_edges = nc;
    }
    b->edges[b->n_edges++] = (redge){lo, hi, to};
    return 0;
}

static int u32cmp(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void dfa_free(rdfa *d) {
    if (!d) return;
    free(d->first); free(d->edges); free(d->accept); free(d->dist); free(d->next_cp);
    free(d);
}

/* Keeps only states from which an accepting state is reachable; computes the distances. */
static rdfa *dfa_prune(int n, const int *first, const redge *edges, const unsigned char *accept) {
    int *dist = malloc((size_t)n * sizeof *dist);
    uint32_t *ncp = malloc((size_t)n * sizeof *ncp);
    if (!dist || !ncp) { free(dist); free(ncp); return NULL; }
    for (int i = 0; i < n; i++) { dist[i] = accept[i] ? 0 : -1; ncp[i] = 0; }
    /* shortest distances to acceptance: a breadth-first search over the reversed edges */
    int n_e = first[n], *rfirst = calloc((size_t)n + 1, sizeof *rfirst), *rsrc = malloc(((size_t)n_e + 1) * sizeof *rsrc);
    int *queue = malloc((size_t)n * sizeof *queue);
    if (!rfirst || !rsrc || !queue) { free(rfirst); free(rsrc); free(queue); free(dist); free(ncp); return NULL; }
    for (int e = 0; e < n_e; e++) rfirst[edges[e].to + 1]++;
    for (int i = 0; i < n; i++) rfirst[i + 1] += rfirst[i];
    for (int s = 0; s < n; s++)
        for (int e = first[s]; e < first[s + 1]; e++) rsrc[rfirst[edges[e].to]++] = s;
    for (int i = n; i > 0; i--) rfirst[i] = rfirst[i - 1];
    rfirst[0] = 0;
    int qh = 0, qt = 0;
    for (int i = 0; i < n; i++) if (accept[i]) queue[qt++] = i;
    while (qh < qt) {
        int t = queue[qh++];
        for (int k = rfirst[t]; k < rfirst[t + 1]; k++)
            if (dist[rsrc[k]] < 0) { dist[rsrc[k]] = dist[t] + 1; queue[qt++] = rsrc[k]; }
    }
    free(rfirst); free(rsrc); free(queue);
    /* a code point on a shortest way: a printable ASCII character that needs no escape when one
     * is there (a lowercase letter first) */
    for (int s = 0; s < n; s++) {
        int best = 3;
        for (int e = first[s]; e < first[s + 1] && dist[s] > 0; e++) {
            if (dist[edges[e].to] != dist[s] - 1) continue;
            uint32_t cp = edges[e].lo;
            int rank = 2;
            for (uint32_t c = 'a'; c <= 'z' && rank > 0; c++) if (c >= edges[e].lo && c <= edges[e].hi) { cp = c; rank = 0; }
            for (uint32_t c = 0x20; c < 0x7f && rank > 1; c++)
                if (c >= edges[e].lo && c <= edges[e].hi && c != '"' && c != '\\') { cp = c; rank = 1; }
            if (rank < best) { best = rank; ncp[s] = cp; }
        }
    }
    if (dist[0] < 0) { free(dist); free(ncp); return NULL; }
    int *map = malloc((size_t)n * sizeof *map);
    rdfa *d = calloc(1, sizeof *d);
    if (!map || !d) { free(map); free(d); free(dist); free(ncp); return NULL; }
    int m = 0;
    for (int i = 0; i < n; i++) map[i] = dist[i] >= 0 ? m++ : -1;
    d->n = m;
    d->first = malloc((size_t)(m + 1) * sizeof *d->first);
    d->edges = malloc((size_t)(first[n] + 1) * sizeof *d->edges);
    d->accept = malloc((size_t)m);
    d->dist = malloc((size_t)m * sizeof *d->dist);
    d->next_cp = malloc((size_t)m * sizeof *d->next_cp);
    if (!d->first || !d->edges || !d->accept || !d->dist || !d->next_cp) { free(map); free(dist); free(ncp); dfa_free(d); return NULL; }
    int ne = 0;
    for (int s = 0; s < n; s++) {
        if (map[s] < 0) continue;
        int k = map[s];
        d->first[k] = ne;
        d->accept[k] = accept[s];
        d->dist[k] = dist[s];
        d->next_cp[k] = ncp[s];
        for (int e = first[s]; e < first[s + 1]; e++)
            if (map[edges[e].to] >= 0) { d->edges[ne] = edges[e]; d->edges[ne++].to = map[edges[e].to]; }
    }
    d->first[m] = ne;
    free(map); free(dist); free(ncp);
    return d;
}

/* The DFA of a parsed NFA (start state s0, match state). NULL + error. */
static rdfa *dfa_from_nfa(rxc *x, int s0, int match) {
    dbuild b = {0};
    b.x = x;
    b.words = (x->n_nfa + 63) / 64;
    int *stack = malloc((size_t)(x->n_nfa * 2 + 2) * sizeof *stack);
    uint64_t *tmp = calloc((size_t)b.words, 8), *acc = calloc((size_t)b.words, 8), *cur = calloc((size_t)b.words, 8);
    uint32_t *bounds = NULL;
    int cap_bounds = 0;
    rdfa *d = NULL;
    bool ok = stack && tmp && acc && cur;
    if (ok) {
        closure(x, tmp, s0, true, false, stack);
        ok = dstate(&b, tmp) == 0;
    }
    int cap_first = 0;
    for (int s = 0; ok && s < b.n; s++) {
        if (s + 2 > cap_first) {
            cap_first = 2 * (s + 2);
            int *nf = realloc(b.first, (size_t)cap_first * sizeof *nf);
            unsigned char *na = realloc(b.accept, (size_t)cap_first);
            if (nf) b.first = nf;
            if (na) b.accept = na;
            if (!nf || !na) { ok = false; break; }
        }
        b.first[s] = b.n_edges;
        x->budget->left -= 4L * x->n_nfa;
        if (rx_spent(x->budget)) { rx_fail(x, "pattern too costly to compile (DFA construction over its budget)"); ok = false; break; }
        memcpy(cur, b.sets + (size_t)s * b.words, (size_t)b.words * 8); /* dstate may move b.sets */
        const uint64_t *set = cur;
        /* accepting: the end assertions lead to the match state */
        memset(acc, 0, (size_t)b.words * 8);
        for (int t = 0; t < x->n_nfa; t++)
            if (set[t >> 6] >> (t & 63) & 1) closure(x, acc, t, s == 0, true, stack);
        b.accept[s] = acc[match >> 6] >> (match & 63) & 1;
        /* the elementary intervals of the classes leaving this set */
        int nb = 0;
        for (int t = 0; t < x->n_nfa; t++) {
            if (!(set[t >> 6] >> (t & 63) & 1) || x->nfa[t].type != RN_CHAR) continue;
            const rcls *c = &x->cls[x->nfa[t].cls];
            if (nb + 2 * c->n > cap_bounds) {
                cap_bounds = 2 * (nb + 2 * c->n) + 16;
                uint32_t *nbnd = realloc(bounds, (size_t)cap_bounds * sizeof *nbnd);
                if (!nbnd) { ok = false; break; }
                bounds = nbnd;
            }
            for (int i = 0; i < c->n; i++) { bounds[nb++] = c->r[i].lo; bounds[nb++] = c->r[i].hi + 1; }
        }
        if (!ok) break;
        qsort(bounds, (size_t)nb, sizeof *bounds, u32cmp);
        for (int i = 0; i + 1 < nb && ok; i++) {
            if (bounds[i] == bounds[i + 1]) continue;
            x->budget->left -= x->n_nfa;
            if (x->budget->left < 0) { rx_fail(x, "pattern too costly to compile (DFA construction over its budget)"); ok = false; break; }
            uint32_t lo = bounds[i], hi = bounds[i + 1] - 1;
            memset(tmp, 0, (size_t)b.words * 8);
            bool any = false;
            for (int t = 0; t < x->n_nfa; t++) {
                if (!(set[t >> 6] >> (t & 63) & 1) || x->nfa[t].type != RN_CHAR) continue;
                const rcls *c = &x->cls[x->nfa[t].cls];
                for (int r = 0; r < c->n; r++)
                    if (c->r[r].lo <= lo && lo <= c->r[r].hi) { closure(x, tmp, x->nfa[t].out1, false, false, stack); any = true; break; }
            }
            if (!any) continue;
            int to = dstate(&b, tmp);
            if (to < 0) { rx_fail(x, "pattern too complex (DFA over 4000 states)"); ok = false; break; }
            if (push_edge(&b, lo, hi, to)) ok = false;
        }
    }
    if (ok) {
        b.first[b.n] = b.n_edges;
        d = dfa_prune(b.n, b.first, b.edges, b.accept);
        if (!d) rx_fail(x, "pattern can never match (or out of memory)");
    } else if (!x->failed) rx_oom(x);
    free(stack); free(tmp); free(acc); free(cur); free(bounds);
    free(b.sets); free(b.hash); free(b.edges); free(b.first); free(b.accept);
    return d;
}

/* A compiled pattern without lookarounds: "contains a match" (JSON Schema's rule) unless anchored. */
static rdfa *regex_compile1(const char *pat, size_t len, lfm2c_error *err, rxbudget *budget) {
    rxc x = {0};
    x.budget = budget;
    x.p = pat;
    x.end = pat + len;
    x.err = err;
    rdfa *d = NULL;
    int ast = rx_alt(&x);
    if (ast >= 0 && x.p < x.end) ast = rx_fail(&x, "pattern: unbalanced ')'");
    if (ast >= 0) {
        /* .* P .* with the anchors as assertions */
        int any = cls_new(&x);
        if (any >= 0) { cls_add(&x, any, 0, 0x10FFFF); cls_norm(&x, any, false); }
        int match = nfa_new(&x, RN_MATCH, -1, -1, -1);
        int tail = nfa_new(&x, RN_SPLIT, -1, match, -1);
        if (any >= 0 && match >= 0 && tail >= 0) {
            int t1 = nfa_new(&x, RN_CHAR, tail, -1, any);
            if (t1 >= 0) x.nfa[tail].out1 = t1;
            int body = nfa_build(&x, ast, tail);
            int head = body >= 0 ? nfa_new(&x, RN_SPLIT, -1, body, -1) : -1;
            if (head >= 0) {
                int h1 = nfa_new(&x, RN_CHAR, head, -1, any);
                if (h1 >= 0) { x.nfa[head].out1 = h1; d = dfa_from_nfa(&x, head, match); }
            }
        }
    }
    free(x.ast);
    for (int i = 0; i < x.n_cls; i++) free(x.cls[i].r);
    free(x.cls);
    free(x.nfa);
    return d;
}

static rdfa *dfa_product(const rdfa *a, const rdfa *b, rxbudget *budget);
static rdfa *dfa_complement(const rdfa *a, rxbudget *budget);

/* The end of a group that opens at p ('('), or NULL: escapes and classes are skipped. */
static const char *group_end(const char *p, const char *end) {
    int depth = 0;
    bool cls = false;
    for (; p < end; p++) {
        if (*p == '\\') { p++; continue; }
        if (cls) { if (*p == ']') cls = false; continue; }
        if (*p == '[') cls = true;
        else if (*p == '(') depth++;
        else if (*p == ')' && --depth == 0) return p;
    }
    return NULL;
}

/* A pattern: lookaheads right after a leading '^' ("^(?!\\.)(?=.*\\d)REST") become
 * intersections: REST's language with X.* for (?=X), with the complement of X.* for (?!X).
 * Lookarounds anywhere else stay refused (by the parser). */
static rdfa *regex_compile(const char *pat, size_t len, lfm2c_error *err, rxbudget *budget) {
    const char *end = pat + len, *p = pat;
    if (len < 4 || pat[0] != '^' || pat[1] != '(' || pat[2] != '?' || (pat[3] != '=' && pat[3] != '!'))
        return regex_compile1(pat, len, err, budget);
    p = pat + 1;
    const char *la[16];
    int n_la = 0;
    while (p + 3 < end && p[0] == '(' && p[1] == '?' && (p[2] == '=' || p[2] == '!')) {
        const char *e = group_end(p, end);
        if (!e) { lfm2c_set_error(err, LFM2C_EINVAL, "pattern: missing ')'"); return NULL; }
        if (n_la == 16) { lfm2c_set_error(err, LFM2C_EINVAL, "pattern: more than 16 lookaheads"); return NULL; }
        la[n_la++] = p;
        p = e + 1;
    }
    /* the rest, anchored */
    size_t rl = (size_t)(end - p);
    char *rest = malloc(rl + 2);
    if (!rest) { lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"); return NULL; }
    rest[0] = '^';
    memcpy(rest + 1, p, rl);
    rest[rl + 1] = 0;
    rdfa *d = regex_compile1(rest, rl + 1, err, budget);
    free(rest);
    for (int i = 0; i < n_la && d; i++) {
        const char *e = group_end(la[i], end);
        size_t bl = (size_t)(e - (la[i] + 3));
        char *body = malloc(bl + 6);
        if (!body) { dfa_free(d); lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"); return NULL; }
        memcpy(body, "^(?:", 4);
        memcpy(body + 4, la[i] + 3, bl);
        memcpy(body + 4 + bl, ")", 2);
        rdfa *x = regex_compile1(body, bl + 5, err, budget);
        free(body);
        if (!x) { dfa_free(d); return NULL; }
        if (la[i][2] == '!') {
            rdfa *nx = dfa_complement(x, budget);
            dfa_free(x);
            if (!nx) { dfa_free(d); lfm2c_set_error(err, LFM2C_EINVAL, "pattern: a negative lookahead excludes every string"); return NULL; }
            x = nx;
        }
        rdfa *r = dfa_product(d, x, budget);
        dfa_free(d);
        dfa_free(x);
        d = r;
        if (!d) lfm2c_set_error(err, LFM2C_EINVAL, "%s", budget->left < 0 ? "pattern too costly to compile (DFA construction over its budget)"
                                                                        : "pattern: the lookaheads leave no string that matches");
    }
    return d;
}

/* Intersection of two DFAs (a pattern and a format). */
static rdfa *dfa_product(const rdfa *a, const rdfa *b, rxbudget *budget) {
    int cap = 64, n = 1, *pa = malloc((size_t)cap * sizeof(int)), *pb = malloc((size_t)cap * sizeof(int));
    int *first = NULL;
    unsigned char *acc = NULL;
    redge *edges = NULL;
    int n_edges = 0, cap_edges = 0;
    rdfa *d = NULL;
    bool ok = pa && pb;
    if (ok) { pa[0] = 0; pb[0] = 0; }
    for (int s = 0; ok && s < n; s++) {
        int *nf = realloc(first, (size_t)(s + 2) * sizeof *nf);
        unsigned char *na = realloc(acc, (size_t)(s + 1));
        if (nf) first = nf;
        if (na) acc = na;
        if (!nf || !na) { ok = false; break; }
        first[s] = n_edges;
        acc[s] = a->accept[pa[s]] && b->accept[pb[s]];
        for (int i = a->first[pa[s]]; i < a->first[pa[s] + 1] && ok; i++)
            for (int j = b->first[pb[s]]; j < b->first[pb[s] + 1]; j++) {
                uint32_t lo = a->edges[i].lo > b->edges[j].lo ? a->edges[i].lo : b->edges[j].lo;
                uint32_t hi = a->edges[i].hi < b->edges[j].hi ? a->edges[i].hi : b->edges[j].hi;
                if (lo > hi) continue;
                int ta = a->edges[i].to, tb = b->edges[j].to, to = -1;
                budget->left -= n;
                if (budget->left < 0) { ok = false; break; }
                for (int k = 0; k < n; k++) if (pa[k] == ta && pb[k] == tb) { to = k; break; }
                if (to < 0) {
                    if (n >= 4000) { ok = false; break; }
                    if (n == cap) {
                        cap *= 2;
                        int *x1 = realloc(pa, (size_t)cap * sizeof(int)), *x2 = realloc(pb, (size_t)cap * sizeof(int));
                        if (x1) pa = x1;
                        if (x2) pb = x2;
                        if (!x1 || !x2) { ok = false; break; }
                    }
                    pa[n] = ta; pb[n] = tb; to = n++;
                }
                if (n_edges == cap_edges) {
                    cap_edges = cap_edges ? 2 * cap_edges : 256;
                    redge *ne = realloc(edges, (size_t)cap_edges * sizeof *ne);
                    if (!ne) { ok = false; break; }
                    edges = ne;
                }
                edges[n_edges++] = (redge){lo, hi, to};
            }
    }
    if (ok) {
        /* edges of a state are in a's order, then b's: sort each state's list by lo */
        for (int s = 0; s < n; s++) {
            redge *e = edges + first[s];
            int m = (s + 1 < n ? first[s + 1] : n_edges) - first[s];
            for (int i = 1; i < m; i++)
                for (int j = i; j > 0 && e[j].lo < e[j - 1].lo; j--) { redge t = e[j]; e[j] = e[j - 1]; e[j - 1] = t; }
        }
        first[n] = n_edges;
        d = dfa_prune(n, first, edges, acc);
    }
    free(pa); free(pb); free(first); free(acc); free(edges);
    return d;
}

/* The complement of a DFA over all code points but the surrogates: a sink state takes the code
 * points a state has no edge for, acceptance flips. NULL when empty or out of memory. */
static rdfa *dfa_complement(const rdfa *a, rxbudget *budget) {
    int n = a->n + 1, sink = a->n, cap = 2 * (a->first[a->n] + a->n) + 4, ne = 0;
    int *first = malloc((size_t)(n + 1) * sizeof *first);
    redge *edges = malloc((size_t)cap * sizeof *edges);
    unsigned char *acc = malloc((size_t)n);
    rdfa *d = NULL;
    if (first && edges && acc) {
        static const rxrange SIGMA[2] = {{0, 0xD7FF}, {0xE000, 0x10FFFF}};
        for (int s = 0; s < n; s++) {
            first[s] = ne;
            acc[s] = s == sink ? 1 : !a->accept[s];
            int e = s == sink ? 0 : a->first[s], end = s == sink ? 0 : a->first[s + 1];
            for (int k = 0; k < 2; k++) {
                uint32_t at = SIGMA[k].lo;
                for (; e < end && a->edges[e].lo <= SIGMA[k].hi; e++) {
                    if (a->edges[e].lo > at) edges[ne++] = (redge){at, a->edges[e].lo - 1, sink};
                    edges[ne++] = a->edges[e];
                    at = a->edges[e].hi + 1;
                }
                if (at <= SIGMA[k].hi) edges[ne++] = (redge){at, SIGMA[k].hi, sink};
            }
        }
        first[n] = ne;
        budget->left -= ne;
        if (budget->left >= 0) d = dfa_prune(n, first, edges, acc);
    }
    free(first); free(edges); free(acc);
    return d;
}

/* The edge of state s taking code point cp, -1 if none. */
static int dfa_next(const rdfa *d, int s, uint32_t cp) {
    int lo = d->first[s], hi = d->first[s + 1] - 1;
    while (lo <= hi) {
        int m = (lo + hi) / 2;
        if (d->edges[m].hi < cp) lo = m + 1;
        else if (d->edges[m].lo > cp) hi = m - 1;
        else return d->edges[m].to;
    }
    return -1;
}

/* Does some code point in [a, b] leave state s? */
static bool dfa_any(const rdfa *d, int s, uint32_t a, uint32_t b) {
    int lo = d->first[s], hi = d->first[s + 1] - 1, at = d->first[s + 1];
    while (lo <= hi) {
        int m = (lo + hi) / 2;
        if (d->edges[m].hi >= a) { at = m; hi = m - 1; } else lo = m + 1;
    }
    return at < d->first[s + 1] && d->edges[at].lo <= b;
}

/* Formats as patterns (each a subset of what RFC 3339 / 5321 / 3986 / 1123 / 4291 and the
 * common validators accept). */
static const char *format_pattern(const char *f) {
#define DATE "\\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\\d|30)|02-(?:0[1-9]|1\\d|2[0-8]))"
#define TIME "(?:[01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(?:\\.\\d{1,9})?(?:Z|[+-](?:[01]\\d|2[0-3]):[0-5]\\d)"
#define H16 "[0-9a-fA-F]{1,4}"
#define LABEL "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    static const struct { const char *name, *rx; } F[] = {
        {"date", "^" DATE "$"},
        {"time", "^" TIME "$"},
        {"date-time", "^" DATE "T" TIME "$"},
        {"duration", "^P(?:(?:\\d+Y(?:\\d+M)?(?:\\d+D)?|\\d+M(?:\\d+D)?|\\d+D)(?:T(?:\\d+H(?:\\d+M)?(?:\\d+S)?|\\d+M(?:\\d+S)?|\\d+S))?"
                     "|T(?:\\d+H(?:\\d+M)?(?:\\d+S)?|\\d+M(?:\\d+S)?|\\d+S)|\\d+W)$"},
        {"email", "^[A-Za-z0-9_+-]+(?:\\.[A-Za-z0-9_+-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z]{2,24}$"},
        {"uuid", "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"},
        {"uri", "^[A-Za-z][A-Za-z0-9+.-]{0,15}://(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,20}[A-Za-z0-9])?\\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,20}[A-Za-z0-9])?"
                "(?::\\d{1,5})?(?:/(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})*)*"
                "(?:\\?(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?(?:#(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?$"},
        {"hostname", "^" LABEL "(?:\\." LABEL ")*$"},
        {"ipv4", "^(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)(?:\\.(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)){3}$"},
        {"ipv6", "^(?:" H16 "(?::" H16 "){7}|::(?:" H16 "(?::" H16 "){0,6})?)$"},
        {"url", "^https?://[a-z0-9]+(?:-[a-z0-9]+)*(?:\\.[a-z0-9]+(?:-[a-z0-9]+)*)*\\.[a-z]{2,24}(?:/[A-Za-z0-9._~-]*)*$"},
        {"uri-reference", "^(?:[A-Za-z][A-Za-z0-9+.-]{0,15}:)?(?:/?[A-Za-z0-9._~-]+)*/?$"},
        {"iri", "^[A-Za-z][A-Za-z0-9+.-]{0,15}://[A-Za-z0-9](?:[A-Za-z0-9-]{0,20}[A-Za-z0-9])?(?:/[A-Za-z0-9._~-]*)*$"},
        {"iri-reference", "^(?:[A-Za-z][A-Za-z0-9+.-]{0,15}:)?(?:/?[A-Za-z0-9._~-]+)*/?$"},
        {"uri-template", "^[A-Za-z0-9/:._~-]*$"},
        {"json-pointer", "^(?:/(?:[^~/]|~[01])*)*$"},
        {"relative-json-pointer", "^(?:0|[1-9][0-9]{0,8})(?:#|(?:/(?:[^~/]|~[01])*)*)$"},
        {"regex", "^[A-Za-z0-9 _-]*$"},
        {"byte", "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"},
        {"idn-email", "^[A-Za-z0-9_+-]+(?:\\.[A-Za-z0-9_+-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z]{2,24}$"},
        {"idn-hostname", "^" LABEL "(?:\\." LABEL ")*$"},
        {"iso-time", "^" TIME "$"},
        {"iso-date-time", "^" DATE "T" TIME "$"},
    };
    for (size_t i = 0; i < sizeof F / sizeof *F; i++)
        if (!strcmp(f, F[i].name)) return F[i].rx;
    /* formats whose text is unchecked (ajv-formats: password, binary), and names outside the
     * standard and OpenAPI vocabularies, which validators treat as annotations */
    static const char *KNOWN[] = {"date", "time", "date-time", "duration", "email", "idn-email", "hostname",
        "idn-hostname", "ipv4", "ipv6", "uri", "uri-reference", "iri", "iri-reference", "uuid", "uri-template",
        "json-pointer", "relative-json-pointer", "regex", "url", "byte", "json-pointer-uri-fragment", NULL};
    for (int i = 0; KNOWN[i]; i++)
        if (!strcmp(f, KNOWN[i])) return NULL;
    return "";

#undef DATE
#undef TIME
#undef H16
#undef LABEL
}

/* ---- schema compilation ------------------------------------------------------------------ */

typedef struct gnode {
    int types;
    int n_enum;
    gstr *enums;             /* canonical compact JSON of each allowed value */
    int n_props;
    gstr *keys;              /* property names, JSON-escaped, without quotes */
    int *prop_node;
    uint64_t required;
    int additional;          /* node for other keys, -1: none allowed */
    int items;               /* node of array items after the prefix, -1: none */
    int n_prefix;
    int *prefix;             /* prefixItems nodes */
    bool unique;             /* uniqueItems over enum items */
    bool one_of;             /* a union from oneOf: its alternatives are made mutually exclusive */
    bool add_false;          /* the schema forbids keys outside 'properties' */
    bool rx_exact;           /* rx is exactly the schema's pattern (no format narrowing it) */
    rdfa *srx;               /* the schema's own pattern automaton (exact), or NULL; may be rx */
    int stypes;              /* the types the schema itself admits (T_ALL without 'type') */
    uint64_t banned;         /* declared properties never generated (oneOf exclusion) */
    uint64_t sreq;           /* the schema's own 'required' (required may grow by narrowing) */
    uint64_t dropped;        /* union: alternatives never generated (oneOf exclusion) */
    bool narrowed;           /* generates less than its schema admits (oneOf exclusion) */
    int cut_items;           /* arrays: at most this many items are generated (-1: no cut) */
    int min_props, max_props; /* declared properties written (-1: unbounded) */
    int not_node;            /* 'not': a node no generated value may validate against (-1: none) */
    int min_items, max_items, min_len, max_len; /* -1: unbounded */
    int n_any;
    int *any;                /* anyOf alternatives (a union node has nothing else) */
    int64_t ilo, ihi, imult; /* integers: inclusive bounds, multipleOf (0: none) */
    bool nbound;             /* numbers: bounds or frac_max apply */
    double lo, hi;
    bool lo_ex, hi_ex;
    int frac_max;            /* at most this many decimals, -1: any */
    rdfa *rx;                /* strings: pattern/format automaton */
} gnode;

typedef struct rxcache { int node, state, n; int *toks; } rxcache;

struct grammar {
    gnode *nodes;
    int n_nodes;
    int root;
    bool python;             /* literals True/False/None (tool-call arguments) */
    bool calls;              /* root is a tool-call list */
    bool parallel;
    int n_funcs;
    gstr *func_names;
    int *func_node;          /* parameters object node */
    unsigned char *finite;   /* per node: some finite value can be generated from it */
    unsigned char *mind;     /* per node: the fewest frames a value of it needs (255: more) */
    rxbudget budget;         /* while compiling: the patterns' work budget */
    /* mask cache: the plain-text tokens a pattern string accepts from each DFA state */
    pthread_mutex_t cache_mu;
    const struct grammar_vocab *cache_vocab;
    struct rxcache *cache;
    int n_cache, cap_cache;
    size_t cache_bytes;
};

#define I_LIMIT15 999999999999999LL
#define I_LIMIT16 9999999999999999LL

typedef struct refent { char *ptr; int node; } refent;
typedef struct compiler {
    grammar *g; lfm2c_error *err; int cap;
    json_t *root;            /* document $ref pointers resolve in */
    refent refs[MAX_REFS]; int n_refs;
    bool unsat;              /* the failure being returned is "no value satisfies this part" */
    bool not_dropped;        /* a part whose 'not' could not be enforced is never generated */
} compiler;

/* Sets the message of a schema that cannot be compiled; returns -1. */
static int fail(compiler *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(compiler *c, const char *fmt, ...) {
    char msg[sizeof c->err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lfm2c_set_error(c->err, LFM2C_EINVAL, "%s", msg);
    return -1;
}

/* A schema (or part) that no value satisfies: an error at the root; inside, compile_into turns
 * the part into a node that admits nothing, which is then never generated (prune_infinite). */
static int unsat(compiler *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int unsat(compiler *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_einval(c->err, fmt, ap);
    va_end(ap);
    c->unsat = true;
    return -1;
}

static int oom(compiler *c) {
    lfm2c_set_error(c->err, LFM2C_ENOMEM, "out of memory");
    return -1;
}

static int new_node(compiler *c) {
    grammar *g = c->g;
    if (g->n_nodes >= MAX_NODES) return fail(c, "schema too large (more than %d nodes)", MAX_NODES);
    if (g->n_nodes == c->cap) {
        int ncap = c->cap ? 2 * c->cap : 16;
        gnode *nn = realloc(g->nodes, (size_t)ncap * sizeof *nn);
        if (!nn) return oom(c);
        g->nodes = nn;
        c->cap = ncap;
    }
    gnode *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->types = T_ALL;
    n->additional = 0; /* node 0 is "any value" */
    n->items = 0;
    n->min_items = n->max_items = n->min_len = n->max_len = -1;
    n->ilo = -I_LIMIT15;
    n->ihi = I_LIMIT15;
    n->lo = -INFINITY;
    n->hi = INFINITY;
    n->frac_max = -1;
    n->stypes = T_ALL;
    n->cut_items = -1;
    n->min_props = n->max_props = -1;
    n->not_node = -1;
    return g->n_nodes++;
}

static gstr dup_str(const char *s, int n) {
    gstr r = {malloc((size_t)n + 1), n};
    if (r.s) { memcpy(r.s, s, (size_t)n); r.s[n] = 0; }
    return r;
}

/* Compact canonical JSON text of a value (enum/const); Python literals in tool calls. */
static int canonical(compiler *c, json_t *v, gstr *out) {
    if (c->g->python && (json_is_boolean(v) || json_is_null(v))) {
        const char *t = json_is_null(v) ? "None" : json_is_true(v) ? "True" : "False";
        *out = dup_str(t, (int)strlen(t));
        return out->s ? 0 : oom(c);
    }
    if (c->g->python && (json_is_array(v) || json_is_object(v)))
        return fail(c, "tool parameter enum/const values must be scalars");
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s) return oom(c);
    *out = dup_str(s, (int)strlen(s));
    free(s);
    return out->s ? 0 : oom(c);
}

static int escaped_key(compiler *c, const char *key, gstr *out) {
    json_t *js = json_string(key);
    if (!js) return fail(c, "property name is not valid UTF-8");
    char *s = json_dumps(js, JSON_ENCODE_ANY);
    json_decref(js);
    if (!s) return oom(c);
    *out = dup_str(s + 1, (int)strlen(s) - 2);
    free(s);
    return out->s ? 0 : oom(c);
}

static int type_bit(const char *t) {
    static const char *names[] = {"null", "boolean", "integer", "number", "string", "array", "object"};
    for (int i = 0; i < 7; i++)
        if (!strcmp(t, names[i])) return 1 << i;
    return 0;
}

static int get_count(compiler *c, json_t *s, const char *key, int *out) {
    json_t *v = json_object_get(s, key);
    if (!v) return 0;
    double d = json_number_value(v);
    if (!json_is_number(v) || d < 0 || d > 1000000 || d != floor(d))
        return fail(c, "schema '%s' must be a non-negative integer", key);
    *out = (int)d;
    return 0;
}

static const char *ANNOTATIONS[] = {"title", "description", "default", "examples", "$schema", "$id", "id",
    "$comment", "deprecated", "readOnly", "writeOnly", "$anchor", "$defs", "definitions", "discriminator",
    "example", "externalDocs", "xml", "$dynamicAnchor", "contentEncoding", "contentMediaType", "strict", NULL};

static bool is_annotation(const char *k) {
    if (!strncmp(k, "x-", 2)) return true;
    for (int i = 0; ANNOTATIONS[i]; i++)
        if (!strcmp(k, ANNOTATIONS[i])) return true;
    return false;
}

/* A local JSON pointer ("#", "#/$defs/Name", "#/definitions/a~1b"). NULL + error. */
static json_t *resolve_ref(compiler *c, const char *ref) {
    if (ref[0] != '#') { fail(c, "$ref '%s' is not a local reference ('#/...')", ref); return NULL; }
    json_t *cur = c->root;
    const char *p = ref + 1;
    while (*p) {
        if (*p != '/') { fail(c, "$ref '%s' is not a JSON pointer", ref); return NULL; }
        p++;
        char tok[256];
        int n = 0;
        while (*p && *p != '/' && n < 255) {
            char ch = *p++;
            if (ch == '~' && (*p == '0' || *p == '1')) ch = *p++ == '0' ? '~' : '/';
            else if (ch == '%' && hexval(p[0]) >= 0 && hexval(p[1]) >= 0) { ch = (char)(hexval(p[0]) * 16 + hexval(p[1])); p += 2; }
            tok[n++] = ch;
        }
        tok[n] = 0;
        if (json_is_object(cur)) cur = json_object_get(cur, tok);
        else if (json_is_array(cur)) cur = json_array_get(cur, (size_t)atoi(tok));
        else cur = NULL;
        if (!cur) { fail(c, "$ref '%s' points nowhere", ref); return NULL; }
    }
    return cur;
}

static bool only_annotations(json_t *s, const char *except) {
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v)
        if (strcmp(k, except) && !is_annotation(k)) return false;
    return true;
}

/* A copy of s without `key` and the annotations. */
static json_t *without(json_t *s, const char *key) {
    json_t *r = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v)
        if (strcmp(k, key) && !is_annotation(k)) json_object_set(r, k, v);
    return r;
}

static int merge_keys(compiler *c, json_t *dst, json_t *src, int depth);
static int merge_values(compiler *c, json_t *dst, json_t *src, int depth);
static int restrict_props(compiler *c, json_t *dst, json_t *side_props[2], json_t *side_add[2]);
static bool in_array(json_t *arr, const char *key);

/* allOf: merges src into dst (both objects; $ref at their top already resolved). */
static int merge_schema(compiler *c, json_t *dst, json_t *src, int depth) {
    if (depth > 16) return fail(c, "allOf nested too deeply");
    if (json_is_true(src)) return 0;
    if (json_is_false(src)) return unsat(c, "allOf with false can never be satisfied");
    if (!json_is_object(src)) return fail(c, "allOf members must be schemas");
    for (int guard = 0; json_object_get(src, "$ref"); guard++) {
        if (guard > 16) return fail(c, "$ref cycle inside allOf");
        json_t *t = resolve_ref(c, json_string_value(json_object_get(src, "$ref")) ? json_string_value(json_object_get(src, "$ref")) : "");
        if (!t) return -1;
        json_t *rest = without(src, "$ref");
        int r = merge_schema(c, dst, rest, depth + 1);
        json_decref(rest);
        if (r) return -1;
        src = t;
        if (!json_is_object(src)) return json_is_true(src) ? 0 : fail(c, "$ref target must be a schema");
    }
    /* what each side says of keys outside its own properties, before they are merged */
    json_t *side_props[2] = {json_object_get(dst, "properties"), json_object_get(src, "properties")};
    json_t *side_add[2] = {json_object_get(dst, "additionalProperties"), json_object_get(src, "additionalProperties")};
    for (int i = 0; i < 2; i++) {
        side_props[i] = json_is_object(side_props[i]) ? json_copy(side_props[i]) : json_object();
        json_incref(side_add[i]);
    }
    int r = merge_keys(c, dst, src, depth);
    if (!r) r = restrict_props(c, dst, side_props, side_add);
    for (int i = 0; i < 2; i++) { json_decref(side_props[i]); json_decref(side_add[i]); }
    return r;
}

/* After an allOf merge: a property one side does not declare is forbidden by that side's
 * additionalProperties false (dropped; an error when required) or must also satisfy its
 * additionalProperties schema. */
static int restrict_props(compiler *c, json_t *dst, json_t *side_props[2], json_t *side_add[2]) {
    json_t *props = json_object_get(dst, "properties");
    if (!json_is_object(props)) return 0;
    json_t *np = json_copy(props), *req = json_object_get(dst, "required");
    const char *k;
    json_t *v;
    json_object_foreach(props, k, v) {
        for (int i = 0; i < 2; i++) {
            if (!side_add[i] || json_is_true(side_add[i]) || json_object_get(side_props[i], k)) continue;
            if (json_is_false(side_add[i])) {
                if (json_is_array(req) && in_array(req, k)) {
                    json_decref(np);
                    return unsat(c, "allOf: required property '%s' is forbidden by 'additionalProperties': false", k);
                }
                json_object_del(np, k);
                break;
            }
            json_t *cur = json_object_get(np, k);
            json_object_set_new(np, k, json_pack("{s:[O,O]}", "allOf", cur, side_add[i]));
        }
    }
    json_object_set_new(dst, "properties", np);
    return 0;
}

/* The keyword-by-keyword merge of src into dst. */
/* [{allOf:[a_i, {key: other}]} for each a_i of alts]: the conjunction of two unions, distributed. */
static json_t *distribute(json_t *alts, const char *key, json_t *other) {
    json_t *r = json_array();
    size_t i;
    json_t *a;
    json_array_foreach(alts, i, a) json_array_append_new(r, json_pack("{s:[O,{s:O}]}", "allOf", a, key, other));
    return r;
}

static int merge_keys(compiler *c, json_t *dst, json_t *src, int depth) {
    /* keywords that cannot be merged as values, conjoined instead: two if/then/else (the second
     * inside both branches of the first), two not (not anyOf), two anyOf / oneOf (distributed) */
    json_t *sif = json_object_get(src, "if"), *dif = json_object_get(dst, "if"), *own = NULL;
    if (sif && dif && !json_equal(sif, dif)) {
        json_t *g2 = json_pack("{s:O}", "if", sif);
        if (json_object_get(src, "then")) json_object_set(g2, "then", json_object_get(src, "then"));
        if (json_object_get(src, "else")) json_object_set(g2, "else", json_object_get(src, "else"));
        json_t *t1 = json_object_get(dst, "then"), *e1 = json_object_get(dst, "else");
        json_object_set_new(dst, "then", json_pack("{s:[O,O]}", "allOf", t1 ? t1 : json_true(), g2));
        json_object_set_new(dst, "else", json_pack("{s:[O,O]}", "allOf", e1 ? e1 : json_true(), g2));
        json_decref(g2);
        src = own = json_copy(src);
        json_object_del(own, "if");
        json_object_del(own, "then");
        json_object_del(own, "else");
    }
    static const char *UNIONS[3] = {"not", "anyOf", "oneOf"};
    for (int u = 0; u < 3; u++) {
        json_t *sv = json_object_get(src, UNIONS[u]), *dv = json_object_get(dst, UNIONS[u]);
        if (!sv || !dv || json_equal(sv, dv)) continue;
        if (u == 0) json_object_set_new(dst, "not", json_pack("{s:[O,O]}", "anyOf", dv, sv));
        else if (json_is_array(dv)) json_object_set_new(dst, UNIONS[u], distribute(dv, UNIONS[u], sv));
        else continue;
        if (!own) src = own = json_copy(src);
        json_object_del(own, UNIONS[u]);
    }
    int r = merge_values(c, dst, src, depth);
    json_decref(own);
    return r;
}

static int merge_values(compiler *c, json_t *dst, json_t *src, int depth) {
    const char *k;
    json_t *v;
    json_object_foreach(src, k, v) {
        if (is_annotation(k)) continue;
        if (!strcmp(k, "allOf") && json_is_array(v)) { /* a member's own allOf: its members merged in */
            size_t i;
            json_t *a;
            json_array_foreach(v, i, a) if (merge_schema(c, dst, a, depth + 1)) return -1;
            continue;
        }
        json_t *d = json_object_get(dst, k);
        if (!d) { json_object_set(dst, k, v); continue; }
        if (json_equal(d, v)) continue;
        if (!strcmp(k, "allOf")) {
            json_t *a = json_copy(d);
            json_array_extend(a, v);
            json_object_set_new(dst, k, a);
        } else if (!strcmp(k, "properties") && json_is_object(d) && json_is_object(v)) {
            json_t *np = json_copy(d);
            const char *pk;
            json_t *pv;
            json_object_foreach(v, pk, pv) {
                json_t *old = json_object_get(np, pk);
                if (!old) json_object_set(np, pk, pv);
                else json_object_set_new(np, pk, json_pack("{s:[O,O]}", "allOf", old, pv));
            }
            json_object_set_new(dst, k, np);
        } else if (!strcmp(k, "required") && json_is_array(d) && json_is_array(v)) {
            json_t *nr = json_copy(d);
            size_t i;
            json_t *r;
            json_array_foreach(v, i, r) {
                bool have = false;
                for (size_t j = 0; j < json_array_size(nr); j++) if (json_equal(json_array_get(nr, j), r)) have = true;
                if (!have) json_array_append(nr, r);
            }
            json_object_set_new(dst, k, nr);
        } else if (!strcmp(k, "type")) {
            int a = 0, b = 0;
            json_t *arr[2] = {d, v};
            int *bits[2] = {&a, &b};
            for (int i = 0; i < 2; i++) {
                if (json_is_string(arr[i])) *bits[i] = type_bit(json_string_value(arr[i]));
                else { size_t j; json_t *t; json_array_foreach(arr[i], j, t) *bits[i] |= json_is_string(t) ? type_bit(json_string_value(t)) : 0; }
                if (*bits[i] & T_NUM) *bits[i] |= T_INT;
            }
            int m = a & b;
            if (!m) return unsat(c, "allOf: the types do not intersect");
            json_t *t = json_array();
            static const char *names[] = {"null", "boolean", "integer", "number", "string", "array", "object"};
            for (int i = 0; i < 7; i++)
                if (m & 1 << i && !(i == 2 && (m & T_NUM))) json_array_append_new(t, json_string(names[i]));
            json_object_set_new(dst, k, t);
        } else if (!strcmp(k, "minimum") || !strcmp(k, "exclusiveMinimum") || !strcmp(k, "minLength") ||
                   !strcmp(k, "minItems")) {
            if (json_is_number(d) && json_is_number(v)) { if (json_number_value(v) > json_number_value(d)) json_object_set(dst, k, v); }
            else return fail(c, "allOf: cannot merge '%s'", k);
        } else if (!strcmp(k, "maximum") || !strcmp(k, "exclusiveMaximum") || !strcmp(k, "maxLength") ||
                   !strcmp(k, "maxItems")) {
            if (json_is_number(d) && json_is_number(v)) { if (json_number_value(v) < json_number_value(d)) json_object_set(dst, k, v); }
            else return fail(c, "allOf: cannot merge '%s'", k);
        } else if (!strcmp(k, "items") || !strcmp(k, "additionalProperties")) {
            if (json_is_false(d) || json_is_false(v)) json_object_set_new(dst, k, json_false());
            else json_object_set_new(dst, k, json_pack("{s:[O,O]}", "allOf", d, v));
        } else if (!strcmp(k, "enum") && json_is_array(d) && json_is_array(v)) {
            json_t *ne = json_array();
            size_t i;
            json_t *e;
            json_array_foreach(d, i, e)
                for (size_t j = 0; j < json_array_size(v); j++)
                    if (json_equal(e, json_array_get(v, j))) { json_array_append(ne, e); break; }
            if (!json_array_size(ne)) { json_decref(ne); return unsat(c, "allOf: the enums do not intersect"); }
            json_object_set_new(dst, k, ne);
        } else {
            return fail(c, "allOf: cannot merge two different '%s'", k);
        }
    }
    return 0;
}

static int compile(compiler *c, json_t *s, int depth);
static int compile_into(compiler *c, json_t *s, int id, int depth);

static int compile_ref(compiler *c, const char *ref, int depth) {
    for (int i = 0; i < c->n_refs; i++)
        if (!strcmp(c->refs[i].ptr, ref)) return c->refs[i].node;
    if (c->n_refs >= MAX_REFS) return fail(c, "too many $ref targets");
    json_t *t = resolve_ref(c, ref);
    if (!t) return -1;
    int id = new_node(c);
    if (id < 0) return -1;
    char *p = strdup(ref);
    if (!p) return oom(c);
    c->refs[c->n_refs++] = (refent){p, id};
    return compile_into(c, t, id, depth + 1) < 0 ? -1 : id;
}

static int compile(compiler *c, json_t *s, int depth) {
    if (json_is_object(s)) {
        json_t *ref = json_object_get(s, "$ref");
        if (ref && only_annotations(s, "$ref")) {
            if (!json_is_string(ref)) return fail(c, "$ref must be a string");
            return compile_ref(c, json_string_value(ref), depth);
        }
    }
    int id = new_node(c);
    if (id < 0) return -1;
    return compile_into(c, s, id, depth);
}

/* Bounds and multipleOf of integers and numbers. */
static int compile_numeric(compiler *c, json_t *s, int id) {
#define N (c->g->nodes[id])
    double lo = -INFINITY, hi = INFINITY;
    bool lo_ex = false, hi_ex = false;
    json_t *v;
    if ((v = json_object_get(s, "minimum"))) { if (!json_is_number(v)) return fail(c, "'minimum' must be a number"); lo = json_number_value(v); }
    if ((v = json_object_get(s, "maximum"))) { if (!json_is_number(v)) return fail(c, "'maximum' must be a number"); hi = json_number_value(v); }
    if ((v = json_object_get(s, "exclusiveMinimum"))) {
        if (json_is_boolean(v)) lo_ex = json_is_true(v);
        else if (!json_is_number(v)) return fail(c, "'exclusiveMinimum' must be a number");
        else if (json_number_value(v) >= lo) { lo = json_number_value(v); lo_ex = true; }
    }
    if ((v = json_object_get(s, "exclusiveMaximum"))) {
        if (json_is_boolean(v)) hi_ex = json_is_true(v);
        else if (!json_is_number(v)) return fail(c, "'exclusiveMaximum' must be a number");
        else if (json_number_value(v) <= hi) { hi = json_number_value(v); hi_ex = true; }
    }
    int64_t K = 0;
    int d = 0;
    if ((v = json_object_get(s, "multipleOf"))) {
        double m = json_number_value(v);
        if (!json_is_number(v) || !(m > 0)) return fail(c, "'multipleOf' must be a positive number");
        double p = 1;
        for (d = 0; d <= 9; d++, p *= 10) {
            double k = m * p;
            if (fabs(k - nearbyint(k)) <= 1e-9 * k) break;
        }
        if (d > 9 || m * p > 1e15) return fail(c, "'multipleOf' %g is not supported (at most 9 decimals)", m);
        K = (int64_t)nearbyint(m * p);
        if (N.types & T_NUM) {
            if (d == 0) N.types &= ~T_NUM;
            else if (K == 1) N.frac_max = d;
            else return fail(c, "'multipleOf' %g on a number is supported only as an integer or 10^-n", m);
        }
    }
    /* numeric formats (OpenAPI's, as ajv-formats checks them): the integer ones make the value
     * an integer within their range; float/double are any number; others are annotations */
    json_t *fmt = json_object_get(s, "format");
    if (json_is_string(fmt)) {
        static const struct { const char *name; double lo, hi; } F[] = {
            {"int8", -128, 127}, {"int16", -32768, 32767}, {"int32", -2147483648.0, 2147483647.0},
            {"int64", -9223372036854775808.0, 9223372036854775807.0}, {"uint8", 0, 255}, {"uint16", 0, 65535},
            {"uint32", 0, 4294967295.0}, {"uint64", 0, 18446744073709551615.0}};
        for (size_t i = 0; i < sizeof F / sizeof *F; i++) {
            if (strcmp(json_string_value(fmt), F[i].name)) continue;
            N.types &= ~T_NUM;
            if (F[i].lo > lo || (F[i].lo == lo && lo_ex)) { lo = F[i].lo; lo_ex = false; }
            if (F[i].hi < hi || (F[i].hi == hi && hi_ex)) { hi = F[i].hi; hi_ex = false; }
        }
    }
    /* integers (bounds beyond what 16 digits can write clamp to the limit; none left: an error
     * below) */
    double ilo = lo_ex ? floor(lo) + 1 : ceil(lo), ihi = hi_ex ? ceil(hi) - 1 : floor(hi);
    double lim = (fabs(lo) >= 1e15 && isfinite(lo)) || (fabs(hi) >= 1e15 && isfinite(hi)) ? (double)I_LIMIT16 : (double)I_LIMIT15;
    N.ilo = ilo < -lim ? -(int64_t)lim : ilo > lim ? (int64_t)lim + 1 : (int64_t)ilo;
    N.ihi = ihi > lim ? (int64_t)lim : ihi < -lim ? -(int64_t)lim - 1 : (int64_t)ihi;
    if (K) {
        int64_t p10 = 1;
        for (int i = 0; i < d; i++) p10 *= 10;
        int64_t a = K, b = p10;
        while (b) { int64_t t = a % b; a = b; b = t; }
        N.imult = K / a;
    }
    N.lo = lo; N.hi = hi; N.lo_ex = lo_ex; N.hi_ex = hi_ex;
    N.nbound = isfinite(lo) || isfinite(hi) || N.frac_max >= 0;
    if ((N.types & (T_INT | T_NUM)) == T_INT && N.ilo > N.ihi)
        return fail(c, "no integer satisfies the schema's bounds (at most 16 digits are written): 'minimum'/'maximum'");
    if ((N.types & T_NUM) && (lo > hi || (lo == hi && (lo_ex || hi_ex))))
        return unsat(c, "no number satisfies the schema's bounds");
    /* bounded numbers are written with at most 15 significant digits (6 under a decimal
     * multipleOf) and no exponent */
    double nlim = N.frac_max >= 0 ? 999999.0 : 999999999999999.0;
    if ((N.types & T_NUM) && (lo > nlim || hi < -nlim))
        return fail(c, "number bounds beyond 15 digits are not supported: 'minimum'/'maximum'");
    return 0;
#undef N
}

static int compile_string(compiler *c, json_t *s, int id) {
#define N (c->g->nodes[id])
    if (get_count(c, s, "minLength", &N.min_len) || get_count(c, s, "maxLength", &N.max_len)) return -1;
    if (N.max_len >= 0 && N.min_len > N.max_len) return unsat(c, "minLength > maxLength");
    json_t *pat = json_object_get(s, "pattern"), *fmt = json_object_get(s, "format");
    if (pat && !json_is_string(pat)) return fail(c, "'pattern' must be a string");
    if (fmt && !json_is_string(fmt)) return fail(c, "'format' must be a string");
    const char *frx = fmt ? format_pattern(json_string_value(fmt)) : NULL;
    if (frx && !*frx) frx = NULL, fmt = NULL; /* an annotation */
    if (fmt && !frx)
        return fail(c, "schema 'format' \"%s\" is not supported", json_string_value(fmt));
    if (fmt && !strcmp(json_string_value(fmt), "hostname") && (N.max_len < 0 || N.max_len > 253)) N.max_len = 253;
    lfm2c_error rerr = {0};   /* the pattern's message, cut to 199 bytes inside the schema's */
    rdfa *a = NULL, *b = NULL;
    if (pat) {
        a = regex_compile(json_string_value(pat), json_string_length(pat), &rerr, &c->g->budget);
        if (!a) return fail(c, "schema 'pattern' %s: %.199s", json_string_value(pat), rerr.msg);
    }
    if (frx) {
        b = regex_compile(frx, strlen(frx), &rerr, &c->g->budget);
        if (!b) { dfa_free(a); return fail(c, "format %s: %.199s", json_string_value(fmt), rerr.msg); }
    }
    if (a && b) {
        N.rx = dfa_product(a, b, &c->g->budget);
        dfa_free(a);
        dfa_free(b);
        if (!N.rx && c->g->budget.left < 0)
            return fail(c, "schema 'pattern' %s: too costly to compile (DFA construction over its budget)", json_string_value(pat));
        if (!N.rx) return unsat(c, "schema 'pattern' and 'format' \"%s\" admit no common string", json_string_value(fmt));
    } else N.rx = a ? a : b;
    N.rx_exact = N.rx && !b;
    N.srx = N.rx_exact ? N.rx : NULL;
    return 0;
#undef N
}

static bool node_accepts(const grammar *g, int node, const char *text, size_t len);
static int prop_index(const gnode *n, const gstr *key);

/* Does the pattern DFA match the whole UTF-8 text (JSON Schema's "contains" rule is built in)? */
static bool rx_matches(const rdfa *d, const char *t) {
    const unsigned char *p = (const unsigned char *)t;
    int st = 0;
    while (*p) {
        uint32_t cp;
        int n = p[0] < 0x80 ? 1 : p[0] < 0xE0 ? 2 : p[0] < 0xF0 ? 3 : 4;
        cp = n == 1 ? p[0] : n == 2 ? p[0] & 0x1F : n == 3 ? p[0] & 0x0F : p[0] & 0x07;
        for (int i = 1; i < n; i++) { if (!p[i]) return false; cp = cp << 6 | (p[i] & 0x3F); }
        p += n;
        if ((st = dfa_next(d, st, cp)) < 0) return false;
    }
    return d->accept[st];
}

static bool in_array(json_t *arr, const char *key) {
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (json_is_string(v) && !strcmp(json_string_value(v), key)) return true;
    return false;
}

/* The schema of property `key`: its own (NULL: none) and every patternProperties schema whose
 * pattern matches it, as one allOf; with neither, additionalProperties' (NULL: forbidden).
 * A new reference. */
static json_t *prop_schema(compiler *c, json_t *own, const char *key, json_t *pp, rdfa **pdfa, json_t *add, bool *err) {
    json_t *all = json_array();
    if (own) json_array_append(all, own);
    const char *pk;
    json_t *ps;
    int i = 0;
    if (pp) json_object_foreach(pp, pk, ps) {
        if (rx_matches(pdfa[i], key)) json_array_append(all, ps);
        i++;
    }
    (void)c;
    *err = false;
    if (json_array_size(all) == 0) {
        json_decref(all);
        if (add && json_is_false(add)) return NULL;
        return add ? json_incref(add) : json_true();
    }
    if (json_array_size(all) == 1) { json_t *one = json_incref(json_array_get(all, 0)); json_decref(all); return one; }
    json_t *r = json_pack("{s:o}", "allOf", all);
    return r;
}

static int compile_object(compiler *c, json_t *s, int id, int depth) {
#define N (c->g->nodes[id])
    json_t *props = json_object_get(s, "properties"), *pp = json_object_get(s, "patternProperties");
    json_t *add = json_object_get(s, "additionalProperties"), *req = json_object_get(s, "required");
    if (props && !json_is_object(props)) return fail(c, "schema 'properties' must be an object");
    if (pp && !json_is_object(pp)) return fail(c, "schema 'patternProperties' must be an object");
    if (req && !json_is_array(req)) return fail(c, "schema 'required' must be an array");
    if (pp && !json_object_size(pp)) pp = NULL;
    json_t *deps[3] = {json_object_get(s, "dependentRequired"), json_object_get(s, "dependencies"),
                       json_object_get(s, "dependentSchemas")};
    static const char *DEP_NAMES[3] = {"dependentRequired", "dependencies", "dependentSchemas"};
    for (int k = 0; k < 3; k++) if (deps[k] && !json_is_object(deps[k])) return fail(c, "schema '%s' must be an object", DEP_NAMES[k]);
    /* required names: 'required', plus what a required property's dependencies require */
    json_t *reqs = json_array();
    size_t i;
    json_t *r;
    if (req) json_array_foreach(req, i, r) {
        if (!json_is_string(r)) { json_decref(reqs); return fail(c, "schema 'required' must list strings"); }
        if (!in_array(reqs, json_string_value(r))) json_array_append(reqs, r);
    }
    for (size_t at = 0; at < json_array_size(reqs); at++) {
        const char *key = json_string_value(json_array_get(reqs, at));
        for (int k = 0; k < 3; k++) {
            json_t *d = deps[k] ? json_object_get(deps[k], key) : NULL;
            if (!d) continue;
            if (json_is_array(d)) { json_array_foreach(d, i, r) if (json_is_string(r) && !in_array(reqs, json_string_value(r))) json_array_append(reqs, r); }
            else if (!json_is_true(d) && !(json_is_object(d) && only_annotations(d, ""))) {
                json_decref(reqs);
                return fail(c, "schema keyword '%s' is supported only for optional properties or as a list of names", DEP_NAMES[k]);
            }
        }
    }
    /* patterns */
    int n_pp = pp ? (int)json_object_size(pp) : 0, rc = 0;
    rdfa **pdfa = n_pp ? calloc((size_t)n_pp, sizeof *pdfa) : NULL;
    if (n_pp && !pdfa) { json_decref(reqs); return oom(c); }
    if (pp) {
        const char *pk;
        json_t *ps;
        int k = 0;
        json_object_foreach(pp, pk, ps) {
            lfm2c_error rerr = {0};
            if (!(pdfa[k++] = regex_compile(pk, strlen(pk), &rerr, &c->g->budget))) {
                rc = fail(c, "schema 'patternProperties' pattern %s: %.199s", pk, rerr.msg);
                break;
            }
        }
    }
    /* the properties written: every required one, then optional ones up to MAX_PROPS */
    json_t *names = json_array();
    bool cut = false;
    if (!rc && json_array_size(reqs) > MAX_PROPS) rc = fail(c, "more than %d required properties in one object", MAX_PROPS);
    if (!rc) {
        json_array_extend(names, reqs);
        const char *key;
        json_t *sub;
        if (props) json_object_foreach(props, key, sub) {
            if (in_array(names, key)) continue;
            if (json_array_size(names) >= MAX_PROPS) { cut = true; break; }
            json_array_append_new(names, json_string(key));
        }
    }
    /* minProperties past the declared names, where other keys are allowed: named ones */
    json_t *minp = json_object_get(s, "minProperties");
    if (!rc && json_is_number(minp) && !(add && json_is_false(add)) && !json_object_get(s, "propertyNames"))
        for (int k = 1; k <= MAX_PROPS && (double)json_array_size(names) < json_number_value(minp) &&
                        json_array_size(names) < MAX_PROPS; k++) {
            char name[32];
            snprintf(name, sizeof name, "property%d", k);
            if (!in_array(names, name) && !(props && json_object_get(props, name))) json_array_append_new(names, json_string(name));
        }
    int n = (int)json_array_size(names);
    if (!rc) {
        N.keys = calloc((size_t)n + 1, sizeof(gstr));
        N.prop_node = calloc((size_t)n + 1, sizeof(int));
        if (!N.keys || !N.prop_node) rc = oom(c);
    }
    for (int k = 0; !rc && k < n; k++) {
        const char *key = json_string_value(json_array_get(names, (size_t)k));
        bool perr;
        json_t *sub = prop_schema(c, props ? json_object_get(props, key) : NULL, key, pp, pdfa, add, &perr);
        if (!sub) { rc = unsat(c, "required property '%s' is forbidden by 'additionalProperties': false", key); break; }
        if (escaped_key(c, key, &N.keys[k])) { json_decref(sub); rc = -1; break; }
        N.n_props++;
        int child = compile(c, sub, depth + 1);
        json_decref(sub);
        if (child < 0) { rc = -1; break; }
        N.prop_node[k] = child;
        if (in_array(reqs, key)) N.required |= 1ull << k;
    }
    N.sreq = N.required;
    for (int k = 0; k < n_pp; k++) dfa_free(pdfa[k]);
    free(pdfa);
    json_decref(names);
    if (rc) { json_decref(reqs); return -1; }
    /* keys outside the declared ones */
    N.add_false = add && json_is_false(add) && !pp;
    if (get_count(c, s, "minProperties", &N.min_props) || get_count(c, s, "maxProperties", &N.max_props)) { json_decref(reqs); return -1; }
    if (add && json_is_false(add)) {
        N.additional = -1;
    } else if (pp || cut || N.max_props >= 0 || (!add && props) || (!add && json_array_size(reqs))) {
        N.additional = -1; /* declared properties only (the output stays valid) */
    } else if (add && !json_is_true(add)) {
        int child = compile(c, add, depth + 1);
        if (child < 0) { json_decref(reqs); return -1; }
        N.additional = child;
    }
    /* an optional property with dependencies is never written */
    for (int k = 0; k < 3; k++) {
        const char *key;
        json_t *d;
        if (deps[k]) json_object_foreach(deps[k], key, d) {
            if (in_array(reqs, key)) continue;
            gstr ek;
            if (escaped_key(c, key, &ek)) { json_decref(reqs); return -1; }
            int p = prop_index(&N, &ek);
            free(ek.s);
            if (p >= 0) N.banned |= 1ull << p;
            else N.additional = -1;
        }
    }
    json_decref(reqs);
    int n_req = __builtin_popcountll(N.required), n_free = N.n_props - __builtin_popcountll(N.banned & ~N.required);
    if (N.max_props >= 0 && n_req > N.max_props) return fail(c, "'maxProperties' is less than the required properties");
    if (N.min_props > n_free)
        return fail(c, "'minProperties' %d is more than the declared properties that can be written", N.min_props);
    if (N.max_props >= 0 && N.min_props > N.max_props) return fail(c, "'minProperties' > 'maxProperties'");
    json_t *pn = json_object_get(s, "propertyNames"), *pnt = json_is_object(pn) ? json_object_get(pn, "type") : NULL;
    if (pn && json_is_object(pn) && (!pnt || (json_is_string(pnt) && !strcmp(json_string_value(pnt), "string"))) &&
        only_annotations(pn, "type"))
        pn = NULL; /* every key is a string */
    if (pn && !json_is_true(pn)) { /* declared names that fail it are never written; no others */
        int check = compile(c, pn, depth + 1);
        if (check < 0) return -1;
        for (int k = 0; k < N.n_props; k++) {
            char *q = malloc((size_t)N.keys[k].n + 3);
            if (!q) return oom(c);
            q[0] = '"';
            memcpy(q + 1, N.keys[k].s, (size_t)N.keys[k].n);
            q[N.keys[k].n + 1] = '"';
            q[N.keys[k].n + 2] = 0;
            bool ok = node_accepts(c->g, check, q, (size_t)N.keys[k].n + 2);
            free(q);
            if (ok) continue;
            if (N.required >> k & 1) return fail(c, "required property '%.*s' fails 'propertyNames'", N.keys[k].n, N.keys[k].s);
            N.banned |= 1ull << k;
        }
        N.additional = -1;
    }
    return 0;
#undef N
}

static int compile_array_with(compiler *c, json_t *s, int id, int depth, json_t **own);

/* Arrays (what compile_array_with builds for 'contains' is freed here). */
static int compile_array(compiler *c, json_t *s, int id, int depth) {
    json_t *own = NULL;
    int r = compile_array_with(c, s, id, depth, &own);
    json_decref(own);
    return r;
}

static int compile_array_with(compiler *c, json_t *s, int id, int depth, json_t **own) {
#define N (c->g->nodes[id])
    json_t *items = json_object_get(s, "items"), *prefix = json_object_get(s, "prefixItems");
    json_t *extra = json_object_get(s, "additionalItems"), *ct = json_object_get(s, "contains"), *own_prefix = NULL;
    if (ct && !prefix && !json_is_array(items)) { /* contains: the first item is written to satisfy it */
        *own = own_prefix = json_pack("[{s:[O,O]}]", "allOf", items ? items : json_true(), ct);
        prefix = own_prefix;
    } else if (ct) return fail(c, "schema keyword 'contains' is supported only without a tuple of items");
    if (json_is_array(items)) { /* draft 4-2019 tuples */
        if (prefix) return fail(c, "both 'prefixItems' and a tuple 'items'");
        prefix = items;
        items = extra;
    } /* else additionalItems has no effect */
    if (prefix) {
        if (!json_is_array(prefix) || json_array_size(prefix) > MAX_PREFIX)
            return fail(c, "'prefixItems' must be an array of at most %d schemas", MAX_PREFIX);
        int n = (int)json_array_size(prefix);
        if (!(N.prefix = calloc((size_t)n + 1, sizeof(int)))) return oom(c);
        for (int i = 0; i < n; i++) {
            int child = compile(c, json_array_get(prefix, (size_t)i), depth + 1);
            if (child < 0) return -1;
            N.prefix[i] = child;
            N.n_prefix++;
        }
    }
    if (items && json_is_false(items)) N.items = -1;
    else if (items && !json_is_true(items)) {
        int child = compile(c, items, depth + 1);
        if (child < 0) return -1;
        N.items = child;
    }
    if (get_count(c, s, "minItems", &N.min_items) || get_count(c, s, "maxItems", &N.max_items)) return -1;
    if (own_prefix && N.min_items < 1) N.min_items = 1;
    if (N.items < 0 && (N.max_items < 0 || N.max_items > N.n_prefix)) N.max_items = N.n_prefix;
    if (N.max_items >= 0 && N.min_items > N.max_items) return unsat(c, "minItems > maxItems");
    json_t *u = json_object_get(s, "uniqueItems");
    if (u && json_is_true(u) && !(N.max_items >= 0 && N.max_items <= 1)) {
        if (N.n_prefix && N.min_items > 1) return fail(c, "schema keyword 'uniqueItems' is not supported with 'prefixItems'");
        if (N.n_prefix) { N.cut_items = 1; return 0; }
        int it = N.items;
        gnode *in = it > 0 ? &c->g->nodes[it] : NULL;
        if (in && !in->n_enum && !in->n_any && in->types == T_BOOL) {
            in->enums = calloc(2, sizeof(gstr));
            if (!in->enums) return oom(c);
            json_t *t = json_true(), *f = json_false();
            if (canonical(c, t, &in->enums[0]) || canonical(c, f, &in->enums[1])) return -1;
            in->n_enum = 2;
        }
        if (!in || !in->n_enum || in->n_any) { /* other items: one item at most is written */
            if (N.min_items > 1)
                return fail(c, "schema keyword 'uniqueItems' is enforced only for arrays of enum, const or boolean items (or of at most one item)");
            N.cut_items = 1;
            return 0;
        }
        N.unique = true;
        if (N.max_items < 0 || N.max_items > in->n_enum) N.max_items = in->n_enum;
        if (N.min_items > N.max_items) return fail(c, "uniqueItems: minItems exceeds the distinct values");
    }
    return 0;
#undef N
}


static int gstr_cmp(const void *a, const void *b) {
    const gstr *x = a, *y = b;
    int m = x->n < y->n ? x->n : y->n, r = memcmp(x->s, y->s, (size_t)m);
    return r ? r : x->n - y->n;
}

/* An enum past MAX_ENUM values (the width of a frame's candidate mask) becomes a union of enums
 * of up to MAX_ENUM sorted values each; the parse state follows at most GRAMMAR_MAX_ALTS of them
 * at once, so values past the first few chunks sharing a prefix may not be reachable. */
static int split_enum(compiler *c, int id) {
    gstr *vals = c->g->nodes[id].enums;
    int n = c->g->nodes[id].n_enum, chunks = (n + MAX_ENUM - 1) / MAX_ENUM, types = c->g->nodes[id].types;
    qsort(vals, (size_t)n, sizeof *vals, gstr_cmp);
    int *alts = calloc((size_t)chunks, sizeof *alts);
    if (!alts) return oom(c);
    for (int k = 0; k < chunks; k++) {
        int a = new_node(c);
        if (a < 0) { free(alts); return -1; }
        gnode *A = &c->g->nodes[a];
        int m = n - k * MAX_ENUM < MAX_ENUM ? n - k * MAX_ENUM : MAX_ENUM;
        A->types = types;
        A->stypes = types;
        if (!(A->enums = calloc((size_t)m, sizeof(gstr)))) { free(alts); return oom(c); }
        memcpy(A->enums, vals + k * MAX_ENUM, (size_t)m * sizeof(gstr));
        A->n_enum = m;
        alts[k] = a;
    }
    gnode *N = &c->g->nodes[id];
    free(N->enums);
    N->enums = NULL;
    N->n_enum = 0;
    N->any = alts;
    N->n_any = chunks;
    return id;
}

/* enum / const: the values that also satisfy the sibling keywords (type, bounds, pattern, ...:
 * each value is run through the automaton of the schema without them; when the siblings cannot
 * be compiled, the values of the allowed types). */
static int compile_enum(compiler *c, json_t *s, int id, json_t *en, json_t *cn, int depth) {
    json_t *rest = without(s, "enum");
    json_object_del(rest, "const");
    int check = -1;
    if (json_object_size(rest)) {
        lfm2c_error saved = *c->err;
        check = compile(c, rest, depth + 1);
        if (check < 0) *c->err = saved;
    }
    json_decref(rest);
    int n = cn ? 1 : (int)json_array_size(en), types = c->g->nodes[id].types;
    if (!(c->g->nodes[id].enums = calloc((size_t)n, sizeof(gstr)))) return oom(c);
    for (int i = 0; i < n; i++) {
        json_t *v = cn ? cn : json_array_get(en, (size_t)i);
        int vt = json_is_null(v) ? T_NULL : json_is_boolean(v) ? T_BOOL : json_is_integer(v) ? T_INT :
                 json_is_real(v) ? (json_real_value(v) == floor(json_real_value(v)) ? T_INT : T_NUM) :
                 json_is_string(v) ? T_STR : json_is_array(v) ? T_ARR : T_OBJ;
        if (!(vt & types)) continue;
        gstr t;
        if (canonical(c, v, &t)) return -1;
        bool dup = false;
        for (int k = 0; k < c->g->nodes[id].n_enum && !dup; k++)
            dup = c->g->nodes[id].enums[k].n == t.n && !memcmp(c->g->nodes[id].enums[k].s, t.s, (size_t)t.n);
        if (dup || (check >= 0 && !node_accepts(c->g, check, t.s, (size_t)t.n))) { free(t.s); continue; }
        c->g->nodes[id].enums[c->g->nodes[id].n_enum++] = t;
    }
    if (!c->g->nodes[id].n_enum) return unsat(c, "no '%s' value satisfies the schema's other keywords", cn ? "const" : "enum");
    return c->g->nodes[id].n_enum > MAX_ENUM ? split_enum(c, id) : id;
}

static int compile_into_inner(compiler *c, json_t *s, int id, int depth);

static int compile_into(compiler *c, json_t *s, int id, int depth) {
    lfm2c_error saved = *c->err;
    int r = compile_into_inner(c, s, id, depth);
    bool empty = r < 0 && c->unsat && depth > 0;
    c->unsat = false;
    if (!empty) return r;
    gnode *n = &c->g->nodes[id]; /* a part that admits nothing */
    for (int k = 0; k < n->n_enum; k++) free(n->enums[k].s);
    n->n_enum = 0;
    n->n_any = 0;
    n->types = n->stypes = 0;
    *c->err = saved;
    return id;
}

static int compile_into_inner(compiler *c, json_t *s, int id, int depth) {
    if (depth > MAX_SCHEMA_DEPTH) return fail(c, "schema nested deeper than %d", MAX_SCHEMA_DEPTH);
    if (json_is_true(s) || (json_is_object(s) && only_annotations(s, ""))) return id; /* any value */
    if (json_is_false(s)) return unsat(c, "schema 'false' admits no value");
    if (!json_is_object(s)) return fail(c, "schema must be an object");
    json_t *cif = json_object_get(s, "if");
    if (cif) { /* the values written take one branch: 'if' and 'then' merged in, else 'not if' and 'else' */
        json_t *base = without(s, "if"), *thn = json_object_get(s, "then"), *els = json_object_get(s, "else");
        json_object_del(base, "then");
        json_object_del(base, "else");
        json_t *m = json_pack("{s:[O,O,O]}", "allOf", base, cif, thn ? thn : json_true());
        lfm2c_error saved = *c->err;
        int a = compile(c, m, depth + 1);
        json_decref(m);
        if (a < 0) *c->err = saved;
        m = json_pack("{s:[O,O],s:O}", "allOf", base, els ? els : json_true(), "not", cif);
        int b = compile(c, m, depth + 1);
        json_decref(m);
        json_decref(base);
        if (b < 0 && a >= 0) *c->err = saved;
        if (a < 0 && b < 0) return -1;
        int *alts = malloc(2 * sizeof *alts), n = 0;
        if (!alts) return oom(c);
        if (a >= 0) alts[n++] = a;
        if (b >= 0) alts[n++] = b;
        c->g->nodes[id].any = alts;
        c->g->nodes[id].n_any = n;
        return id;
    }
    static const char *unsupported[] = {"minContains", "maxContains",
        "unevaluatedProperties", "unevaluatedItems", "$dynamicRef", "$recursiveRef", NULL};
    for (int i = 0; unsupported[i]; i++)
        if (json_object_get(s, unsupported[i]))
            return fail(c, "schema keyword '%s' is not supported", unsupported[i]);
#define N (c->g->nodes[id])
    json_t *ref = json_object_get(s, "$ref"), *all = json_object_get(s, "allOf");
    if (ref || all) { /* merge everything into one schema */
        json_t *m = without(s, "$ref");
        json_object_del(m, "allOf");
        int r = 0;
        if (ref) {
            json_t *one = json_pack("{s:O}", "$ref", ref);
            r = merge_schema(c, m, one, 0);
            json_decref(one);
        }
        if (all && !r) {
            if (!json_is_array(all)) r = fail(c, "'allOf' must be an array");
            size_t i;
            json_t *a;
            if (!r) json_array_foreach(all, i, a) if ((r = merge_schema(c, m, a, 0))) break;
        }
        if (!r && json_object_get(m, "allOf")) r = fail(c, "allOf could not be merged");
        if (!r) r = compile_into(c, m, id, depth + 1) < 0 ? -1 : 0;
        json_decref(m);
        return r ? -1 : id;
    }
    json_t *nt = json_object_get(s, "not");
    if (nt) { /* enforced after compilation (check_not) */
        int x = compile(c, nt, depth + 1);
        if (x < 0) return -1;
        c->g->nodes[id].not_node = x;
    }
    json_t *any = json_object_get(s, "anyOf");
    if (!any) any = json_object_get(s, "oneOf");
    if (any && json_object_get(s, "anyOf") && json_object_get(s, "oneOf")) { /* anyOf A, oneOf B: A distributed over B */
        json_t *m = without(s, "anyOf");
        json_object_del(m, "oneOf");
        json_object_set_new(m, "anyOf", distribute(json_object_get(s, "anyOf"), "oneOf", json_object_get(s, "oneOf")));
        int r = compile_into(c, m, id, depth + 1);
        json_decref(m);
        return r;
    }
    json_t *nullable = json_object_get(s, "nullable");
    if (any || json_is_true(nullable)) {
        if (any && (!json_is_array(any) || json_array_size(any) == 0 || json_array_size(any) > 64))
            return fail(c, "'anyOf'/'oneOf' must be an array of 1..64 schemas");
        json_t *rest = without(s, any == json_object_get(s, "anyOf") ? "anyOf" : "oneOf");
        json_object_del(rest, "nullable");
        if (!any) { any = json_pack("[O]", rest); json_decref(rest); rest = json_object(); }
        else json_incref(any);
        int n = (int)json_array_size(any) + (json_is_true(nullable) ? 1 : 0);
        int *alts = calloc((size_t)n, sizeof(int));
        int r = alts ? 0 : oom(c);
        for (int i = 0; !r && i < (int)json_array_size(any); i++) {
            json_t *a = json_array_get(any, (size_t)i);
            if (json_object_size(rest)) {
                json_t *m = json_deep_copy(rest);
                r = merge_schema(c, m, a, 0);
                if (!r && (alts[i] = compile(c, m, depth + 1)) < 0) r = -1;
                json_decref(m);
            } else if ((alts[i] = compile(c, a, depth + 1)) < 0) r = -1;
        }
        if (!r && json_is_true(nullable)) {
            json_t *ns = json_pack("{s:s}", "type", "null");
            if ((alts[n - 1] = compile(c, ns, depth + 1)) < 0) r = -1;
            json_decref(ns);
        }
        json_decref(rest);
        json_decref(any);
        if (r) { free(alts); return -1; }
        N.any = alts;
        N.n_any = n;
        N.one_of = json_object_get(s, "oneOf") != NULL;
        return id;
    }
    json_t *type = json_object_get(s, "type");
    int types = 0;
    if (json_is_string(type)) {
        if (!(types = type_bit(json_string_value(type))))
            return fail(c, "unknown schema type '%s'", json_string_value(type));
    } else if (json_is_array(type)) {
        size_t i;
        json_t *t;
        json_array_foreach(type, i, t) {
            int b = json_is_string(t) ? type_bit(json_string_value(t)) : 0;
            if (!b) return fail(c, "schema 'type' lists an unknown type");
            types |= b;
        }
        if (!types) return fail(c, "schema 'type' is empty");
    } else if (type) {
        return fail(c, "schema 'type' must be a string or an array");
    } else if (json_object_get(s, "properties") || json_object_get(s, "additionalProperties")) {
        types = T_OBJ;
    } else if (json_object_get(s, "items") || json_object_get(s, "prefixItems")) {
        types = T_ARR;
    } else if (json_object_get(s, "pattern") || json_object_get(s, "format") || json_object_get(s, "minLength") ||
               json_object_get(s, "maxLength")) {
        types = T_STR;
    } else if (json_object_get(s, "minimum") || json_object_get(s, "maximum") || json_object_get(s, "multipleOf") ||
               json_object_get(s, "exclusiveMinimum") || json_object_get(s, "exclusiveMaximum")) {
        types = T_NUM;
    } else {
        types = T_ALL;
    }
    if (types & T_NUM) types |= T_INT;
    N.types = types;
    N.stypes = type ? types : T_ALL;

    json_t *en = json_object_get(s, "enum"), *cn = json_object_get(s, "const");
    if (en && (!json_is_array(en) || json_array_size(en) == 0 || json_array_size(en) > MAX_ENUM_VALUES))
        return fail(c, "schema 'enum' must be an array of 1..%d values", MAX_ENUM_VALUES);
    if (cn && en) { /* both: the const, if the enum holds it */
        bool in = false;
        for (size_t i = 0; i < json_array_size(en) && !in; i++) in = json_equal(json_array_get(en, i), cn);
        if (!in) return unsat(c, "'const' is not among the 'enum' values");
    }
    if (en || cn) return compile_enum(c, s, id, cn ? NULL : en, cn, depth);
    if ((types & (T_INT | T_NUM)) && compile_numeric(c, s, id)) return -1;
    if ((types & T_STR) && compile_string(c, s, id)) return -1;
    if ((types & T_OBJ) && compile_object(c, s, id, depth)) return -1;
    if ((types & T_ARR) && compile_array(c, s, id, depth)) return -1;
#undef N
    return id;
}

static uint64_t all_bits_of(int n) { return n >= 64 ? ~0ull : (1ull << n) - 1; }

static int item_node_of(const gnode *n, int i) { return i < n->n_prefix ? n->prefix[i] : n->items; }

static int prop_index(const gnode *n, const gstr *key) {
    for (int p = 0; p < n->n_props; p++)
        if (n->keys[p].n == key->n && !memcmp(n->keys[p].s, key->s, (size_t)key->n)) return p;
    return -1;
}

/* ---- oneOf: exactly one alternative -------------------------------------------------------- *
 * The automaton accepts a value when some alternative does; oneOf also needs every other
 * alternative to refuse it. After compilation each oneOf is checked pair by pair: no value the
 * automaton generates from alternative i may validate against the schema of alternative j. The
 * test is conservative (types, enum values, numeric ranges, lengths, pattern languages, required
 * and forbidden keys, discriminating properties); where it fails, i is narrowed when that is
 * enough (an optional key j requires is never generated in i; a type j admits is dropped from
 * i), else the schema is refused naming 'oneOf'. */

/* The kind (T_NULL, T_BOOL, T_NUM for every number, T_STR, T_ARR, T_OBJ) of a value's JSON text. */
static int text_kind(const gstr *t) {
    switch (t->s[0]) {
    case 'n': case 'N': return T_NULL;
    case 't': case 'f': case 'T': case 'F': return T_BOOL;
    case '"': return T_STR;
    case '[': return T_ARR;
    case '{': return T_OBJ;
    }
    return T_NUM;
}

static int kinds(int types) { return (types & ~T_INT) | (types & T_INT ? T_NUM : 0); }

/* Kinds of the values node n generates (a union: its alternatives'). */
static int gen_kinds(const grammar *g, int node, int depth) {
    const gnode *n = &g->nodes[node];
    if (depth > 16) return T_ALL;
    if (n->n_any) {
        int k = 0;
        for (int i = 0; i < n->n_any; i++) if (!(n->dropped >> i & 1)) k |= gen_kinds(g, n->any[i], depth + 1);
        return k;
    }
    if (n->n_enum) {
        int k = 0;
        for (int i = 0; i < n->n_enum; i++) k |= text_kind(&n->enums[i]);
        return k;
    }
    return kinds(n->types);
}

/* Is the automaton of node n exact for values of kind k (accepts every valid text it could
 * meet), so that its refusal proves a value invalid against the schema? */
static bool exact_for(const gnode *n, int k) {
    if (n->n_any || n->narrowed) return false;
    if (k == T_NULL || k == T_BOOL) return true;
    if (k == T_NUM) return true;
    if (k == T_STR) return !n->rx || n->rx == n->srx;
    return false;
}

static bool excl(const grammar *g, int a, int b, int depth);

/* Kind k: no value node a generates validates against b (both plain nodes, b's kinds include k). */
static bool excl_kind(const grammar *g, int a, int b, int k, int depth) {
    const gnode *A = &g->nodes[a], *B = &g->nodes[b];
    if (A->n_enum) { /* every generated value of kind k is refused by b's exact automaton */
        if (!exact_for(B, k)) return false;
        for (int i = 0; i < A->n_enum; i++)
            if (text_kind(&A->enums[i]) == k && node_accepts(g, b, A->enums[i].s, (size_t)A->enums[i].n)) return false;
        return true;
    }
    if (B->n_enum) { /* a generates none of b's values of kind k */
        if (k == T_OBJ || k == T_ARR) return false;
        for (int i = 0; i < B->n_enum; i++)
            if (text_kind(&B->enums[i]) == k && node_accepts(g, a, B->enums[i].s, (size_t)B->enums[i].n)) return false;
        return true;
    }
    switch (k) {
    case T_NUM: {
        bool aint = !(A->types & T_NUM);
        double alo = aint ? (double)A->ilo : A->lo, ahi = aint ? (double)A->ihi : A->hi;
        bool alx = !aint && A->lo_ex, ahx = !aint && A->hi_ex;
        if (ahi < B->lo || (ahi == B->lo && (ahx || B->lo_ex))) return true;
        if (alo > B->hi || (alo == B->hi && (alx || B->hi_ex))) return true;
        /* b admits only integers, a only numbers with a fraction: never, a writes integers too */
        return false;
    }
    case T_STR:
        if (A->max_len >= 0 && B->min_len > A->max_len) return true;
        if (B->max_len >= 0 && A->min_len > B->max_len) return true;
        if (A->rx && B->srx) {
            rxbudget *bud = (rxbudget *)&g->budget; /* compile time only */
            rdfa *p = dfa_product(A->rx, B->srx, bud);
            if (!p) return bud->left >= 0;
            dfa_free(p);
        }
        return false;
    case T_ARR: {
        if (B->max_items >= 0 && A->min_items > B->max_items) return true;
        if (A->max_items >= 0 && B->min_items > A->max_items) return true;
        for (int i = 0; i < A->min_items && i < 4; i++) { /* an item a always writes that b refuses */
            int ia = item_node_of(A, i), ib = item_node_of(B, i);
            if (ia >= 0 && ib < 0) return true;
            if (ia >= 0 && ib >= 0 && excl(g, ia, ib, depth + 1)) return true;
        }
        return false;
    }
    case T_OBJ: {
        for (int r = 0; r < B->n_props; r++) {
            if (!(B->sreq >> r & 1)) continue;
            int ka = prop_index(A, &B->keys[r]);
            bool gen = ka >= 0 ? !(A->banned >> ka & 1) : A->additional >= 0;
            if (!gen) return true; /* b requires a key a never writes */
            if (ka >= 0 && (A->required >> ka & 1) && excl(g, A->prop_node[ka], B->prop_node[r], depth + 1)) return true;
        }
        for (int p = 0; p < A->n_props; p++) {
            if (!(A->required >> p & 1)) continue;
            int kb = prop_index(B, &A->keys[p]);
            if (kb < 0 && B->add_false) return true; /* a always writes a key b forbids */
            if (kb >= 0 && excl(g, A->prop_node[p], B->prop_node[kb], depth + 1)) return true;
        }
        return false;
    }
    }
    return false;
}

static bool excl(const grammar *g, int a, int b, int depth) {
    if (depth > 12) return false;
    const gnode *A = &g->nodes[a], *B = &g->nodes[b];
    if (A->n_any) {
        for (int i = 0; i < A->n_any; i++) if (!(A->dropped >> i & 1) && !excl(g, A->any[i], b, depth + 1)) return false;
        return true;
    }
    if (B->n_any) {
        for (int i = 0; i < B->n_any; i++) if (!excl(g, a, B->any[i], depth + 1)) return false;
        return true;
    }
    int common = gen_kinds(g, a, 0) & (B->n_enum ? gen_kinds(g, b, 0) : kinds(B->stypes));
    for (int k = 1; k < T_ALL; k <<= 1)
        if ((common & k) && k != T_INT && !excl_kind(g, a, b, k, depth)) return false;
    return true;
}

/* Narrows a (not a union) so that it excludes b where one cheap step can: drops the kinds b
 * admits that a need not produce; bans an optional key that b requires, or requires a key
 * whose value b refuses or that b forbids; keeps a's strings out of b's pattern. */
static void narrow_for(grammar *g, int a, int b) {
    gnode *A = &g->nodes[a];
    const gnode *B = &g->nodes[b];
    if (A->n_any || A->n_enum || B->n_any) return;
    int bk = B->n_enum ? gen_kinds(g, b, 0) : kinds(B->stypes);
    for (int k = 1; k < T_ALL; k <<= 1) {
        int bits = k == T_NUM ? (T_INT | T_NUM) : k;
        if (k == T_INT || !(kinds(A->types) & k) || !(bk & k) || excl_kind(g, a, b, k, 0)) continue;
        if (k == T_STR && B->srx && !B->n_enum) { /* a's strings outside b's pattern */
            rdfa *nb = dfa_complement(B->srx, &g->budget), *r = NULL;
            if (nb) r = A->rx ? dfa_product(A->rx, nb, &g->budget) : nb;
            if (nb && r != nb) dfa_free(nb); /* r failed (budget), or r is the product */
            if (r) {
                if (A->rx != A->srx) dfa_free(A->rx);
                A->rx = r;
                A->rx_exact = false;
                A->narrowed = true;
                continue;
            }
        }
        if (A->types & ~bits) { A->types &= ~bits; A->narrowed = true; }
    }
    if (!(A->types & T_OBJ) || excl_kind(g, a, b, T_OBJ, 0)) return;
    for (int r = 0; r < B->n_props && A->additional < 0; r++) { /* never write a key b requires */
        int ka = (B->sreq >> r & 1) ? prop_index(A, &B->keys[r]) : -1;
        if (ka >= 0 && !(A->required >> ka & 1)) { A->banned |= 1ull << ka; A->narrowed = true; return; }
    }
    for (int p = 0; p < A->n_props; p++) { /* always write a key b refuses or forbids */
        if ((A->required | A->banned) >> p & 1 || !g->finite[A->prop_node[p]]) continue;
        int kb = prop_index(B, &A->keys[p]);
        if ((kb < 0 && B->add_false) || (kb >= 0 && excl(g, A->prop_node[p], B->prop_node[kb], 1))) {
            A->required |= 1ull << p;
            A->narrowed = true;
            return;
        }
    }
}

/* ---- finite values ---- *
 * A node is finite when the automaton can finish a value from it: a recursion that every
 * instance must take again (a required property, a minimum of items, ...) has none. Found as
 * a least fixpoint; then what is not finite is never generated (an optional property banned,
 * an alternative dropped, a type removed, items cut), so no prefix leads into a dead end. */
static bool part_finite(const grammar *g, const gnode *n, int t) {
    const unsigned char *fin = g->finite;
    switch (t) {
    case T_STR:
        return !(n->rx && n->max_len >= 0 && n->rx->dist[0] > n->max_len);
    case T_ARR:
        for (int i = 0; i < n->min_items; i++) {
            int it = item_node_of(n, i);
            if (it < 0 || !fin[it]) return false;
            if (i >= n->n_prefix) break; /* the same node from here on */
        }
        return true;
    case T_OBJ: {
        if (n->required & n->banned) return false;
        int writable = 0;
        for (int p = 0; p < n->n_props; p++) {
            if ((n->required >> p & 1) && !fin[n->prop_node[p]]) return false;
            writable += !(n->banned >> p & 1) && fin[n->prop_node[p]];
        }
        return n->min_props <= writable; /* minProperties counts declared keys */
    }
    }
    return true;
}

static bool node_finite(const grammar *g, const gnode *n) {
    if (n->n_enum) return true;
    if (n->n_any) {
        for (int i = 0; i < n->n_any; i++) if (!(n->dropped >> i & 1) && g->finite[n->any[i]]) return true;
        return false;
    }
    for (int t = 1; t < T_ALL; t <<= 1)
        if ((n->types & t) && part_finite(g, n, t)) return true;
    return false;
}

/* The fewest frames a value of a node needs (1 while the table is not computed yet). */
static int mind_of(const grammar *g, int node) { return g->mind ? g->mind[node] : 1; }

/* The fewest frames a value of type part t of node n needs (objects and arrays: their own frame
 * and their deepest required member), from the current g->mind. */
static int part_depth(const grammar *g, const gnode *n, int t) {
    int d = 0;
    if (t == T_OBJ) {
        int opt = 255;
        for (int p = 0; p < n->n_props; p++) {
            int m = mind_of(g, n->prop_node[p]);
            if ((n->required >> p & 1) && m > d) d = m;
            if (!((n->required | n->banned) >> p & 1) && m < opt) opt = m;
        }
        if (n->min_props > __builtin_popcountll(n->required) && opt > d) d = opt; /* roughly: one more key */
    } else if (t == T_ARR) {
        for (int i = 0; i < n->min_items; i++) {
            int it = item_node_of(n, i);
            if (it >= 0 && mind_of(g, it) > d) d = mind_of(g, it);
            if (i >= n->n_prefix) break;
        }
    }
    return d + 1 > 255 ? 255 : d + 1;
}

static int node_depth(const grammar *g, const gnode *n) {
    int best = 255;
    if (n->n_enum) return 1;
    if (n->n_any) {
        for (int i = 0; i < n->n_any; i++)
            if (!(n->dropped >> i & 1) && mind_of(g, n->any[i]) < best) best = mind_of(g, n->any[i]);
        return best;
    }
    for (int t = 1; t < T_ALL; t <<= 1)
        if (n->types & t) { int d = part_depth(g, n, t); if (d < best) best = d; }
    return best;
}

/* g->mind by relaxation; the automaton then opens only what fits in GRAMMAR_MAX_DEPTH frames. */
static int min_depths(compiler *c, int root) {
    grammar *g = c->g;
    free(g->mind);
    if (!(g->mind = malloc((size_t)g->n_nodes + 1))) return oom(c);
    memset(g->mind, 255, (size_t)g->n_nodes + 1);
    for (bool changed = true; changed;) {
        changed = false;
        for (int i = 0; i < g->n_nodes; i++) {
            int d = node_depth(g, &g->nodes[i]);
            if (d < g->mind[i]) { g->mind[i] = (unsigned char)d; changed = true; }
        }
    }
    if (root >= 0 && g->mind[root] > GRAMMAR_MAX_DEPTH)
        return fail(c, "the schema requires values nested deeper than %d levels", GRAMMAR_MAX_DEPTH);
    return 0;
}

/* Computes g->finite and prunes what is not; -1 (and a message) when the root is not. */
static int prune_infinite(compiler *c, int root) {
    grammar *g = c->g;
    free(g->finite);
    if (!(g->finite = calloc((size_t)g->n_nodes + 1, 1))) return oom(c);
    for (bool changed = true; changed;) {
        changed = false;
        for (int i = 0; i < g->n_nodes; i++)
            if (!g->finite[i] && node_finite(g, &g->nodes[i])) { g->finite[i] = 1; changed = true; }
    }
    if (root >= 0 && !g->finite[root] && c->not_dropped)
        return fail(c, "schema keyword 'not' cannot be enforced (the values written might match it)");
    if (root >= 0 && !g->finite[root])
        return fail(c, "the schema admits no finite value (a recursion through required properties, 'minItems' or 'anyOf' never ends)");
    for (int i = 0; i < g->n_nodes; i++) {
        gnode *n = &g->nodes[i];
        if (!g->finite[i]) continue;
        for (int a = 0; a < n->n_any; a++) if (!g->finite[n->any[a]]) n->dropped |= 1ull << a;
        if (n->n_any || n->n_enum) continue;
        for (int t = 1; t < T_ALL; t <<= 1) {
            int bits = t == T_NUM ? T_NUM : t;
            if ((n->types & t) && !part_finite(g, n, t) && (n->types & ~bits)) n->types &= ~bits;
        }
        for (int p = 0; p < n->n_props; p++)
            if (!(n->required >> p & 1) && !g->finite[n->prop_node[p]]) n->banned |= 1ull << p;
        if (n->additional > 0 && !g->finite[n->additional]) n->additional = -1;
        for (int k = n->min_items > 0 ? n->min_items : 0; k < n->n_prefix + 1; k++) {
            int it = item_node_of(n, k);
            if (it >= 0 && !g->finite[it]) { if (n->cut_items < 0 || k < n->cut_items) n->cut_items = k; break; }
        }
    }
    return min_depths(c, root);
}

static int check_one_of(compiler *c) {
    grammar *g = c->g;
    for (int id = 0; id < g->n_nodes; id++) {
        gnode *n = &g->nodes[id];
        if (!n->one_of) continue;
        for (int i = 0; i < n->n_any; i++)
            for (int j = 0; j < n->n_any; j++) {
                if (i == j || excl(g, n->any[i], n->any[j], 0)) continue;
                narrow_for(g, n->any[i], n->any[j]);
                if (excl(g, n->any[i], n->any[j], 0)) continue;
                n->dropped |= 1ull << i; /* i cannot be kept out of j: never generate it */
                break;
            }
        if (n->dropped == all_bits_of(n->n_any))
            return fail(c, "'oneOf': no alternative can be generated so that exactly one matches");
    }
    return 0;
}

/* 'not': no value generated from the node may validate against the 'not' schema (the same
 * exclusion as oneOf's, with the same narrowing); else the schema is refused naming 'not'. */
static int check_not(compiler *c, int root) {
    grammar *g = c->g;
    for (int id = 0; id < g->n_nodes; id++) {
        int x = g->nodes[id].not_node;
        if (x < 0 || excl(g, id, x, 0)) continue;
        narrow_for(g, id, x);
        if (excl(g, id, x, 0)) continue;
        if (id == root)
            return fail(c, "schema keyword 'not' cannot be enforced here (the values written might match it)");
        gnode *n = &g->nodes[id]; /* never generated (at the root, the error names 'not') */
        n->types = 0;
        n->n_any = 0;
        for (int k = 0; k < n->n_enum; k++) free(n->enums[k].s);
        n->n_enum = 0;
        c->not_dropped = true;
    }
    return 0;
}

static grammar *grammar_alloc(compiler *c) {
    grammar *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    pthread_mutex_init(&g->cache_mu, NULL);
    c->g = g;
    g->budget.left = RX_BUDGET;
    if (new_node(c) != 0) { free(g); return NULL; } /* node 0: any value */
    return g;
}

static void refs_clear(compiler *c) {
    for (int i = 0; i < c->n_refs; i++) free(c->refs[i].ptr);
    c->n_refs = 0;
}

/* The compiler state is large: keep it off small stacks. */
static compiler *compiler_new(lfm2c_error *err) {
    compiler *c = calloc(1, sizeof *c);
    if (!c) { lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"); return NULL; }
    c->err = err;
    return c;
}

/* grammar.h still hands the message back in the caller's buffer (see there): the last message
 * set, if any, whether or not the compilation failed in the end (as when the buffer was filled
 * directly). */
static void message_to_buffer(const lfm2c_error *e, char *buf, size_t cap) {
    if (e->code && buf && cap) snprintf(buf, cap, "%s", e->msg);
}

/* A copy of JSON text (n bytes, NUL-terminated copy) whose integer literals past 18 digits read as
 * reals ("...0" -> "...0.0"): JSON has no integer size limit, jansson's integers are 64-bit. NULL
 * when out of memory. */
char *grammar_json_widen_big_ints(const char *t, size_t n) {
    size_t cap = n + n / 8 + 16, o = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    bool str = false;
    for (size_t i = 0; i < n;) {
        char ch = t[i];
        if (str) {
            out[o++] = ch;
            if (ch == '\\' && i + 1 < n) out[o++] = t[++i];
            else if (ch == '"') str = false;
            i++;
            continue;
        }
        if (ch == '"') { str = true; out[o++] = ch; i++; continue; }
        if (ch == '-' || (ch >= '0' && ch <= '9')) {
            size_t j = i + (ch == '-'), digits = 0;
            while (j < n && t[j] >= '0' && t[j] <= '9') j++, digits++;
            memcpy(out + o, t + i, j - i);
            o += j - i;
            bool integer = j >= n || (t[j] != '.' && t[j] != 'e' && t[j] != 'E');
            if (integer && digits > 18) { out[o++] = '.'; out[o++] = '0'; } /* 2 more per 19+ bytes */
            i = j;
            continue;
        }
        out[o++] = ch;
        i++;
    }
    out[o] = 0;
    return out;
}

static grammar *schema_grammar(const char *schema_json, const volatile bool *cancel, lfm2c_error *err) {
    compiler *c = compiler_new(err);
    if (!c) return NULL;
    json_error_t je;
    json_t *s = json_loads(schema_json, JSON_DECODE_ANY, &je);
    if (!s && strstr(je.text, "too big integer")) {
        char *w = grammar_json_widen_big_ints(schema_json, strlen(schema_json));
        if (w) s = json_loads(w, JSON_DECODE_ANY, &je);
        free(w);
    }
    grammar *g = NULL;
    if (!s) fail(c, "schema is not valid JSON: %s", je.text);
    else if (!(g = grammar_alloc(c))) oom(c);
    else {
        g->budget.cancel = cancel;
        c->root = s;
        g->root = compile(c, s, 0);
        if (g->root >= 0 && (prune_infinite(c, g->root) || check_one_of(c) || check_not(c, g->root) || prune_infinite(c, g->root)))
            g->root = -1;
        if (g->root < 0) { grammar_free(g); g = NULL; }
    }
    json_decref(s);
    refs_clear(c);
    free(c);
    return g;
}

grammar *grammar_any_object(void) {
    compiler c = {0};
    grammar *g = grammar_alloc(&c);
    if (!g) return NULL;
    g->root = new_node(&c);
    if (g->root < 0) { grammar_free(g); return NULL; }
    g->nodes[g->root].types = T_OBJ;
    if (prune_infinite(&c, g->root)) { grammar_free(g); return NULL; }
    return g;
}

static grammar *tool_calls_grammar(const char *tools_json, const char *only_name, bool parallel,
                                   lfm2c_error *err) {
    compiler *c = compiler_new(err);
    if (!c) return NULL;
    json_error_t je;
    json_t *tools = json_loads(tools_json, 0, &je);
    grammar *g = NULL;
    if (!tools || !json_is_array(tools) || json_array_size(tools) == 0 || json_array_size(tools) > MAX_PROPS) {
        fail(c, "'tools' must be an array of 1..%d functions", MAX_PROPS);
        goto bad;
    }
    if (!(g = grammar_alloc(c))) { oom(c); goto bad; }
    g->python = g->calls = true;
    g->parallel = parallel;
    g->func_names = calloc(json_array_size(tools), sizeof(gstr));
    g->func_node = calloc(json_array_size(tools), sizeof(int));
    if (!g->func_names || !g->func_node) { oom(c); goto bad; }
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *fn = json_object_get(t, "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (!name || !*name) { fail(c, "tools[%zu].function.name is missing", i); goto bad; }
        if (only_name && strcmp(name, only_name)) continue;
        json_t *params = json_object_get(fn, "parameters");
        int node;
        refs_clear(c);
        c->root = params;
        if (params) {
            if ((node = compile(c, params, 1)) < 0) {
                char tmp[256];   /* the schema's message, with the tool named in front */
                snprintf(tmp, sizeof tmp, "%.255s", err ? err->msg : "");
                fail(c, "tool '%s': %s", name, tmp);
                goto bad;
            }
            const gnode *pn = &g->nodes[node];
            if (pn->n_any || pn->n_enum || !(pn->types & T_OBJ))
                { fail(c, "tool '%s': parameters must be an object schema", name); goto bad; }
        } else if ((node = new_node(c)) >= 0) {
            g->nodes[node].types = T_OBJ;
            g->nodes[node].additional = -1;
        } else {
            goto bad;
        }
        g->func_names[g->n_funcs] = dup_str(name, (int)strlen(name));
        g->func_node[g->n_funcs++] = node;
    }
    if (!g->n_funcs) { fail(c, "no function named '%s' in 'tools'", only_name ? only_name : ""); goto bad; }
    if (prune_infinite(c, -1) || check_one_of(c) || check_not(c, -1) || prune_infinite(c, -1)) goto bad;
    for (int f = 0; f < g->n_funcs; f++)
        if (!g->finite[g->func_node[f]]) { fail(c, "tool '%s': the parameters admit no finite value", g->func_names[f].s); goto bad; }
    json_decref(tools);
    refs_clear(c);
    free(c);
    return g;
bad:
    json_decref(tools);
    grammar_free(g);
    refs_clear(c);
    free(c);
    return NULL;
}

grammar *grammar_from_schema(const char *schema_json, char *err, size_t errcap) {
    return grammar_from_schema_cancel(schema_json, NULL, err, errcap);
}

grammar *grammar_from_schema_cancel(const char *schema_json, const volatile bool *cancel, char *err, size_t errcap) {
    lfm2c_error e = {0};
    grammar *g = schema_grammar(schema_json, cancel, &e);
    message_to_buffer(&e, err, errcap);
    return g;
}

grammar *grammar_tool_calls(const char *tools_json, const char *only_name, bool parallel, char *err, size_t errcap) {
    lfm2c_error e = {0};
    grammar *g = tool_calls_grammar(tools_json, only_name, parallel, &e);
    message_to_buffer(&e, err, errcap);
    return g;
}

void grammar_free(grammar *g) {
    if (!g) return;
    for (int i = 0; i < g->n_nodes; i++) {
        gnode *n = &g->nodes[i];
        for (int k = 0; k < n->n_enum; k++) free(n->enums[k].s);
        for (int k = 0; k < n->n_props; k++) free(n->keys[k].s);
        free(n->enums);
        free(n->keys);
        free(n->prop_node);
        free(n->prefix);
        free(n->any);
        if (n->srx != n->rx) dfa_free(n->srx);
        dfa_free(n->rx);
    }
    for (int i = 0; i < g->n_cache; i++) free(g->cache[i].toks);
    free(g->cache);
    pthread_mutex_destroy(&g->cache_mu);
    for (int i = 0; i < g->n_funcs; i++) free(g->func_names[i].s);
    free(g->func_names);
    free(g->func_node);
    free(g->finite);
    free(g->mind);
    free(g->nodes);
    free(g);
}

/* ---- the automaton ------------------------------------------------------------------------- */

/* R_POP: the frame ended before this byte, feed it to the parent; R_AGAIN: feed it to the
 * (new) top frame. */
enum { R_REJECT, R_OK, R_POP, R_AGAIN };

/* Frame kinds and phases. */
enum { F_VALUE, F_OBJ, F_ARR, F_STR, F_NUM, F_LIT, F_ENUM, F_CALLS };
enum { O_FIRST, O_KEY, O_COLON, O_AFTER, O_NEXT };
enum { A_FIRST, A_AFTER, A_NEXT };
enum { S_CHAR, S_ESC, S_HEX, S_UTF8 };
enum { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };
enum { C_OPEN, C_NAME, C_ARGFIRST, C_KEY, C_ARGAFTER, C_ARGNEXT, C_CALLAFTER, C_NEXTCALL };

static const char *LIT_JSON[3] = {"null", "true", "false"};
static const char *LIT_PY[3] = {"None", "True", "False"};

static uint64_t all_bits(int n) { return n >= 64 ? ~0ull : (1ull << n) - 1; }

static bool push(grammar_stack *st, int kind, int node, int sp) {
    if (st->depth >= GRAMMAR_MAX_DEPTH) return false;
    grammar_frame *f = &st->f[st->depth++];
    memset(f, 0, sizeof *f);
    f->kind = (uint8_t)kind;
    f->node = (uint16_t)node;
    f->sp = (uint8_t)sp;
    f->cur = -1;
    return true;
}

void grammar_state_init(const grammar *g, grammar_state *st) {
    st->dead = false;
    st->n_alt = 1;
    st->alt[0].depth = 0;
    push(&st->alt[0], g->calls ? F_CALLS : F_VALUE, g->root, 0);
    st->depth = 1;
}

/* Narrows candidates (names/keys/enum texts) by the byte at position pos. */
static uint64_t narrow(const gstr *cands, uint64_t cand, int pos, unsigned char b) {
    uint64_t out = 0;
    for (uint64_t m = cand; m; m &= m - 1) {
        int i = __builtin_ctzll(m);
        if (pos < cands[i].n && (unsigned char)cands[i].s[pos] == b) out |= 1ull << i;
    }
    return out;
}

static int exact(const gstr *cands, uint64_t cand, int pos) {
    for (uint64_t m = cand; m; m &= m - 1) {
        int i = __builtin_ctzll(m);
        if (cands[i].n == pos) return i;
    }
    return -1;
}

static bool longer(const gstr *cands, uint64_t cand, int pos) {
    for (uint64_t m = cand; m; m &= m - 1)
        if (cands[__builtin_ctzll(m)].n > pos) return true;
    return false;
}

static bool is_digit(unsigned char b) { return b >= '0' && b <= '9'; }

/* ---- numbers ---- */

typedef __int128 i128;
static const double POW10[23] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12,
                                 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Is there a multiple of m (0: any integer) in [x, y] within [lo, hi]? */
static bool int_range_has(const gnode *n, i128 x, i128 y) {
    if (x < n->ilo) x = n->ilo;
    if (y > n->ihi) y = n->ihi;
    if (x > y) return false;
    if (!n->imult) return true;
    i128 m = n->imult, q = x / m;
    if (q * m < x) q++;
    return q * m <= y;
}

/* Integer prefix: sign, value p of k digits (k = 0: only '-'). Can it still become valid? */
static bool int_viable(const gnode *n, bool neg, uint64_t p, int k) {
    if (k == 0) return int_range_has(n, 0, 0) || int_range_has(n, -(i128)I_LIMIT16, -1);
    if (p == 0) return int_range_has(n, 0, 0);
    i128 w = 1;
    for (int j = 0; k + j <= 16; j++, w *= 10) {
        i128 x = (i128)p * w, y = x + w - 1;
        if (neg ? int_range_has(n, -y, -x) : int_range_has(n, x, y)) return true;
    }
    return false;
}

static bool int_ok(const gnode *n, bool neg, uint64_t p) {
    i128 v = neg ? -(i128)p : (i128)p;
    return int_range_has(n, v, v);
}

static bool num_in(const gnode *n, double v) {
    if (n->lo_ex ? !(v > n->lo) : !(v >= n->lo)) return false;
    if (n->hi_ex ? !(v < n->hi) : !(v <= n->hi)) return false;
    return true;
}

/* Significant digits of a bounded number: 15, so the text and the double agree; 6 under a
 * multipleOf of 10^-d, so that a validator's float division value / 10^-d stays within 1e-9 of
 * an integer. */
static int num_digits(const gnode *n) { return n->frac_max >= 0 ? 6 : 15; }

/* Bounded number prefix: mantissa M with f decimals (frac: '.' seen), digits used. The values
 * it can still become form [a, b) (mirrored when negative); with no digits left, only a. */
static bool num_viable(const gnode *n, bool neg, uint64_t M, int f, bool frac, int digits) {
    int left = num_digits(n) - digits;
    if (frac && n->frac_max >= 0 && f >= n->frac_max) left = 0;
    if (!frac && M == 0) { /* a leading zero: 0 or 0.xxx */
        if (num_in(n, 0)) return true;
        if (left == 0) return false;
        return neg ? n->hi > -1 && n->lo < 0 : n->lo < 1 && n->hi > 0;
    }
    for (int j = 0; j <= (frac ? 0 : left); j++) {
        double a, b;
        if (frac) { a = (double)M / POW10[f]; b = (double)(M + 1) / POW10[f]; }
        else { a = (double)M * POW10[j]; b = (double)(M + 1) * POW10[j]; }
        if (left == 0) { if (num_in(n, neg ? -a : a)) return true; continue; }
        if (!neg) { if ((n->hi_ex ? a < n->hi : a <= n->hi) && b > n->lo) return true; }
        else if ((n->lo_ex ? -a > n->lo : -a >= n->lo) && -b < n->hi) return true;
    }
    return false;
}

/* The number frame: phase, count (bytes), aux (digits in the current part), seen (mantissa),
 * pos (decimals), cur (1: negative), cand (digits in the mantissa). */
static int step_num(const gnode *n, grammar_frame *f, unsigned char b) {
    bool integer = !(n->types & T_NUM), bounded = integer || n->nbound;
    if (f->count >= MAX_NUM_BYTES && (is_digit(b) || b == '.' || b == 'e' || b == 'E' || b == '+' || b == '-'))
        return R_REJECT;
    int ph = f->phase, np = -1;
    if (ph == N_MINUS) np = b == '0' ? N_ZERO : is_digit(b) ? N_INT : -1;
    else if (ph == N_ZERO || ph == N_INT) {
        if (ph == N_INT && is_digit(b)) np = N_INT;
        else if (b == '.' && !integer && n->frac_max != 0) np = N_DOT;
        else if ((b == 'e' || b == 'E') && !integer && !bounded) np = N_E;
    } else if (ph == N_DOT) np = is_digit(b) ? N_FRAC : -1;
    else if (ph == N_FRAC) np = is_digit(b) ? N_FRAC : (b == 'e' || b == 'E') && !bounded ? N_E : -1;
    else if (ph == N_E) np = is_digit(b) ? N_EXP : (b == '+' || b == '-') ? N_ESIGN : -1;
    else if (ph == N_ESIGN || ph == N_EXP) np = is_digit(b) ? N_EXP : -1;
    if (np < 0) {
        bool done = ph == N_ZERO || ph == N_INT || ph == N_FRAC || ph == N_EXP;
        if (done && integer && !int_ok(n, f->cur, f->seen)) return R_REJECT;
        if (done && !integer && bounded && !num_in(n, (f->cur ? -1.0 : 1.0) * (double)f->seen / POW10[f->pos]))
            return R_REJECT;
        return done ? R_POP : R_REJECT;
    }
    bool digit = is_digit(b) && np != N_ESIGN;
    if (!bounded) {
        /* digits per part are bounded so every number fits a double: 15 / 15 / 2 */
        int part_max = np == N_EXP ? 2 : 15;
        if (digit && np != ph && !(ph == N_MINUS || ph == N_ESIGN)) f->aux = 0;
        if (digit && ++f->aux > part_max) return R_REJECT;
        if (!digit) f->aux = 0;
    } else if (digit) {
        uint64_t M = f->seen * 10 + (uint64_t)(b - '0');
        int digits = (int)f->cand + 1, dec = f->pos + (np == N_FRAC);
        if (n->frac_max >= 0 && dec > n->frac_max) return R_REJECT;
        if (integer) {
            if (digits > 16 || !int_viable(n, f->cur, M, digits)) return R_REJECT;
        } else {
            if (digits > num_digits(n) || !num_viable(n, f->cur, M, dec, np == N_FRAC, digits)) return R_REJECT;
        }
        f->seen = M;
        f->cand = (uint64_t)digits;
        f->pos = (uint16_t)dec;
    } else if (np == N_DOT && ((int)f->cand >= num_digits(n) || !num_viable(n, f->cur, f->seen, 0, true, (int)f->cand))) {
        return R_REJECT;
    }
    f->phase = (uint8_t)np;
    f->count++;
    return R_OK;
}

/* ---- strings ---- */

/* Escapes allowed in strings; in Python tool-call arguments '/' needs no escape. */
static uint32_t esc_cp(unsigned char b, bool python) {
    switch (b) {
    case '"': return '"';
    case '\\': return '\\';
    case '/': return python ? 0xFFFFFFFF : '/';
    case 'b': return 8;
    case 'f': return 12;
    case 'n': return 10;
    case 'r': return 13;
    case 't': return 9;
    }
    return 0xFFFFFFFF;
}

/* A complete code point in a string frame; false if the pattern rejects it. */
static bool str_char(const gnode *n, grammar_frame *f, uint32_t cp) {
    if (n->rx) {
        int t = dfa_next(n->rx, (int)f->seen, cp);
        if (t < 0) return false;
        /* maxLength and the pattern together: room for the shortest way to a match */
        if (n->max_len >= 0 && (long)f->count + 1 + n->rx->dist[t] > n->max_len) return false;
        f->seen = (uint64_t)t;
    }
    f->count++;
    return true;
}

/* Can a code point in [lo, hi] come next in a pattern string, leaving room under maxLength for
 * the shortest way on to a match? */
static bool rx_can_take(const gnode *n, const grammar_frame *f, uint32_t lo, uint32_t hi) {
    const rdfa *d = n->rx;
    if (n->max_len < 0) return dfa_any(d, (int)f->seen, lo, hi);
    for (int e = d->first[f->seen]; e < d->first[f->seen + 1]; e++)
        if (d->edges[e].hi >= lo && d->edges[e].lo <= hi && (long)f->count + 1 + d->dist[d->edges[e].to] <= n->max_len)
            return true;
    return false;
}

/* The string frame: phase, count (code points), aux (bytes still to come in a UTF-8 sequence or
 * hex digits), seen (DFA state), cand (code point bits so far), pos (the next UTF-8 byte's
 * range: lo | hi << 8). */
static int step_str(const grammar *g, grammar_stack *st, grammar_frame *f, const gnode *n, unsigned char b) {
    switch (f->phase) {
    case S_CHAR:
        if (b == '"') {
            if (n->min_len > 0 && (int)f->count < n->min_len) return R_REJECT;
            if (n->rx && !n->rx->accept[f->seen]) return R_REJECT;
            st->depth--;
            return R_OK;
        }
        if (b < 0x20 || b == 0x7f) return R_REJECT;
        if (n->max_len >= 0 && (int)f->count >= n->max_len) return R_REJECT;
        if (b == '\\') {
            if (n->rx) {
                static const char E[] = "\"\\/bfnrt";
                bool any = false;
                for (int i = 0; E[i] && !any; i++) {
                    uint32_t cp = esc_cp((unsigned char)E[i], g->python);
                    any = cp != 0xFFFFFFFF && rx_can_take(n, f, cp, cp);
                }
                if (!any) return R_REJECT;
            }
            f->phase = S_ESC;
            return R_OK;
        }
        if (b < 0x80) return str_char(n, f, b) ? R_OK : R_REJECT;
        uint32_t lo, hi;
        int more;
        unsigned nlo = 0x80, nhi = 0xBF;
        if (b >= 0xc2 && b <= 0xdf) { more = 1; lo = (uint32_t)(b & 0x1f) << 6; hi = lo | 0x3f; }
        else if (b >= 0xe0 && b <= 0xef) {
            more = 2; lo = (uint32_t)(b & 0x0f) << 12; hi = lo | 0xfff;
            if (b == 0xe0) { nlo = 0xa0; lo = 0x800; }
            if (b == 0xed) { nhi = 0x9f; hi = 0xd7ff; }
        } else if (b >= 0xf0 && b <= 0xf4) {
            more = 3; lo = (uint32_t)(b & 0x07) << 18; hi = lo | 0x3ffff;
            if (b == 0xf0) { nlo = 0x90; lo = 0x10000; }
            if (b == 0xf4) { nhi = 0x8f; hi = 0x10ffff; }
        } else return R_REJECT;
        if (n->rx && !rx_can_take(n, f, lo, hi)) return R_REJECT;
        f->phase = S_UTF8;
        f->aux = (uint8_t)more;
        f->cand = b & (more == 1 ? 0x1f : more == 2 ? 0x0f : 0x07);
        f->pos = (uint16_t)(nlo | nhi << 8);
        return R_OK;
    case S_UTF8: {
        if (b < (f->pos & 0xff) || b > (f->pos >> 8)) return R_REJECT;
        uint64_t c = f->cand << 6 | (b & 0x3f);
        int rem = f->aux - 1;
        if (rem == 0) {
            if (!str_char(n, f, (uint32_t)c)) return R_REJECT;
            f->phase = S_CHAR;
        } else {
            uint32_t lo = (uint32_t)(c << (6 * rem)), hi = lo | ((1u << (6 * rem)) - 1);
            if (n->rx && !rx_can_take(n, f, lo, hi)) return R_REJECT;
            f->cand = c;
            f->aux = (uint8_t)rem;
            f->pos = 0x80 | 0xbf << 8;
        }
        return R_OK;
    }
    case S_ESC: {
        if (b == 'u' && !n->rx) { f->phase = S_HEX; f->aux = 4; f->cand = 0; return R_OK; }
        uint32_t cp = esc_cp(b, g->python);
        if (cp == 0xFFFFFFFF || !str_char(n, f, cp)) return R_REJECT;
        f->phase = S_CHAR;
        return R_OK;
    }
    case S_HEX: {
        int h = hexval(b);
        if (h < 0) return R_REJECT;
        f->cand = f->cand << 4 | (uint64_t)h;
        /* no surrogates: every escape is one whole code point */
        if (f->aux == 3 && (f->cand >> 4) == 0xd && h >= 8) return R_REJECT;
        if (--f->aux == 0) { f->phase = S_CHAR; f->count++; }
        return R_OK;
    }
    }
    return R_REJECT;
}

/* ---- values, objects, arrays, calls ---- */

/* The first byte of a value of node n starts frame f (an F_VALUE, not a union) as its kind. */
static int start_value(const grammar *g, const grammar_stack *st, grammar_frame *f, unsigned char b) {
    const gnode *n = &g->nodes[f->node];
    if (f->sp && b == ' ') { f->sp = 0; return R_OK; }
    f->sp = 0;
    if (n->n_enum) {
        f->kind = F_ENUM;
        f->cand = all_bits(n->n_enum);
        f->pos = 0;
        const grammar_frame *p = f > st->f ? f - 1 : NULL; /* uniqueItems: only new values */
        if (p && p->kind == F_ARR && g->nodes[p->node].unique) f->cand &= ~p->cand;
        return f->cand ? R_AGAIN : R_REJECT;
    }
    const char *const *lit = g->python ? LIT_PY : LIT_JSON;
    int room = GRAMMAR_MAX_DEPTH - st->depth + 1;
    if (b == '{' && (n->types & T_OBJ) && part_depth(g, n, T_OBJ) <= room) { f->kind = F_OBJ; f->phase = O_FIRST; f->seen = 0; return R_OK; }
    if (b == '[' && (n->types & T_ARR) && part_depth(g, n, T_ARR) <= room) { f->kind = F_ARR; f->phase = A_FIRST; f->count = 0; f->cand = 0; return R_OK; }
    if (b == '"' && (n->types & T_STR)) {
        f->kind = F_STR; f->phase = S_CHAR; f->count = 0; f->seen = 0; return R_OK;
    }
    if ((b == '-' || is_digit(b)) && (n->types & (T_INT | T_NUM))) {
        bool integer = !(n->types & T_NUM);
        f->kind = F_NUM;
        f->phase = b == '-' ? N_MINUS : b == '0' ? N_ZERO : N_INT;
        f->count = 1;
        f->aux = b != '-';
        f->cur = b == '-';
        f->seen = b == '-' ? 0 : (uint64_t)(b - '0');
        f->cand = b != '-';
        f->pos = 0;
        if (integer && !int_viable(n, b == '-', f->seen, (int)f->cand)) return R_REJECT;
        if (!integer && n->nbound) {
            if (b == '-' ? !(n->lo < 0 || (n->lo == 0 && !n->lo_ex)) : !num_viable(n, false, f->seen, 0, false, 1))
                return R_REJECT;
        }
        return R_OK;
    }
    int li = -1;
    if ((n->types & T_NULL) && b == (unsigned char)lit[0][0]) li = 0;
    if ((n->types & T_BOOL) && b == (unsigned char)lit[1][0]) li = 1;
    if ((n->types & T_BOOL) && b == (unsigned char)lit[2][0]) li = 2;
    if (li < 0) return R_REJECT;
    f->kind = F_LIT;
    f->aux = (uint8_t)li;
    f->pos = 1;
    return R_OK;
}

/* An enum frame is about to end with value k: an array with uniqueItems records it. */
static bool enum_end(const grammar *g, grammar_stack *st, int k) {
    if (st->depth < 2) return true;
    grammar_frame *p = &st->f[st->depth - 2];
    if (p->kind != F_ARR || !g->nodes[p->node].unique) return true;
    if (p->cand >> k & 1) return false;
    p->cand |= 1ull << k;
    return true;
}

/* Schema node of the array item at index i. */
static int item_node(const gnode *n, int i) { return i < n->n_prefix ? n->prefix[i] : n->items; }

static bool arr_can_close(const gnode *n, const grammar_frame *f) {
    return !(n->min_items > 0 && (int)f->count < n->min_items);
}

static bool arr_can_add(const grammar *g, const grammar_stack *st, const gnode *n, const grammar_frame *f) {
    if (n->max_items >= 0 && (int)f->count >= n->max_items) return false;
    if (n->cut_items >= 0 && (int)f->count >= n->cut_items) return false;
    int it = item_node(n, (int)f->count);
    return it >= 0 && st->depth + mind_of(g, it) <= GRAMMAR_MAX_DEPTH;
}

/* A literal (null/true/false, or None/True/False in Python mode): the next byte of its text. */
static int step_lit(const grammar *g, grammar_stack *st, grammar_frame *f, unsigned char b) {
    const char *lit = (g->python ? LIT_PY : LIT_JSON)[f->aux];
    if ((unsigned char)lit[f->pos] != b) return R_REJECT;
    if (!lit[++f->pos]) st->depth--;
    return R_OK;
}

/* An enum value: b narrows the candidate texts; a byte that no candidate continues ends the
 * value (R_POP) when one candidate is complete; the only complete candidate ends it at once. */
static int step_enum(const grammar *g, grammar_stack *st, grammar_frame *f, const gnode *n, unsigned char b) {
    uint64_t c = narrow(n->enums, f->cand, f->pos, b);
    if (!c) {
        int k = exact(n->enums, f->cand, f->pos);
        if (k < 0 || !enum_end(g, st, k)) return R_REJECT;
        return R_POP;
    }
    f->cand = c;
    f->pos++;
    int k = exact(n->enums, c, f->pos);
    if (k >= 0 && !longer(n->enums, c, f->pos)) {
        if (!enum_end(g, st, k)) return R_REJECT;
        st->depth--;
    }
    return R_OK;
}

/* Declared keys that may still be written here: not given yet, not banned, their value fits
 * in the frames left, and, when maxProperties leaves room only for them, the required ones. */
static uint64_t obj_keys_left(const grammar *g, const grammar_stack *st, const grammar_frame *f, const gnode *n) {
    uint64_t left = all_bits(n->n_props) & ~f->seen & ~n->banned, missing = n->required & ~f->seen;
    for (uint64_t m = left; m; m &= m - 1) {
        int p = __builtin_ctzll(m);
        if (st->depth + mind_of(g, n->prop_node[p]) > GRAMMAR_MAX_DEPTH) left &= ~(1ull << p);
    }
    if (n->max_props >= 0 && __builtin_popcountll(f->seen) + __builtin_popcountll(missing) >= n->max_props) left &= missing;
    return left;
}

static bool obj_free_ok(const grammar *g, const grammar_stack *st, const gnode *n) {
    return n->additional >= 0 && st->depth + mind_of(g, n->additional) <= GRAMMAR_MAX_DEPTH;
}

static bool obj_can_close(const grammar_frame *f, const gnode *n) {
    return !(n->required & ~f->seen) && (n->min_props < 0 || __builtin_popcountll(f->seen) >= n->min_props);
}

/* After '{' (O_FIRST) or ',' (O_NEXT): an optional space, '}' (only right after '{') or the
 * opening quote of a key that may still come. */
static int obj_key_open(const grammar *g, grammar_stack *st, grammar_frame *f, const gnode *n, unsigned char b) {
    if (f->sp && b == ' ') { f->sp = 0; return R_OK; }
    if (b == '}' && f->phase == O_FIRST) {
        if (!obj_can_close(f, n)) return R_REJECT;
        st->depth--;
        return R_OK;
    }
    if (b != '"') return R_REJECT;
    uint64_t left = obj_keys_left(g, st, f, n);
    bool free_ok = obj_free_ok(g, st, n);
    if (!left && !free_ok) return R_REJECT;
    /* with additional keys allowed, track every declared key to refuse duplicates */
    f->cand = free_ok ? all_bits(n->n_props) : left;
    f->phase = O_KEY;
    f->pos = 0;
    f->sp = 0;
    f->aux = 0;
    return R_OK;
}

/* Inside a key: the closing quote picks the declared key (or an additional one), any other
 * byte narrows the declared keys and follows escapes. */
static int obj_key_byte(const grammar *g, const grammar_stack *st, grammar_frame *f, const gnode *n, unsigned char b) {
    bool free_ok = obj_free_ok(g, st, n);
    if (b == '"' && !f->aux) {
        int k = exact(n->keys, f->cand, f->pos);
        if (k >= 0 && !(obj_keys_left(g, st, f, n) >> k & 1)) return R_REJECT;
        if (k < 0 && !free_ok) return R_REJECT;
        f->cur = (int16_t)k;
        f->phase = O_COLON;
        return R_OK;
    }
    if (b < 0x20 || b == 0x7f) return R_REJECT;
    uint64_t c = narrow(n->keys, f->cand, f->pos, b);
    if (!c && (!free_ok || b >= 0x80)) return R_REJECT; /* additional keys: ASCII */
    /* escapes (aux: 1 after '\\', 5..2 hex digits to come) */
    if (!f->aux) { if (b == '\\') f->aux = 1; }
    else if (f->aux == 1) {
        if (b == 'u') f->aux = 5;
        else if (esc_cp(b, g->python) == 0xFFFFFFFF) return R_REJECT;
        else f->aux = 0;
    } else {
        if (hexval(b) < 0) return R_REJECT;
        f->aux = f->aux == 2 ? 0 : (uint8_t)(f->aux - 1);
    }
    f->cand = c;
    if (f->pos < 0xffff) f->pos++;
    return R_OK;
}

/* After a key: the colon, then the property's value (or the additional value) as a new frame. */
static int obj_colon(grammar_stack *st, grammar_frame *f, const gnode *n, unsigned char b) {
    if (b != ':') return R_REJECT;
    int child = f->cur >= 0 ? n->prop_node[f->cur] : n->additional;
    if (f->cur >= 0) f->seen |= 1ull << f->cur;
    f->phase = O_AFTER;
    return push(st, F_VALUE, child, 1) ? R_OK : R_REJECT;
}

/* After a member's value: '}' once every required key is seen, or ',' if a key may follow. */
static int obj_after_value(const grammar *g, grammar_stack *st, grammar_frame *f, const gnode *n, unsigned char b) {
    if (b == '}') {
        if (!obj_can_close(f, n)) return R_REJECT;
        st->depth--;
        return R_OK;
    }
    if (b == ',') {
        if (!obj_keys_left(g, st, f, n) && !obj_free_ok(g, st, n)) return R_REJECT;
        f->phase = O_NEXT;
        f->sp = 1;
        return R_OK;
    }
    return R_REJECT;
}

static int step_obj(const grammar *g, grammar_stack *st, grammar_frame *f, const gnode *n, unsigned char b) {
    switch (f->phase) {
    case O_FIRST:
    case O_NEXT: return obj_key_open(g, st, f, n, b);
    case O_KEY: return obj_key_byte(g, st, f, n, b);
    case O_COLON: return obj_colon(st, f, n, b);
    case O_AFTER: return obj_after_value(g, st, f, n, b);
    }
    return R_REJECT;
}

/* After '[' (A_FIRST) or ',' (A_NEXT): an optional space, ']' (only right after '['), or the
 * first byte of the next item, which goes to the item's new frame (R_AGAIN). */
static int arr_item_open(const grammar *g, grammar_stack *st, grammar_frame *f, const gnode *n, unsigned char b) {
    if (f->sp && b == ' ') { f->sp = 0; return R_OK; }
    if (b == ']' && f->phase == A_FIRST) {
        if (!arr_can_close(n, f)) return R_REJECT;
        st->depth--;
        return R_OK;
    }
    if (!arr_can_add(g, st, n, f)) return R_REJECT;
    f->phase = A_AFTER;
    f->sp = 0;
    if (!push(st, F_VALUE, item_node(n, (int)f->count++), 0)) return R_REJECT;
    return R_AGAIN;
}

/* After an item: ']' when enough items were given, ',' when another may come. */
static int arr_after_item(const grammar *g, grammar_stack *st, grammar_frame *f, const gnode *n, unsigned char b) {
    if (b == ']') {
        if (!arr_can_close(n, f)) return R_REJECT;
        st->depth--;
        return R_OK;
    }
    if (b == ',') {
        if (!arr_can_add(g, st, n, f)) return R_REJECT;
        f->phase = A_NEXT;
        f->sp = 1;
        return R_OK;
    }
    return R_REJECT;
}

static int step_arr(const grammar *g, grammar_stack *st, grammar_frame *f, const gnode *n, unsigned char b) {
    switch (f->phase) {
    case A_FIRST:
    case A_NEXT: return arr_item_open(g, st, f, n, b);
    case A_AFTER: return arr_after_item(g, st, f, n, b);
    }
    return R_REJECT;
}

/* Python-style calls `[name(key=value, ...), ...]`: inside a function name, '(' ends a name
 * that is complete, any other byte narrows the names. */
static int call_name_byte(const grammar *g, grammar_frame *f, unsigned char b) {
    if (b == '(') {
        int k = exact(g->func_names, f->cand, f->pos);
        if (k < 0) return R_REJECT;
        f->cur = (int16_t)k;
        f->seen = 0;
        f->phase = C_ARGFIRST;
        return R_OK;
    }
    uint64_t c = narrow(g->func_names, f->cand, f->pos, b);
    if (!c) return R_REJECT;
    f->cand = c;
    f->pos++;
    return R_OK;
}

/* After '[' or ',' between calls: an optional space, then a name starts with this byte. */
static int call_name_start(const grammar *g, grammar_frame *f, unsigned char b) {
    if (f->sp && b == ' ') { f->sp = 0; return R_OK; }
    f->sp = 0;
    f->phase = C_NAME;
    f->cand = all_bits(g->n_funcs);
    f->pos = 0;
    return call_name_byte(g, f, b);
}

/* Inside an argument name (pn: the function's parameters): '=' ends a complete name and
 * starts its value's frame, any other byte narrows the names not given yet. */
static int call_key_byte(grammar_stack *st, grammar_frame *f, const gnode *pn, unsigned char b) {
    if (b == '=') {
        int k = exact(pn->keys, f->cand, f->pos);
        if (k < 0) return R_REJECT;
        f->seen |= 1ull << k;
        f->phase = C_ARGAFTER;
        return push(st, F_VALUE, pn->prop_node[k], 0) ? R_OK : R_REJECT;
    }
    uint64_t c = narrow(pn->keys, f->cand, f->pos, b);
    if (!c) return R_REJECT;
    f->cand = c;
    f->pos++;
    return R_OK;
}

/* After '(' (C_ARGFIRST) or ',' (C_ARGNEXT): an optional space, ')' (only right after '(',
 * when nothing is required), or the first byte of an argument name. */
static int call_arg_start(grammar_stack *st, grammar_frame *f, const gnode *pn, unsigned char b) {
    if (f->sp && b == ' ') { f->sp = 0; return R_OK; }
    f->sp = 0;
    if (b == ')' && f->phase == C_ARGFIRST) {
        if (pn->required & ~f->seen) return R_REJECT;
        f->phase = C_CALLAFTER;
        return R_OK;
    }
    f->cand = all_bits(pn->n_props) & ~f->seen;
    f->pos = 0;
    f->phase = C_KEY;
    return call_key_byte(st, f, pn, b);
}

/* After an argument's value: ')' once every required argument is given, ',' if one is left. */
static int call_arg_after(grammar_frame *f, const gnode *pn, unsigned char b) {
    if (b == ')') {
        if (pn->required & ~f->seen) return R_REJECT;
        f->phase = C_CALLAFTER;
        return R_OK;
    }
    if (b == ',' && (all_bits(pn->n_props) & ~f->seen)) {
        f->phase = C_ARGNEXT;
        f->sp = 1;
        return R_OK;
    }
    return R_REJECT;
}

/* After a call's ')': ']' ends the list, ',' starts another call when calls may be parallel. */
static int call_after(const grammar *g, grammar_stack *st, grammar_frame *f, unsigned char b) {
    if (b == ']') { st->depth--; return R_OK; }
    if (b == ',' && g->parallel) { f->phase = C_NEXTCALL; f->sp = 1; f->cur = -1; return R_OK; }
    return R_REJECT;
}

static int step_calls(const grammar *g, grammar_stack *st, grammar_frame *f, unsigned char b) {
    const gnode *pn = f->cur >= 0 ? &g->nodes[g->func_node[f->cur]] : NULL;
    switch (f->phase) {
    case C_OPEN:
        if (b != '[') return R_REJECT;
        f->phase = C_NEXTCALL;
        return R_OK;
    case C_NEXTCALL: return call_name_start(g, f, b);
    case C_NAME: return call_name_byte(g, f, b);
    case C_ARGFIRST:
    case C_ARGNEXT: return call_arg_start(st, f, pn, b);
    case C_KEY: return call_key_byte(st, f, pn, b);
    case C_ARGAFTER: return call_arg_after(f, pn, b);
    case C_CALLAFTER: return call_after(g, st, f, b);
    }
    return R_REJECT;
}

/* One byte into the top frame of a stack. May push/pop frames. */
static int step(const grammar *g, grammar_stack *st, unsigned char b) {
    grammar_frame *f = &st->f[st->depth - 1];
    const gnode *n = &g->nodes[f->node];
    switch (f->kind) {
    case F_VALUE: return start_value(g, st, f, b);
    case F_LIT: return step_lit(g, st, f, b);
    case F_ENUM: return step_enum(g, st, f, n, b);
    case F_STR: return step_str(g, st, f, n, b);
    case F_NUM: return step_num(n, f, b);
    case F_OBJ: return step_obj(g, st, f, n, b);
    case F_ARR: return step_arr(g, st, f, n, b);
    case F_CALLS: return step_calls(g, st, f, b);
    }
    return R_REJECT;
}

/* ---- the set of stacks ---- */

static void stack_copy(grammar_stack *dst, const grammar_stack *src) {
    dst->depth = src->depth;
    memcpy(dst->f, src->f, (size_t)src->depth * sizeof src->f[0]);
}

static bool stack_equal(const grammar_stack *a, const grammar_stack *b) {
    return a->depth == b->depth && !memcmp(a->f, b->f, (size_t)a->depth * sizeof a->f[0]);
}

/* Feeds b to a copy of src; a surviving stack is appended to out (unless a twin is there). A
 * union value forks one stack per alternative. */
static void run_alt(const grammar *g, grammar_state *out, const grammar_stack *src, unsigned char b, int fork_depth) {
    if (out->n_alt >= GRAMMAR_MAX_ALTS) return;
    grammar_stack *s = &out->alt[out->n_alt];
    stack_copy(s, src);
    for (;;) {
        if (s->depth == 0) return; /* nothing may follow a complete value */
        grammar_frame *f = &s->f[s->depth - 1];
        const gnode *n = &g->nodes[f->node];
        if (f->kind == F_VALUE && n->n_any) {
            if (f->sp && b == ' ') { f->sp = 0; break; }
            if (fork_depth > 16) return;
            grammar_stack tmp;
            stack_copy(&tmp, s);
            tmp.f[tmp.depth - 1].sp = 0;
            for (int i = 0; i < n->n_any; i++) {
                if (n->dropped >> i & 1) continue;
                tmp.f[tmp.depth - 1].node = (uint16_t)n->any[i];
                run_alt(g, out, &tmp, b, fork_depth + 1);
            }
            return;
        }
        int r = step(g, s, b);
        if (r == R_OK) break;
        if (r == R_REJECT) return;
        if (r == R_POP) s->depth--;
    }
    for (int i = 0; i < out->n_alt; i++)
        if (stack_equal(&out->alt[i], s)) return;
    out->n_alt++;
}

static bool accept_byte(const grammar *g, const grammar_state *in, grammar_state *out, unsigned char b) {
    out->n_alt = 0;
    out->dead = false;
    for (int i = 0; i < in->n_alt; i++) run_alt(g, out, &in->alt[i], b, 0);
    int d = 0;
    for (int i = 0; i < out->n_alt; i++) if (out->alt[i].depth > d) d = out->alt[i].depth;
    out->depth = d;
    return out->n_alt > 0;
}

static void state_copy(grammar_state *dst, const grammar_state *src) {
    dst->depth = src->depth;
    dst->dead = src->dead;
    dst->n_alt = src->n_alt;
    for (int i = 0; i < src->n_alt; i++) stack_copy(&dst->alt[i], &src->alt[i]);
}

bool grammar_accept(const grammar *g, grammar_state *st, const char *bytes, size_t n) {
    if (st->dead) return false;
    if (n == 0) return true;
    grammar_state *a = malloc(2 * sizeof *a);
    if (!a) return false;
    const grammar_state *cur = st;
    for (size_t i = 0; i < n; i++) {
        grammar_state *nx = &a[i & 1];
        if (!accept_byte(g, cur, nx, (unsigned char)bytes[i])) { free(a); return false; }
        cur = nx;
    }
    state_copy(st, cur);
    free(a);
    return true;
}

/* Can the top frame end here without another byte (a number or enum awaiting its delimiter)? */
static bool frame_can_end(const grammar *g, const grammar_frame *f) {
    const gnode *n = &g->nodes[f->node];
    if (f->kind == F_NUM) {
        if (!(f->phase == N_ZERO || f->phase == N_INT || f->phase == N_FRAC || f->phase == N_EXP)) return false;
        if (!(n->types & T_NUM)) return int_ok(n, f->cur, f->seen);
        if (n->nbound) return num_in(n, (f->cur ? -1.0 : 1.0) * (double)f->seen / POW10[f->pos]);
        return true;
    }
    if (f->kind == F_ENUM) return exact(n->enums, f->cand, f->pos) >= 0;
    return false;
}

static bool stack_complete(const grammar *g, const grammar_stack *s) {
    for (int d = s->depth; d > 0; d--) {
        const grammar_frame *f = &s->f[d - 1];
        if (!frame_can_end(g, f)) return false;
        if (f->kind == F_ENUM && d >= 2) { /* uniqueItems: the value must be new */
            const grammar_frame *p = &s->f[d - 2];
            int k = exact(g->nodes[f->node].enums, f->cand, f->pos);
            if (p->kind == F_ARR && g->nodes[p->node].unique && (p->cand >> k & 1)) return false;
        }
    }
    return true;
}

bool grammar_complete(const grammar *g, const grammar_state *st) {
    if (st->dead) return false;
    for (int i = 0; i < st->n_alt; i++)
        if (stack_complete(g, &st->alt[i])) return true;
    return false;
}

/* Does the automaton started at node accept text as one complete value? */
static bool node_accepts(const grammar *g, int node, const char *text, size_t len) {
    grammar_state *st = malloc(sizeof *st);
    if (!st) return true;
    st->dead = false;
    st->n_alt = 1;
    st->alt[0].depth = 0;
    push(&st->alt[0], F_VALUE, node, 0);
    st->depth = 1;
    bool ok = grammar_accept(g, st, text, len) && grammar_complete(g, st);
    free(st);
    return ok;
}

/* ---- completion ------------------------------------------------------------------------ */

static int first_byte_of_min_value(const grammar *g, int node, int guard) {
    const gnode *n = &g->nodes[node];
    if (n->n_any) {
        if (guard > 8) return '{';
        int pick = -1;
        for (int i = 0; i < n->n_any; i++) { /* the alternative needing the fewest frames */
            if (n->dropped >> i & 1) continue;
            if (pick < 0 || mind_of(g, n->any[i]) < mind_of(g, pick)) pick = n->any[i];
        }
        for (int i = 0; i < n->n_any; i++) {
            if (n->dropped >> i & 1) continue;
            const gnode *a = &g->nodes[n->any[i]];
            if (!a->n_any && !a->n_enum && (a->types & T_NULL)) { pick = n->any[i]; break; }
        }
        return first_byte_of_min_value(g, pick, guard + 1);
    }
    if (n->n_enum) return (unsigned char)n->enums[0].s[0];
    const char *const *lit = g->python ? LIT_PY : LIT_JSON;
    if (n->types & T_NULL) return lit[0][0];
    if (n->types & T_BOOL) return lit[2][0];
    if (n->types & (T_INT | T_NUM)) return '0';
    if (n->types & T_STR) return '"';
    if (n->types & T_ARR) return '[';
    return '{';
}

/* Lowest candidate, preferring those in `prefer`. */
static int pick(uint64_t cand, uint64_t prefer) {
    uint64_t m = (cand & prefer) ? (cand & prefer) : cand;
    return m ? __builtin_ctzll(m) : -1;
}

/* The byte that moves the stack towards completion fastest; -1: pop the top frame. */
static int closing_byte(const grammar *g, const grammar_stack *st) {
    const grammar_frame *f = &st->f[st->depth - 1];
    const gnode *n = &g->nodes[f->node];
    switch (f->kind) {
    case F_VALUE: return first_byte_of_min_value(g, f->node, 0);
    case F_LIT: return (unsigned char)(g->python ? LIT_PY : LIT_JSON)[f->aux][f->pos];
    case F_ENUM: {
        uint64_t used = 0; /* uniqueItems: values the array already holds */
        if (st->depth >= 2 && st->f[st->depth - 2].kind == F_ARR && g->nodes[st->f[st->depth - 2].node].unique)
            used = st->f[st->depth - 2].cand;
        int e = exact(n->enums, f->cand, f->pos);
        if (e >= 0 && !(used >> e & 1)) return -1;
        int k = pick(f->cand & ~used & ~(e >= 0 ? 1ull << e : 0), ~0ull);
        if (k < 0) return 1; /* no way on: a byte nothing accepts */
        return (unsigned char)n->enums[k].s[f->pos];
    }
    case F_NUM: return frame_can_end(g, f) ? -1 : '0';
    case F_STR:
        if (f->phase == S_ESC && n->rx) { /* the escape whose character gets closest to a match */
            static const char E[] = "nt\"\\/bfr";
            int best = 'n', bd = -1;
            for (int i = 0; E[i]; i++) {
                uint32_t cp = esc_cp((unsigned char)E[i], g->python);
                int t = cp == 0xFFFFFFFF ? -1 : dfa_next(n->rx, (int)f->seen, cp);
                if (t >= 0 && (bd < 0 || n->rx->dist[t] < bd)) { bd = n->rx->dist[t]; best = E[i]; }
            }
            return best;
        }
        if (f->phase == S_ESC) return 'n';
        if (f->phase == S_HEX) return '0';
        if (f->phase == S_UTF8) return f->pos & 0xff;
        if (n->rx) {
            if (n->rx->accept[f->seen] && (int)f->count >= n->min_len) return '"';
            uint32_t cp = n->rx->next_cp[f->seen];
            if (n->rx->dist[f->seen] == 0) cp = 'a';
            if (cp == '"' || cp == '\\' || cp < 0x20) return '\\';
            return cp < 0x80 ? (int)cp : cp < 0x800 ? (int)(0xc0 | cp >> 6) : cp < 0x10000 ? (int)(0xe0 | cp >> 12) : (int)(0xf0 | cp >> 18);
        }
        return n->min_len > 0 && (int)f->count < n->min_len ? 'a' : '"';
    case F_OBJ: {
        bool more = !obj_can_close(f, n);
        switch (f->phase) {
        case O_FIRST: return more ? '"' : '}';
        case O_NEXT: return '"';
        case O_KEY: {
            if (!f->cand && f->aux) return f->aux == 1 ? 'n' : '0';
            uint64_t left = f->cand & obj_keys_left(g, st, f, n);
            int k = exact(n->keys, left, f->pos);
            if (k >= 0 || !f->cand) return '"';
            k = pick(left, n->required & ~f->seen);
            return k >= 0 && f->pos < n->keys[k].n ? (unsigned char)n->keys[k].s[f->pos] : '"';
        }
        case O_COLON: return ':';
        default: return more ? ',' : '}';
        }
    }
    case F_ARR: {
        bool need = !arr_can_close(n, f);
        (void)0;
        if (n->unique && need && f->phase != A_AFTER) { /* a value the array does not hold yet */
            int k = pick(all_bits(g->nodes[n->items].n_enum) & ~f->cand, ~0ull);
            return k >= 0 ? (unsigned char)g->nodes[n->items].enums[k].s[0] : ']';
        }
        if (f->phase == A_FIRST) return need ? first_byte_of_min_value(g, item_node(n, (int)f->count), 0) : ']';
        if (f->phase == A_NEXT) return first_byte_of_min_value(g, item_node(n, (int)f->count), 0);
        return need ? ',' : ']';
    }
    case F_CALLS: {
        const gnode *pn = f->cur >= 0 ? &g->nodes[g->func_node[f->cur]] : NULL;
        switch (f->phase) {
        case C_OPEN: return '[';
        case C_NEXTCALL: return (unsigned char)g->func_names[0].s[0];
        case C_NAME: {
            if (exact(g->func_names, f->cand, f->pos) >= 0) return '(';
            return (unsigned char)g->func_names[pick(f->cand, 0)].s[f->pos];
        }
        case C_ARGFIRST:
        case C_ARGNEXT: {
            uint64_t missing = pn->required & ~f->seen;
            if (!missing && f->phase == C_ARGFIRST) return ')';
            int k = pick(all_bits(pn->n_props) & ~f->seen, pn->required);
            return (unsigned char)pn->keys[k].s[0];
        }
        case C_KEY: {
            if (exact(pn->keys, f->cand, f->pos) >= 0) return '=';
            return (unsigned char)pn->keys[pick(f->cand, pn->required)].s[f->pos];
        }
        case C_ARGAFTER: return (pn->required & ~f->seen) ? ',' : ')';
        default: return ']';
        }
    }
    }
    return -1;
}

/* Completion of one stack (st holds only it); -1 if it cannot be finished within cap. */
static int complete_one(const grammar *g, grammar_state *st, grammar_state *tmp, char *out, int cap) {
    static const char PREF[] = "\"}],:0123456789-a{[ntfTFN.eE+";
    int n = 0;
    for (int guard = 0; guard < 4 * cap + 64; guard++) {
        grammar_stack *s = &st->alt[0];
        if (s->depth == 0) break;
        int b = closing_byte(g, s);
        if (b < 0) {
            grammar_frame *f = &s->f[s->depth - 1];
            if (f->kind == F_ENUM && !enum_end(g, s, exact(g->nodes[f->node].enums, f->cand, f->pos))) return -1;
            s->depth--;
            st->depth = s->depth;
            continue;
        }
        bool ok = accept_byte(g, st, tmp, (unsigned char)b);
        for (int i = 0; !ok && i < 256 + (int)sizeof PREF; i++) { /* the preferred byte is refused: any that fits */
            b = i < (int)sizeof PREF - 1 ? (unsigned char)PREF[i] : i - (int)sizeof PREF + 1;
            ok = b > 0 && accept_byte(g, st, tmp, (unsigned char)b);
        }
        if (!ok || n + 1 >= cap) return -1;
        out[n++] = (char)b;
        /* follow one stack: the one whose open value needs the fewest frames (a union's
         * recursive alternatives last) */
        int best = 0;
        for (int i = 1; i < tmp->n_alt; i++) {
            const grammar_stack *x = &tmp->alt[i], *y = &tmp->alt[best];
            if (x->depth && y->depth && mind_of(g, x->f[x->depth - 1].node) < mind_of(g, y->f[y->depth - 1].node)) best = i;
        }
        if (best) stack_copy(&tmp->alt[0], &tmp->alt[best]);
        tmp->n_alt = 1;
        tmp->depth = tmp->alt[0].depth;
        state_copy(st, tmp);
        if (grammar_complete(g, st) && st->alt[0].depth == 0) break;
    }
    if (!grammar_complete(g, st)) return -1;
    out[n] = 0;
    return n;
}

int grammar_completion(const grammar *g, const grammar_state *st0, char *out, int cap) {
    if (st0->dead || cap < 1) return -1;
    if (grammar_complete(g, st0)) { out[0] = 0; return 0; }
    grammar_state *w = malloc(2 * sizeof *w);
    if (!w) return -1;
    int r = -1;
    for (int i = 0; i < st0->n_alt && r < 0; i++) {
        w[0].dead = false;
        w[0].n_alt = 1;
        stack_copy(&w[0].alt[0], &st0->alt[i]);
        w[0].depth = w[0].alt[0].depth;
        r = complete_one(g, &w[0], &w[1], out, cap);
    }
    free(w);
    return r;
}

/* ---- token trie and mask ------------------------------------------------------------------- */

typedef struct tnode {
    int first_child, next_sibling;
    int tok_first;           /* tokens ending here: a chain through tok_next */
    unsigned char byte;
} tnode;

typedef struct trie { tnode *nodes; int n_nodes, cap; } trie;

struct grammar_vocab {
    trie all, rest, plaint;  /* every token; those that are not plain string text; the plain ones */
    int *tok_next_all, *tok_next_rest, *tok_next_plain;
    int n_tokens;
    int max_len;
    int n_plain;
    int *plain;              /* plain string-text tokens (no quote, backslash, control byte; whole
                                UTF-8 characters), by code point count */
    int *plain_cps;
    int n_ascii;
    int *ascii;              /* the plain tokens that are ASCII only (free object keys) */
};

static int trie_init(trie *t) {
    t->cap = 1024;
    t->nodes = malloc((size_t)t->cap * sizeof *t->nodes);
    if (!t->nodes) return -1;
    t->nodes[0] = (tnode){-1, -1, -1, 0};
    t->n_nodes = 1;
    return 0;
}

static int trie_child(trie *v, int parent, unsigned char b) {
    for (int c = v->nodes[parent].first_child; c >= 0; c = v->nodes[c].next_sibling)
        if (v->nodes[c].byte == b) return c;
    if (v->n_nodes == v->cap) {
        int ncap = v->cap * 2;
        tnode *nn = realloc(v->nodes, (size_t)ncap * sizeof *nn);
        if (!nn) return -1;
        v->nodes = nn;
        v->cap = ncap;
    }
    int c = v->n_nodes++;
    v->nodes[c] = (tnode){-1, v->nodes[parent].first_child, -1, b};
    v->nodes[parent].first_child = c;
    return c;
}

static int trie_add(trie *v, int *tok_next, int t, const char *bytes, int len) {
    int node = 0;
    for (int i = 0; i < len && node >= 0; i++) node = trie_child(v, node, (unsigned char)bytes[i]);
    if (node < 0) return -1;
    tok_next[t] = v->nodes[node].tok_first;
    v->nodes[node].tok_first = t;
    return 0;
}

/* Code points of a plain string-text token, -1 if it is not one. */
static int plain_cps(const unsigned char *s, int n) {
    int cps = 0;
    for (int i = 0; i < n;) {
        unsigned char b = s[i];
        if (b < 0x20 || b == 0x7f || b == '"' || b == '\\') return -1;
        int more = b < 0x80 ? 0 : b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : -1;
        if (more < 0 || i + more >= n) return -1; /* not a lead byte, or the character is split */
        unsigned lo = 0x80, hi = 0xbf;
        if (b == 0xe0) lo = 0xa0;
        if (b == 0xed) hi = 0x9f;
        if (b == 0xf0) lo = 0x90;
        if (b == 0xf4) hi = 0x8f;
        for (int k = 1; k <= more; k++) {
            unsigned c = s[i + k];
            if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xbf)) return -1;
        }
        i += more + 1;
        cps++;
    }
    return cps;
}

static int *g_sort_cps;
static int by_cps(const void *a, const void *b) {
    int x = g_sort_cps[*(const int *)a], y = g_sort_cps[*(const int *)b];
    return x < y ? -1 : x > y ? 1 : *(const int *)a - *(const int *)b;
}

grammar_vocab *grammar_vocab_new(const char *const *bytes, const int *lens, int n_tokens) {
    grammar_vocab *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    size_t nt = (size_t)(n_tokens > 0 ? n_tokens : 1);
    v->tok_next_all = malloc(nt * sizeof(int));
    v->tok_next_rest = malloc(nt * sizeof(int));
    v->tok_next_plain = malloc(nt * sizeof(int));
    v->plain = malloc(nt * sizeof(int));
    v->plain_cps = malloc(nt * sizeof(int));
    v->ascii = malloc(nt * sizeof(int));
    int *cps = malloc(nt * sizeof(int));
    if (!cps || !v->ascii || !v->tok_next_all || !v->tok_next_rest || !v->tok_next_plain || !v->plain || !v->plain_cps ||
        trie_init(&v->all) || trie_init(&v->rest) || trie_init(&v->plaint)) { free(cps); grammar_vocab_free(v); return NULL; }
    v->n_tokens = n_tokens;
    for (int t = 0; t < n_tokens; t++) {
        v->tok_next_all[t] = v->tok_next_rest[t] = v->tok_next_plain[t] = -1;
        cps[t] = -1;
        if (lens[t] <= 0) continue; /* special tokens: never allowed by bytes */
        if (trie_add(&v->all, v->tok_next_all, t, bytes[t], lens[t])) { free(cps); grammar_vocab_free(v); return NULL; }
        cps[t] = plain_cps((const unsigned char *)bytes[t], lens[t]);
        if (cps[t] == lens[t]) v->ascii[v->n_ascii++] = t;
        if (cps[t] >= 0) {
            v->plain[v->n_plain++] = t;
            if (trie_add(&v->plaint, v->tok_next_plain, t, bytes[t], lens[t])) { free(cps); grammar_vocab_free(v); return NULL; }
        } else if (trie_add(&v->rest, v->tok_next_rest, t, bytes[t], lens[t])) { free(cps); grammar_vocab_free(v); return NULL; }
        if (lens[t] > v->max_len) v->max_len = lens[t];
    }
    g_sort_cps = cps;
    qsort(v->plain, (size_t)v->n_plain, sizeof(int), by_cps);
    for (int i = 0; i < v->n_plain; i++) v->plain_cps[i] = cps[v->plain[i]];
    free(cps);
    return v;
}

void grammar_vocab_free(grammar_vocab *v) {
    if (!v) return;
    free(v->all.nodes);
    free(v->rest.nodes);
    free(v->plaint.nodes);
    free(v->tok_next_plain);
    free(v->tok_next_all);
    free(v->tok_next_rest);
    free(v->plain);
    free(v->plain_cps);
    free(v->ascii);
    free(v);
}

/* Collects the plain tokens the DFA takes from state s: a walk of the plain-token trie that
 * decodes UTF-8 on the way and cuts a subtree at the first refused character. */
static void rx_walk(const grammar_vocab *v, int node, const rdfa *d, int s, uint32_t cp, int rem, int *toks, int *n) {
    const trie *t = &v->plaint;
    for (int c = t->nodes[node].first_child; c >= 0; c = t->nodes[c].next_sibling) {
        unsigned b = t->nodes[c].byte;
        uint32_t ncp;
        int nrem, ns = s;
        if (rem == 0) {
            if (b < 0x80) { ncp = b; nrem = 0; }
            else if (b >= 0xc2 && b <= 0xf4) { nrem = b < 0xe0 ? 1 : b < 0xf0 ? 2 : 3; ncp = b & (nrem == 1 ? 0x1f : nrem == 2 ? 0x0f : 0x07); }
            else continue;
        } else {
            if ((b & 0xc0) != 0x80) continue;
            ncp = cp << 6 | (b & 0x3f);
            nrem = rem - 1;
        }
        if (nrem == 0) {
            if ((ns = dfa_next(d, s, ncp)) < 0) continue;
            for (int k = t->nodes[c].tok_first; k >= 0; k = v->tok_next_plain[k]) toks[(*n)++] = k;
        } else {
            uint32_t lo = ncp << (6 * nrem), hi = lo | ((1u << (6 * nrem)) - 1);
            if (!dfa_any(d, s, lo, hi)) continue;
        }
        rx_walk(v, c, d, ns, ncp, nrem, toks, n);
    }
}

/* Is the length limit far enough that it cannot refuse a plain token here? */
static bool rx_room(const gnode *n, const grammar_frame *f, const grammar_vocab *v) {
    if (n->max_len < 0) return true;
    int maxd = 0;
    for (int i = 0; i < n->rx->n; i++) if (n->rx->dist[i] > maxd) maxd = n->rx->dist[i];
    int maxc = v->n_plain ? v->plain_cps[v->n_plain - 1] : 0;
    return (long)n->max_len - (long)f->count > (long)maxc + maxd + 1;
}

/* Marks the plain tokens a pattern string accepts from DFA state `state` (computed once per
 * grammar, vocabulary and state, then cached). Returns how many, -1 if it could not cache. */
static int rx_cached(const grammar *gc, const grammar_vocab *v, int node, int state, bool *allowed) {
    grammar *g = (grammar *)gc; /* the cache is the only mutable part, under its lock */
    pthread_mutex_lock(&g->cache_mu);
    if (g->cache_vocab != v) {
        for (int i = 0; i < g->n_cache; i++) free(g->cache[i].toks);
        g->n_cache = 0;
        g->cache_bytes = 0;
        g->cache_vocab = v;
    }
    rxcache *e = NULL;
    for (int i = 0; i < g->n_cache && !e; i++)
        if (g->cache[i].node == node && g->cache[i].state == state) e = &g->cache[i];
    if (!e && g->cache_bytes < (64u << 20) && g->n_cache == g->cap_cache) {
        int nc = g->cap_cache ? 2 * g->cap_cache : 64;
        rxcache *ncache = realloc(g->cache, (size_t)nc * sizeof *ncache);
        if (ncache) { g->cache = ncache; g->cap_cache = nc; }
    }
    if (!e && g->cache_bytes < (64u << 20) && g->n_cache < g->cap_cache) {
        const rdfa *d = g->nodes[node].rx;
        int *toks = malloc((size_t)(v->n_plain + 1) * sizeof *toks), n = 0;
        if (toks) {
            rx_walk(v, 0, d, state, 0, 0, toks, &n);
            int *shrunk = realloc(toks, (size_t)(n + 1) * sizeof *toks);
            e = &g->cache[g->n_cache++];
            *e = (rxcache){node, state, n, shrunk ? shrunk : toks};
            g->cache_bytes += (size_t)(n + 1) * sizeof *toks;
        }
    }
    int k = -1;
    if (e) {
        for (int i = 0; i < e->n; i++) allowed[e->toks[i]] = true;
        k = e->n;
    }
    pthread_mutex_unlock(&g->cache_mu);
    return k;
}

typedef struct walker {
    const grammar *g;
    const trie *t;
    const int *tok_next;
    bool *allowed;
    int n_allowed;
    grammar_state *stack; /* one state per trie depth */
} walker;

static void walk(walker *w, int node, int depth) {
    const trie *v = w->t;
    for (int c = v->nodes[node].first_child; c >= 0; c = v->nodes[c].next_sibling) {
        if (!accept_byte(w->g, &w->stack[depth], &w->stack[depth + 1], v->nodes[c].byte)) continue;
        for (int t = v->nodes[c].tok_first; t >= 0; t = w->tok_next[t]) {
            w->allowed[t] = true;
            w->n_allowed++;
        }
        walk(w, c, depth + 1);
    }
}

int grammar_allowed(const grammar *g, const grammar_state *st, const grammar_vocab *v,
                    const int32_t *end_tokens, int n_end, bool *allowed) {
    memset(allowed, 0, (size_t)v->n_tokens * sizeof *allowed);
    /* one state per trie depth (only the frames in use are ever written) */
    grammar_state *scratch = malloc((size_t)(v->max_len + 2) * sizeof *scratch);
    if (!scratch) return 0;
    walker w = {g, &v->all, v->tok_next_all, allowed, 0, scratch};
    if (!st->dead) {
        state_copy(&w.stack[0], st);
        const grammar_frame *f = st->n_alt == 1 && st->alt[0].depth ? &st->alt[0].f[st->alt[0].depth - 1] : NULL;
        const gnode *n = f ? &g->nodes[f->node] : NULL;
        if (f && f->kind == F_STR && f->phase == S_CHAR && !n->rx) {
            /* plain text inside a string: every plain token that fits the length limit */
            long room = n->max_len >= 0 ? (long)n->max_len - (long)f->count : 0x7fffffff;
            for (int i = 0; i < v->n_plain && v->plain_cps[i] <= room; i++) allowed[v->plain[i]] = true, w.n_allowed++;
            w.t = &v->rest;
            w.tok_next = v->tok_next_rest;
        } else if (f && f->kind == F_STR && f->phase == S_CHAR && rx_room(n, f, v)) {
            int k = rx_cached(g, v, f->node, (int)f->seen, allowed);
            if (k >= 0) { w.n_allowed += k; w.t = &v->rest; w.tok_next = v->tok_next_rest; }
        } else if (f && f->kind == F_OBJ && f->phase == O_KEY && !f->aux && n->additional >= 0) {
            /* a free key: any ASCII text (declared-key prefixes included) */
            for (int i = 0; i < v->n_ascii; i++) allowed[v->ascii[i]] = true;
            w.n_allowed += v->n_ascii;
            w.t = &v->rest;
            w.tok_next = v->tok_next_rest;
        }
        walk(&w, 0, 0);
    }
    free(scratch);
    if (grammar_complete(g, st))
        for (int i = 0; i < n_end; i++)
            if (end_tokens[i] >= 0 && end_tokens[i] < v->n_tokens && !allowed[end_tokens[i]]) {
                allowed[end_tokens[i]] = true;
                w.n_allowed++;
            }
    return w.n_allowed;
}

/* ---- the fewest tokens of a whole answer --------------------------------------------------- */

/* One level of the search: distinct states (a hash over their live frames, open addressing). */
enum { MT_STATES = 256, MT_SLOTS = 512 };
typedef struct mt_set { grammar_state *st; int n; int slot[MT_SLOTS]; } mt_set;

static uint64_t mt_hash(const grammar_state *s) {
    uint64_t h = 1469598103934665603ull;
#define MT_MIX(x) (h = (h ^ (uint64_t)(x)) * 1099511628211ull)
    MT_MIX(s->n_alt);
    for (int i = 0; i < s->n_alt; i++) {
        const grammar_stack *a = &s->alt[i];
        MT_MIX(a->depth);
        for (int d = 0; d < a->depth; d++) {
            const grammar_frame *f = &a->f[d];
            MT_MIX(f->seen); MT_MIX(f->cand); MT_MIX(f->count); MT_MIX(f->node); MT_MIX(f->pos);
            MT_MIX((uint16_t)f->cur); MT_MIX(f->kind); MT_MIX(f->phase); MT_MIX(f->aux); MT_MIX(f->sp);
        }
    }
#undef MT_MIX
    return h;
}

static bool mt_frame_eq(const grammar_frame *a, const grammar_frame *b) {
    return a->seen == b->seen && a->cand == b->cand && a->count == b->count && a->node == b->node && a->pos == b->pos &&
           a->cur == b->cur && a->kind == b->kind && a->phase == b->phase && a->aux == b->aux && a->sp == b->sp;
}

static bool mt_equal(const grammar_state *a, const grammar_state *b) {
    if (a->n_alt != b->n_alt) return false;
    for (int i = 0; i < a->n_alt; i++) {
        if (a->alt[i].depth != b->alt[i].depth) return false;
        for (int d = 0; d < a->alt[i].depth; d++)
            if (!mt_frame_eq(&a->alt[i].f[d], &b->alt[i].f[d])) return false;
    }
    return true;
}

static void mt_clear(mt_set *s) {
    s->n = 0;
    for (int i = 0; i < MT_SLOTS; i++) s->slot[i] = -1;
}

/* Adds st unless a twin is there; false when the level is full. */
static bool mt_add(mt_set *s, const grammar_state *st) {
    unsigned h = (unsigned)(mt_hash(st) % MT_SLOTS);
    for (;; h = (h + 1) % MT_SLOTS) {
        if (s->slot[h] < 0) break;
        if (mt_equal(&s->st[s->slot[h]], st)) return true;
    }
    if (s->n == MT_STATES) return false;
    state_copy(&s->st[s->n], st);
    s->slot[h] = s->n++;
    return true;
}

typedef struct mt_walker {
    const grammar *g;
    grammar_state *stack; /* one state per trie depth */
    long *budget;         /* bytes fed, left */
    mt_set *out;
    bool stop;            /* out of budget or the level is full */
} mt_walker;

/* Every token of the trie below node that the automaton takes from stack[depth]: its state to out. */
static void mt_walk(mt_walker *w, const trie *t, int node, int depth) {
    for (int c = t->nodes[node].first_child; c >= 0 && !w->stop; c = t->nodes[c].next_sibling) {
        if (--*w->budget < 0) { w->stop = true; return; }
        if (!accept_byte(w->g, &w->stack[depth], &w->stack[depth + 1], t->nodes[c].byte)) continue;
        if (t->nodes[c].tok_first >= 0 && !mt_add(w->out, &w->stack[depth + 1])) { w->stop = true; return; }
        mt_walk(w, t, c, depth + 1);
    }
}

/* The states one token after st (the tokens grammar_allowed offers). Plain text inside a string
 * without a pattern only counts code points, so one state per count stands for all its tokens. */
static void mt_expand(mt_walker *w, const grammar_vocab *v, const grammar_state *st) {
    const grammar *g = w->g;
    state_copy(&w->stack[0], st);
    const grammar_frame *f = st->n_alt == 1 && st->alt[0].depth ? &st->alt[0].f[st->alt[0].depth - 1] : NULL;
    const gnode *n = f ? &g->nodes[f->node] : NULL;
    if (!(f && f->kind == F_STR && f->phase == S_CHAR && !n->rx)) { mt_walk(w, &v->all, 0, 0); return; }
    long room = n->max_len >= 0 ? (long)n->max_len - (long)f->count : 0x7fffffff;
    for (int i = 0; i < v->n_plain && v->plain_cps[i] <= room && !w->stop; i++) {
        if (i && v->plain_cps[i] == v->plain_cps[i - 1]) continue;
        state_copy(&w->stack[1], st);
        for (int k = 0; k < v->plain_cps[i]; k++) {
            if (--*w->budget < 0) { w->stop = true; return; }
            if (!accept_byte(g, &w->stack[1 + (k & 1)], &w->stack[2 - (k & 1)], 'a')) return; /* cannot happen: plain text */
        }
        if (!mt_add(w->out, &w->stack[1 + (v->plain_cps[i] & 1)])) w->stop = true;
    }
    mt_walk(w, &v->rest, 0, 0);
}

/* Tokens of one answer: the automaton's own completion from its start, cut greedily into the
 * longest tokens of v (each is a token the mask offers: its bytes continue an accepted text); an
 * end token after it when the value could go on. INT_MAX when there is none. */
static int mt_upper(const grammar *g, const grammar_vocab *v, bool can_end, grammar_state *st) {
    int cap = 1 << 16, n, toks = 0;
    char *s = malloc((size_t)cap);
    if (!s || (n = grammar_completion(g, st, s, cap)) < 0 || !grammar_accept(g, st, s, (size_t)n)) { free(s); return INT_MAX; }
    for (int i = 0; i < n; toks++) {
        int node = 0, best = 0;
        for (int k = i; k < n; k++) {
            int c = v->all.nodes[node].first_child;
            while (c >= 0 && v->all.nodes[c].byte != (unsigned char)s[k]) c = v->all.nodes[c].next_sibling;
            if (c < 0) break;
            node = c;
            if (v->all.nodes[c].tok_first >= 0) best = k - i + 1;
        }
        if (!best) { free(s); return INT_MAX; }
        i += best;
    }
    free(s);
    if (st->depth > 0) return can_end ? toks + 1 : INT_MAX;
    return toks;
}

int grammar_min_tokens(const grammar *g, const grammar_vocab *v, bool can_end, int limit, long budget) {
    mt_set *set = calloc(2, sizeof *set);
    grammar_state *mem = malloc((size_t)(2 * MT_STATES + v->max_len + 3) * sizeof *mem);
    if (!set || !mem) { free(set); free(mem); return -1; }
    set[0].st = mem;
    set[1].st = mem + MT_STATES;
    mt_walker w = {g, mem + 2 * MT_STATES, &budget, NULL, false};
    mt_clear(&set[0]);
    grammar_state_init(g, &set[0].st[0]);
    set[0].n = 1;
    grammar_state_init(g, &w.stack[0]);
    int upper = mt_upper(g, v, can_end, &w.stack[0]), r = -1;
    if (upper <= limit) { r = upper; goto done; }
    /* breadth first over the distinct states after 0, 1, 2, ... tokens */
    for (int level = 0;; level++) {
        mt_set *cur = &set[level & 1], *nx = &set[(level + 1) & 1];
        bool ends = false;
        for (int i = 0; i < cur->n; i++) {
            if (cur->st[i].depth == 0) { r = level; goto done; }
            ends = ends || (can_end && grammar_complete(g, &cur->st[i]));
        }
        if (ends) { r = level + 1; goto done; }     /* an end token after one of them */
        if (level + 1 >= upper) { r = upper; goto done; }
        if (cur->n == 0) { r = upper < INT_MAX ? upper : limit + 1; goto done; } /* no answer at all */
        mt_clear(nx);
        w.out = nx;
        for (int i = 0; i < cur->n && !w.stop; i++) mt_expand(&w, v, &cur->st[i]);
        if (w.stop) { r = level + 1 > limit ? level + 1 : -1; goto done; } /* none within level tokens */
    }
done:
    free(mem);
    free(set);
    return r;
}
