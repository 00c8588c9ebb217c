/* regex.c — the budgeted regular-expression engine (regex.h): an ECMA-262 subset (JSON Schema's
 * pattern and format, PEFT's pattern keys) parsed to an NFA and compiled to a DFA over code points
 * (subset construction, pruning, products and complements for lookaheads and formats), under a
 * per-request work budget. Strings in the grammar carry a state of these DFAs; core/lora_peft.c
 * matches module names with them. */
#include "text/regex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- regular expressions: ECMA-262 subset -> NFA -> DFA over code points ----------------- *
 * Syntax: literals, '.', classes [...] with ranges and negation, escapes \d \D \w \W \s \S \t \n
 * \r \f \v \0 \xHH \uHHHH and escaped punctuation, groups (...), (?:...), (?<name>...),
 * alternation, quantifiers * + ? {n} {n,} {n,m} (lazy forms match the same language), anchors
 * ^ and $. Without a leading ^ / trailing $ the pattern matches anywhere (JSON Schema's
 * "contains a match"): the compiled language is .* P .* with the anchors as assertions.
 * Rejected (error): backreferences, lookahead/lookbehind, \b \B, Unicode property escapes. */


static bool rx_spent(regex_budget *b) {
    if (b->cancel && *b->cancel) b->left = -1;
    return b->left < 0;
}

typedef struct rxrange {
    uint32_t lo, hi;
} rxrange;
typedef struct rcls {
    rxrange *r;
    int n;
} rcls;
enum { RN_CHAR, RN_SPLIT, RN_EPS, RN_BOL, RN_EOL, RN_MATCH };
typedef struct rnst {
    int type, out1, out2, cls;
} rnst;

enum { RA_CLS, RA_CAT, RA_ALT, RA_REP, RA_BOL, RA_EOL, RA_EMPTY };
typedef struct rast {
    int type, a, b, min, max, cls;
} rast; /* CAT/ALT: a,b children */

typedef struct rxc {
    const char *p, *end;
    rast *ast;
    int n_ast, cap_ast;
    rcls *cls;
    int n_cls, cap_cls;
    rnst *nfa;
    int n_nfa, cap_nfa;
    lfm2c_error *err;
    bool failed; /* failed: a message is set */
    int depth;
    regex_budget *budget; /* work units left for this request's patterns (see REGEX_BUDGET) */
} rxc;

/* An EINVAL with a formatted message (the compile errors of patterns and schemas). */
void regex_einval(lfm2c_error *err, const char *fmt, va_list ap) {
    char msg[sizeof err->msg];
    vsnprintf(msg, sizeof msg, fmt, ap);
    lfm2c_set_error(err, LFM2C_EINVAL, "%s", msg);
}

/* Sets the message of a pattern that cannot be compiled; returns -1. */
static int rx_fail(rxc *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int rx_fail(rxc *x, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    regex_einval(x->err, fmt, ap);
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
        x->ast = na;
        x->cap_ast = nc;
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
        x->cls = n;
        x->cap_cls = nc;
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
        for (int i = 0; i < t; i++)
            if (tmp[i].lo <= 0xFFFF) cls_add(x, c, tmp[i].lo, tmp[i].hi > 0xFFFF ? 0xFFFF : tmp[i].hi);
    }
    /* cut out the surrogates (never in UTF-8 text) */
    int n = k->n;
    for (int i = 0; i < n; i++) {
        rxrange r = k->r[i];
        if (r.hi < 0xD800 || r.lo > 0xDFFF) continue;
        if (r.lo < 0xD800 && r.hi > 0xDFFF) {
            k->r[i].hi = 0xD7FF;
            cls_add(x, c, 0xE000, r.hi);
        } else if (r.lo < 0xD800) k->r[i].hi = 0xD7FF;
        else if (r.hi > 0xDFFF) k->r[i].lo = 0xE000;
        else k->r[i].lo = 1, k->r[i].hi = 0; /* empty: dropped below */
    }
    m = 0;
    for (int i = 0; i < k->n; i++)
        if (k->r[i].lo <= k->r[i].hi) k->r[m++] = k->r[i];
    k->n = m;
    qsort(k->r, (size_t)k->n, sizeof *k->r, range_cmp);
}

static void add_named(rxc *x, int c, char e) {
    switch (e) {
    case 'd':
    case 'D': cls_add(x, c, '0', '9'); break;
    case 'w':
    case 'W':
        cls_add(x, c, '0', '9');
        cls_add(x, c, 'A', 'Z');
        cls_add(x, c, 'a', 'z');
        cls_add(x, c, '_', '_');
        break;
    case 's':
    case 'S':
        cls_add(x, c, 9, 13);
        cls_add(x, c, ' ', ' ');
        cls_add(x, c, 0xA0, 0xA0);
        cls_add(x, c, 0x1680, 0x1680);
        cls_add(x, c, 0x2000, 0x200A);
        cls_add(x, c, 0x2028, 0x2029);
        cls_add(x, c, 0x202F, 0x202F);
        cls_add(x, c, 0x205F, 0x205F);
        cls_add(x, c, 0x3000, 0x3000);
        cls_add(x, c, 0xFEFF, 0xFEFF);
        break;
    }
}

int regex_hexval(int ch) {
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
    case 'd':
    case 'D':
    case 'w':
    case 'W':
    case 's':
    case 'S': *named = e; return 2;
    case 't': *cp = 9; return 1;
    case 'n': *cp = 10; return 1;
    case 'r': *cp = 13; return 1;
    case 'f': *cp = 12; return 1;
    case 'v': *cp = 11; return 1;
    case '0': *cp = 0; return 1;
    case 'x':
    case 'u': {
        int nd = e == 'x' ? 2 : 4;
        uint32_t v = 0;
        if (e == 'u' && x->p < x->end && *x->p == '{') {
            x->p++;
            int k = 0;
            while (x->p < x->end && *x->p != '}' && regex_hexval(*x->p) >= 0 && k < 6)
                v = v * 16 + (uint32_t)regex_hexval(*x->p++), k++;
            if (x->p >= x->end || *x->p != '}' || !k || v > 0x10FFFF)
                return rx_fail(x, "bad \\u{...} escape in pattern");
            x->p++;
            *cp = v;
            return 1;
        }
        for (int i = 0; i < nd; i++) {
            if (x->p >= x->end || regex_hexval(*x->p) < 0) return rx_fail(x, "bad \\%c escape in pattern", e);
            v = v * 16 + (uint32_t)regex_hexval(*x->p++);
        }
        *cp = v;
        return 1;
    }
    case 'b':
    case 'B': return rx_fail(x, "pattern: word boundaries (\\b, \\B) are not supported");
    case 'p':
    case 'P': return rx_fail(x, "pattern: Unicode property escapes are not supported");
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
    if (x->p < x->end && *x->p == '^') {
        neg = true;
        x->p++;
    }
    bool first = true;
    for (;;) {
        if (x->p >= x->end) return rx_fail(x, "pattern: unterminated character class");
        if (*x->p == ']' && !first) {
            x->p++;
            break;
        }
        first = false;
        uint32_t lo;
        char named = 0;
        if (*x->p == '\\') {
            x->p++;
            if (x->p < x->end && *x->p == 'b') {
                x->p++;
                lo = 8;
            } else {
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
    if (ch == '[') {
        x->p++;
        return rx_class(x);
    }
    if (ch == '^') {
        x->p++;
        return rx_node(x, RA_BOL, -1, -1);
    }
    if (ch == '$') {
        x->p++;
        return rx_node(x, RA_EOL, -1, -1);
    }
    int c = cls_new(x);
    if (c < 0) return -1;
    if (ch == '.') {
        x->p++;
        cls_add(x, c, 10, 10);
        cls_add(x, c, 13, 13);
        cls_add(x, c, 0x2028, 0x2029);
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
    while (x->p < x->end && *x->p >= '0' && *x->p <= '9') {
        n = n * 10 + (*x->p++ - '0');
        if (n > 100000) n = 100000;
    }
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
        if (ch == '*') {
            mn = 0;
            mx = -1;
            x->p++;
        } else if (ch == '+') {
            mn = 1;
            mx = -1;
            x->p++;
        } else if (ch == '?') {
            mn = 0;
            mx = 1;
            x->p++;
        } else if (ch == '{') {
            const char *save = x->p++;
            if (!rx_number(x, &mn)) {
                x->p = save;
                return a;
            }
            mx = mn;
            if (x->p < x->end && *x->p == ',') {
                x->p++;
                if (!rx_number(x, &mx)) mx = -1;
            }
            if (x->p >= x->end || *x->p != '}') {
                x->p = save;
                return a;
            }
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
        x->nfa = n;
        x->cap_nfa = nc;
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

typedef struct dset {
    uint64_t *bits;
    int words;
} dset;

typedef struct dbuild {
    rxc *x;
    int words;
    uint64_t *sets; /* n * words */
    int n, cap;
    int *hash;
    int hcap; /* open addressing of state ids, -1 empty */
    regex_edge *edges;
    int n_edges, cap_edges;
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
        if (n->type == RN_SPLIT) {
            stack[sp++] = n->out1;
            stack[sp++] = n->out2;
        } else if (n->type == RN_EPS) stack[sp++] = n->out1;
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
        regex_edge *ne = realloc(b->edges, (size_t)nc * sizeof *ne);
        if (!ne) return -1;
        b->edges = ne;
        b->cap_edges = nc;
    }
    b->edges[b->n_edges++] = (regex_edge){lo, hi, to};
    return 0;
}

static int u32cmp(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

void regex_dfa_free(regex_dfa *d) {
    if (!d) return;
    free(d->first);
    free(d->edges);
    free(d->accept);
    free(d->dist);
    free(d->next_cp);
    free(d);
}

/* dfa_prune's first phase: each state's shortest distance to acceptance (-1: none), a breadth-first
 * search over the reversed edges. False when out of memory. */
static bool prune_distances(int n, const int *first, const regex_edge *edges, const unsigned char *accept, int *dist) {
    int n_e = first[n], *rfirst = calloc((size_t)n + 1, sizeof *rfirst),
        *rsrc = malloc(((size_t)n_e + 1) * sizeof *rsrc);
    int *queue = malloc((size_t)n * sizeof *queue);
    if (!rfirst || !rsrc || !queue) {
        free(rfirst);
        free(rsrc);
        free(queue);
        return false;
    }
    for (int e = 0; e < n_e; e++) rfirst[edges[e].to + 1]++;
    for (int i = 0; i < n; i++) rfirst[i + 1] += rfirst[i];
    for (int s = 0; s < n; s++)
        for (int e = first[s]; e < first[s + 1]; e++) rsrc[rfirst[edges[e].to]++] = s;
    for (int i = n; i > 0; i--) rfirst[i] = rfirst[i - 1];
    rfirst[0] = 0;
    int qh = 0, qt = 0;
    for (int i = 0; i < n; i++)
        if (accept[i]) queue[qt++] = i;
    while (qh < qt) {
        int t = queue[qh++];
        for (int k = rfirst[t]; k < rfirst[t + 1]; k++)
            if (dist[rsrc[k]] < 0) {
                dist[rsrc[k]] = dist[t] + 1;
                queue[qt++] = rsrc[k];
            }
    }
    free(rfirst);
    free(rsrc);
    free(queue);
    return true;
}

/* A code point on a shortest way from each state: a printable ASCII character that needs no escape
 * when one is there (a lowercase letter first). */
static void prune_next_cp(int n, const int *first, const regex_edge *edges, const int *dist, uint32_t *ncp) {
    for (int s = 0; s < n; s++) {
        int best = 3;
        for (int e = first[s]; e < first[s + 1] && dist[s] > 0; e++) {
            if (dist[edges[e].to] != dist[s] - 1) continue;
            uint32_t cp = edges[e].lo;
            int rank = 2;
            for (uint32_t c = 'a'; c <= 'z' && rank > 0; c++)
                if (c >= edges[e].lo && c <= edges[e].hi) {
                    cp = c;
                    rank = 0;
                }
            for (uint32_t c = 0x20; c < 0x7f && rank > 1; c++)
                if (c >= edges[e].lo && c <= edges[e].hi && c != '"' && c != '\\') {
                    cp = c;
                    rank = 1;
                }
            if (rank < best) {
                best = rank;
                ncp[s] = cp;
            }
        }
    }
}

/* The DFA of the states with a distance, renumbered in order (map: old to new, -1 dropped). */
static regex_dfa *prune_copy(int n, const int *first, const regex_edge *edges, const unsigned char *accept,
                             const int *dist, const uint32_t *ncp, int *map) {
    regex_dfa *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    int m = 0;
    for (int i = 0; i < n; i++) map[i] = dist[i] >= 0 ? m++ : -1;
    d->n = m;
    d->first = malloc((size_t)(m + 1) * sizeof *d->first);
    d->edges = malloc((size_t)(first[n] + 1) * sizeof *d->edges);
    d->accept = malloc((size_t)m);
    d->dist = malloc((size_t)m * sizeof *d->dist);
    d->next_cp = malloc((size_t)m * sizeof *d->next_cp);
    if (!d->first || !d->edges || !d->accept || !d->dist || !d->next_cp) {
        regex_dfa_free(d);
        return NULL;
    }
    int ne = 0;
    for (int s = 0; s < n; s++) {
        if (map[s] < 0) continue;
        int k = map[s];
        d->first[k] = ne;
        d->accept[k] = accept[s];
        d->dist[k] = dist[s];
        d->next_cp[k] = ncp[s];
        for (int e = first[s]; e < first[s + 1]; e++)
            if (map[edges[e].to] >= 0) {
                d->edges[ne] = edges[e];
                d->edges[ne++].to = map[edges[e].to];
            }
    }
    d->first[m] = ne;
    return d;
}

/* Keeps only states from which an accepting state is reachable; computes the distances:
 * prune_distances, prune_next_cp, prune_copy. */
static regex_dfa *dfa_prune(int n, const int *first, const regex_edge *edges, const unsigned char *accept) {
    int *dist = malloc((size_t)n * sizeof *dist);
    uint32_t *ncp = malloc((size_t)n * sizeof *ncp);
    if (!dist || !ncp) {
        free(dist);
        free(ncp);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        dist[i] = accept[i] ? 0 : -1;
        ncp[i] = 0;
    }
    regex_dfa *d = NULL;
    if (prune_distances(n, first, edges, accept, dist)) {
        prune_next_cp(n, first, edges, dist, ncp);
        int *map = dist[0] < 0 ? NULL : malloc((size_t)n * sizeof *map);
        if (map) d = prune_copy(n, first, edges, accept, dist, ncp, map);
        free(map);
    }
    free(dist);
    free(ncp);
    return d;
}

/* dfa_from_nfa's scratch: the closure stack and three state sets, the interval bounds. */
typedef struct dscratch {
    int *stack;
    uint64_t *tmp, *acc, *cur;
    uint32_t *bounds;
    int cap_bounds, cap_first;
} dscratch;

/* Room in b.first and b.accept for state s and the end mark. */
static bool dfa_room(dbuild *b, dscratch *w, int s) {
    if (s + 2 <= w->cap_first) return true;
    w->cap_first = 2 * (s + 2);
    int *nf = realloc(b->first, (size_t)w->cap_first * sizeof *nf);
    unsigned char *na = realloc(b->accept, (size_t)w->cap_first);
    if (nf) b->first = nf;
    if (na) b->accept = na;
    return nf && na;
}

/* The elementary intervals' bounds of the classes leaving set, sorted into w->bounds; their count or
 * -1 when out of memory. */
static int dfa_bounds(rxc *x, const uint64_t *set, dscratch *w) {
    int nb = 0;
    for (int t = 0; t < x->n_nfa; t++) {
        if (!(set[t >> 6] >> (t & 63) & 1) || x->nfa[t].type != RN_CHAR) continue;
        const rcls *c = &x->cls[x->nfa[t].cls];
        if (nb + 2 * c->n > w->cap_bounds) {
            w->cap_bounds = 2 * (nb + 2 * c->n) + 16;
            uint32_t *nbnd = realloc(w->bounds, (size_t)w->cap_bounds * sizeof *nbnd);
            if (!nbnd) return -1;
            w->bounds = nbnd;
        }
        for (int i = 0; i < c->n; i++) {
            w->bounds[nb++] = c->r[i].lo;
            w->bounds[nb++] = c->r[i].hi + 1;
        }
    }
    qsort(w->bounds, (size_t)nb, sizeof *w->bounds, u32cmp);
    return nb;
}

/* An edge from set for each elementary interval some transition takes, to the closure's state. */
static bool dfa_edges(dbuild *b, const uint64_t *set, dscratch *w, int nb) {
    rxc *x = b->x;
    for (int i = 0; i + 1 < nb; i++) {
        if (w->bounds[i] == w->bounds[i + 1]) continue;
        x->budget->left -= x->n_nfa;
        if (x->budget->left < 0) {
            rx_fail(x, "pattern too costly to compile (DFA construction over its budget)");
            return false;
        }
        uint32_t lo = w->bounds[i], hi = w->bounds[i + 1] - 1;
        memset(w->tmp, 0, (size_t)b->words * 8);
        bool any = false;
        for (int t = 0; t < x->n_nfa; t++) {
            if (!(set[t >> 6] >> (t & 63) & 1) || x->nfa[t].type != RN_CHAR) continue;
            const rcls *c = &x->cls[x->nfa[t].cls];
            for (int r = 0; r < c->n; r++)
                if (c->r[r].lo <= lo && lo <= c->r[r].hi) {
                    closure(x, w->tmp, x->nfa[t].out1, false, false, w->stack);
                    any = true;
                    break;
                }
        }
        if (!any) continue;
        int to = dstate(b, w->tmp);
        if (to < 0) {
            rx_fail(x, "pattern too complex (DFA over 4000 states)");
            return false;
        }
        if (push_edge(b, lo, hi, to)) return false;
    }
    return true;
}

/* DFA state s: its first edge, the budget, whether it accepts, then its edges. */
static bool dfa_state(dbuild *b, dscratch *w, int s, int match) {
    rxc *x = b->x;
    if (!dfa_room(b, w, s)) return false;
    b->first[s] = b->n_edges;
    x->budget->left -= 4L * x->n_nfa;
    if (rx_spent(x->budget)) {
        rx_fail(x, "pattern too costly to compile (DFA construction over its budget)");
        return false;
    }
    memcpy(w->cur, b->sets + (size_t)s * b->words, (size_t)b->words * 8); /* dstate may move b.sets */
    const uint64_t *set = w->cur;
    /* accepting: the end assertions lead to the match state */
    memset(w->acc, 0, (size_t)b->words * 8);
    for (int t = 0; t < x->n_nfa; t++)
        if (set[t >> 6] >> (t & 63) & 1) closure(x, w->acc, t, s == 0, true, w->stack);
    b->accept[s] = w->acc[match >> 6] >> (match & 63) & 1;
    int nb = dfa_bounds(x, set, w);
    return nb >= 0 && dfa_edges(b, set, w, nb);
}

/* The DFA of a parsed NFA (start state s0, match state): the start state's closure, dfa_state for each
 * state as they are found, dfa_prune. NULL + error. */
static regex_dfa *dfa_from_nfa(rxc *x, int s0, int match) {
    dbuild b = {0};
    b.x = x;
    b.words = (x->n_nfa + 63) / 64;
    dscratch w = {0};
    w.stack = malloc((size_t)(x->n_nfa * 2 + 2) * sizeof *w.stack);
    w.tmp = calloc((size_t)b.words, 8), w.acc = calloc((size_t)b.words, 8), w.cur = calloc((size_t)b.words, 8);
    regex_dfa *d = NULL;
    bool ok = w.stack && w.tmp && w.acc && w.cur;
    if (ok) {
        closure(x, w.tmp, s0, true, false, w.stack);
        ok = dstate(&b, w.tmp) == 0;
    }
    for (int s = 0; ok && s < b.n; s++) ok = dfa_state(&b, &w, s, match);
    if (ok) {
        b.first[b.n] = b.n_edges;
        d = dfa_prune(b.n, b.first, b.edges, b.accept);
        if (!d) rx_fail(x, "pattern can never match (or out of memory)");
    } else if (!x->failed) rx_oom(x);
    free(w.stack);
    free(w.tmp);
    free(w.acc);
    free(w.cur);
    free(w.bounds);
    free(b.sets);
    free(b.hash);
    free(b.edges);
    free(b.first);
    free(b.accept);
    return d;
}

/* A compiled pattern without lookarounds: "contains a match" (JSON Schema's rule) unless anchored. */
static regex_dfa *regex_compile1(const char *pat, size_t len, lfm2c_error *err, regex_budget *budget) {
    rxc x = {0};
    x.budget = budget;
    x.p = pat;
    x.end = pat + len;
    x.err = err;
    regex_dfa *d = NULL;
    int ast = rx_alt(&x);
    if (ast >= 0 && x.p < x.end) ast = rx_fail(&x, "pattern: unbalanced ')'");
    if (ast >= 0) {
        /* .* P .* with the anchors as assertions */
        int any = cls_new(&x);
        if (any >= 0) {
            cls_add(&x, any, 0, 0x10FFFF);
            cls_norm(&x, any, false);
        }
        int match = nfa_new(&x, RN_MATCH, -1, -1, -1);
        int tail = nfa_new(&x, RN_SPLIT, -1, match, -1);
        if (any >= 0 && match >= 0 && tail >= 0) {
            int t1 = nfa_new(&x, RN_CHAR, tail, -1, any);
            if (t1 >= 0) x.nfa[tail].out1 = t1;
            int body = nfa_build(&x, ast, tail);
            int head = body >= 0 ? nfa_new(&x, RN_SPLIT, -1, body, -1) : -1;
            if (head >= 0) {
                int h1 = nfa_new(&x, RN_CHAR, head, -1, any);
                if (h1 >= 0) {
                    x.nfa[head].out1 = h1;
                    d = dfa_from_nfa(&x, head, match);
                }
            }
        }
    }
    free(x.ast);
    for (int i = 0; i < x.n_cls; i++) free(x.cls[i].r);
    free(x.cls);
    free(x.nfa);
    return d;
}


/* The end of a group that opens at p ('('), or NULL: escapes and classes are skipped. */
static const char *group_end(const char *p, const char *end) {
    int depth = 0;
    bool cls = false;
    for (; p < end; p++) {
        if (*p == '\\') {
            p++;
            continue;
        }
        if (cls) {
            if (*p == ']') cls = false;
            continue;
        }
        if (*p == '[') cls = true;
        else if (*p == '(') depth++;
        else if (*p == ')' && --depth == 0) return p;
    }
    return NULL;
}

/* A pattern: lookaheads right after a leading '^' ("^(?!\\.)(?=.*\\d)REST") become
 * intersections: REST's language with X.* for (?=X), with the complement of X.* for (?!X).
 * Lookarounds anywhere else stay refused (by the parser). */
regex_dfa *regex_compile(const char *pat, size_t len, lfm2c_error *err, regex_budget *budget) {
    const char *end = pat + len, *p = pat;
    if (len < 4 || pat[0] != '^' || pat[1] != '(' || pat[2] != '?' || (pat[3] != '=' && pat[3] != '!'))
        return regex_compile1(pat, len, err, budget);
    p = pat + 1;
    const char *la[16];
    int n_la = 0;
    while (p + 3 < end && p[0] == '(' && p[1] == '?' && (p[2] == '=' || p[2] == '!')) {
        const char *e = group_end(p, end);
        if (!e) {
            lfm2c_set_error(err, LFM2C_EINVAL, "pattern: missing ')'");
            return NULL;
        }
        if (n_la == 16) {
            lfm2c_set_error(err, LFM2C_EINVAL, "pattern: more than 16 lookaheads");
            return NULL;
        }
        la[n_la++] = p;
        p = e + 1;
    }
    /* the rest, anchored */
    size_t rl = (size_t)(end - p);
    char *rest = malloc(rl + 2);
    if (!rest) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return NULL;
    }
    rest[0] = '^';
    memcpy(rest + 1, p, rl);
    rest[rl + 1] = 0;
    regex_dfa *d = regex_compile1(rest, rl + 1, err, budget);
    free(rest);
    for (int i = 0; i < n_la && d; i++) {
        const char *e = group_end(la[i], end);
        size_t bl = (size_t)(e - (la[i] + 3));
        char *body = malloc(bl + 6);
        if (!body) {
            regex_dfa_free(d);
            lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
            return NULL;
        }
        memcpy(body, "^(?:", 4);
        memcpy(body + 4, la[i] + 3, bl);
        memcpy(body + 4 + bl, ")", 2);
        regex_dfa *x = regex_compile1(body, bl + 5, err, budget);
        free(body);
        if (!x) {
            regex_dfa_free(d);
            return NULL;
        }
        if (la[i][2] == '!') {
            regex_dfa *nx = regex_dfa_complement(x, budget);
            regex_dfa_free(x);
            if (!nx) {
                regex_dfa_free(d);
                lfm2c_set_error(err, LFM2C_EINVAL, "pattern: a negative lookahead excludes every string");
                return NULL;
            }
            x = nx;
        }
        regex_dfa *r = regex_dfa_product(d, x, budget);
        regex_dfa_free(d);
        regex_dfa_free(x);
        d = r;
        if (!d)
            lfm2c_set_error(err, LFM2C_EINVAL, "%s",
                            budget->left < 0 ? "pattern too costly to compile (DFA construction over its budget)"
                                             : "pattern: the lookaheads leave no string that matches");
    }
    return d;
}

/* Intersection of two DFAs (a pattern and a format). */
regex_dfa *regex_dfa_product(const regex_dfa *a, const regex_dfa *b, regex_budget *budget) {
    int cap = 64, n = 1, *pa = malloc((size_t)cap * sizeof(int)), *pb = malloc((size_t)cap * sizeof(int));
    int *first = NULL;
    unsigned char *acc = NULL;
    regex_edge *edges = NULL;
    int n_edges = 0, cap_edges = 0;
    regex_dfa *d = NULL;
    bool ok = pa && pb;
    if (ok) {
        pa[0] = 0;
        pb[0] = 0;
    }
    for (int s = 0; ok && s < n; s++) {
        int *nf = realloc(first, (size_t)(s + 2) * sizeof *nf);
        unsigned char *na = realloc(acc, (size_t)(s + 1));
        if (nf) first = nf;
        if (na) acc = na;
        if (!nf || !na) {
            ok = false;
            break;
        }
        first[s] = n_edges;
        acc[s] = a->accept[pa[s]] && b->accept[pb[s]];
        for (int i = a->first[pa[s]]; i < a->first[pa[s] + 1] && ok; i++)
            for (int j = b->first[pb[s]]; j < b->first[pb[s] + 1]; j++) {
                uint32_t lo = a->edges[i].lo > b->edges[j].lo ? a->edges[i].lo : b->edges[j].lo;
                uint32_t hi = a->edges[i].hi < b->edges[j].hi ? a->edges[i].hi : b->edges[j].hi;
                if (lo > hi) continue;
                int ta = a->edges[i].to, tb = b->edges[j].to, to = -1;
                budget->left -= n;
                if (budget->left < 0) {
                    ok = false;
                    break;
                }
                for (int k = 0; k < n; k++)
                    if (pa[k] == ta && pb[k] == tb) {
                        to = k;
                        break;
                    }
                if (to < 0) {
                    if (n >= 4000) {
                        ok = false;
                        break;
                    }
                    if (n == cap) {
                        cap *= 2;
                        int *x1 = realloc(pa, (size_t)cap * sizeof(int)), *x2 = realloc(pb, (size_t)cap * sizeof(int));
                        if (x1) pa = x1;
                        if (x2) pb = x2;
                        if (!x1 || !x2) {
                            ok = false;
                            break;
                        }
                    }
                    pa[n] = ta;
                    pb[n] = tb;
                    to = n++;
                }
                if (n_edges == cap_edges) {
                    cap_edges = cap_edges ? 2 * cap_edges : 256;
                    regex_edge *ne = realloc(edges, (size_t)cap_edges * sizeof *ne);
                    if (!ne) {
                        ok = false;
                        break;
                    }
                    edges = ne;
                }
                edges[n_edges++] = (regex_edge){lo, hi, to};
            }
    }
    if (ok) {
        /* edges of a state are in a's order, then b's: sort each state's list by lo */
        for (int s = 0; s < n; s++) {
            int m = (s + 1 < n ? first[s + 1] : n_edges) - first[s];
            if (m < 2) continue; /* nothing to sort (and edges is NULL when no state has any) */
            regex_edge *e = edges + first[s];
            for (int i = 1; i < m; i++)
                for (int j = i; j > 0 && e[j].lo < e[j - 1].lo; j--) {
                    regex_edge t = e[j];
                    e[j] = e[j - 1];
                    e[j - 1] = t;
                }
        }
        first[n] = n_edges;
        d = dfa_prune(n, first, edges, acc);
    }
    free(pa);
    free(pb);
    free(first);
    free(acc);
    free(edges);
    return d;
}

/* The complement of a DFA over all code points but the surrogates: a sink state takes the code
 * points a state has no edge for, acceptance flips. NULL when empty or out of memory. */
regex_dfa *regex_dfa_complement(const regex_dfa *a, regex_budget *budget) {
    int n = a->n + 1, sink = a->n, cap = 2 * (a->first[a->n] + a->n) + 4, ne = 0;
    int *first = malloc((size_t)(n + 1) * sizeof *first);
    regex_edge *edges = malloc((size_t)cap * sizeof *edges);
    unsigned char *acc = malloc((size_t)n);
    regex_dfa *d = NULL;
    if (first && edges && acc) {
        static const rxrange SIGMA[2] = {{0, 0xD7FF}, {0xE000, 0x10FFFF}};
        for (int s = 0; s < n; s++) {
            first[s] = ne;
            acc[s] = s == sink ? 1 : !a->accept[s];
            int e = s == sink ? 0 : a->first[s], end = s == sink ? 0 : a->first[s + 1];
            for (int k = 0; k < 2; k++) {
                uint32_t at = SIGMA[k].lo;
                for (; e < end && a->edges[e].lo <= SIGMA[k].hi; e++) {
                    if (a->edges[e].lo > at) edges[ne++] = (regex_edge){at, a->edges[e].lo - 1, sink};
                    edges[ne++] = a->edges[e];
                    at = a->edges[e].hi + 1;
                }
                if (at <= SIGMA[k].hi) edges[ne++] = (regex_edge){at, SIGMA[k].hi, sink};
            }
        }
        first[n] = ne;
        budget->left -= ne;
        if (budget->left >= 0) d = dfa_prune(n, first, edges, acc);
    }
    free(first);
    free(edges);
    free(acc);
    return d;
}

/* The edge of state s taking code point cp, -1 if none. */
int regex_dfa_next(const regex_dfa *d, int s, uint32_t cp) {
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
bool regex_dfa_any(const regex_dfa *d, int s, uint32_t a, uint32_t b) {
    int lo = d->first[s], hi = d->first[s + 1] - 1, at = d->first[s + 1];
    while (lo <= hi) {
        int m = (lo + hi) / 2;
        if (d->edges[m].hi >= a) {
            at = m;
            hi = m - 1;
        } else lo = m + 1;
    }
    return at < d->first[s + 1] && d->edges[at].lo <= b;
}

/* Formats as patterns (each a subset of what RFC 3339 / 5321 / 3986 / 1123 / 4291 and the
 * common validators accept). */
const char *regex_format_pattern(const char *f) {
#define DATE \
    "\\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\\d|30)|02-(?:0[1-9]|1\\d|2[0-" \
    "8]))"
#define TIME "(?:[01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(?:\\.\\d{1,9})?(?:Z|[+-](?:[01]\\d|2[0-3]):[0-5]\\d)"
#define H16 "[0-9a-fA-F]{1,4}"
#define LABEL "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    static const struct {
        const char *name, *rx;
    } F[] = {
        {"date", "^" DATE "$"},
        {"time", "^" TIME "$"},
        {"date-time", "^" DATE "T" TIME "$"},
        {"duration", "^P(?:(?:\\d+Y(?:\\d+M)?(?:\\d+D)?|\\d+M(?:\\d+D)?|\\d+D)(?:T(?:\\d+H(?:\\d+M)?(?:\\d+S)?|\\d+M(?:"
                     "\\d+S)?|\\d+S))?"
                     "|T(?:\\d+H(?:\\d+M)?(?:\\d+S)?|\\d+M(?:\\d+S)?|\\d+S)|\\d+W)$"},
        {"email", "^[A-Za-z0-9_+-]+(?:\\.[A-Za-z0-9_+-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-"
                  "z]{2,24}$"},
        {"uuid", "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"},
        {"uri", "^[A-Za-z][A-Za-z0-9+.-]{0,15}://"
                "(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,20}[A-Za-z0-9])?\\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,20}[A-Za-z0-9])?"
                "(?::\\d{1,5})?(?:/(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})*)*"
                "(?:\\?(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?(?:#(?:[A-Za-z0-9._~!$&'()*+,;=:@/"
                "?-]|%[0-9A-Fa-f]{2})*)?$"},
        {"hostname", "^" LABEL "(?:\\." LABEL ")*$"},
        {"ipv4", "^(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)(?:\\.(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)){3}$"},
        {"ipv6", "^(?:" H16 "(?::" H16 "){7}|::(?:" H16 "(?::" H16 "){0,6})?)$"},
        {"url",
         "^https?://[a-z0-9]+(?:-[a-z0-9]+)*(?:\\.[a-z0-9]+(?:-[a-z0-9]+)*)*\\.[a-z]{2,24}(?:/[A-Za-z0-9._~-]*)*$"},
        {"uri-reference", "^(?:[A-Za-z][A-Za-z0-9+.-]{0,15}:)?(?:/?[A-Za-z0-9._~-]+)*/?$"},
        {"iri", "^[A-Za-z][A-Za-z0-9+.-]{0,15}://[A-Za-z0-9](?:[A-Za-z0-9-]{0,20}[A-Za-z0-9])?(?:/[A-Za-z0-9._~-]*)*$"},
        {"iri-reference", "^(?:[A-Za-z][A-Za-z0-9+.-]{0,15}:)?(?:/?[A-Za-z0-9._~-]+)*/?$"},
        {"uri-template", "^[A-Za-z0-9/:._~-]*$"},
        {"json-pointer", "^(?:/(?:[^~/]|~[01])*)*$"},
        {"relative-json-pointer", "^(?:0|[1-9][0-9]{0,8})(?:#|(?:/(?:[^~/]|~[01])*)*)$"},
        {"regex", "^[A-Za-z0-9 _-]*$"},
        {"byte", "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"},
        {"idn-email", "^[A-Za-z0-9_+-]+(?:\\.[A-Za-z0-9_+-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-"
                      "Za-z]{2,24}$"},
        {"idn-hostname", "^" LABEL "(?:\\." LABEL ")*$"},
        {"iso-time", "^" TIME "$"},
        {"iso-date-time", "^" DATE "T" TIME "$"},
    };
    for (size_t i = 0; i < sizeof F / sizeof *F; i++)
        if (!strcmp(f, F[i].name)) return F[i].rx;
    /* formats whose text is unchecked (ajv-formats: password, binary), and names outside the
     * standard and OpenAPI vocabularies, which validators treat as annotations */
    static const char *KNOWN[] = {"date",
                                  "time",
                                  "date-time",
                                  "duration",
                                  "email",
                                  "idn-email",
                                  "hostname",
                                  "idn-hostname",
                                  "ipv4",
                                  "ipv6",
                                  "uri",
                                  "uri-reference",
                                  "iri",
                                  "iri-reference",
                                  "uuid",
                                  "uri-template",
                                  "json-pointer",
                                  "relative-json-pointer",
                                  "regex",
                                  "url",
                                  "byte",
                                  "json-pointer-uri-fragment",
                                  NULL};
    for (int i = 0; KNOWN[i]; i++)
        if (!strcmp(f, KNOWN[i])) return NULL;
    return "";

#undef DATE
#undef TIME
#undef H16
#undef LABEL
}
