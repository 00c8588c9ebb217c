/* toolcall.c — turns LFM2 model output into tool calls + content (spec 6.3; the rules are in
 * toolcall.h and tests/data/toolcalls/README.md).
 *
 * Call arguments are Python literals, parsed here by a small recursive-descent reader straight into
 * jansson values (depth bounded, so hostile nesting is a parse failure, not a stack overflow).
 * JSON-mode regions are read by jansson first (exact JSON semantics such as "\/"), then by the
 * Python reader (which accepts JSON too) when they are not strict JSON. Arguments are printed by our
 * own compact writer so floats come out in their shortest round-trip form (0.1, not 0.1000...01). */
#include "chat/toolcall.h"

#include "lfm2c.h"
#include "base/buf.h"
#include "base/os.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 128 /* nesting of lists/dicts/tuples inside one argument value */

/* ---- growable byte buffer ---------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t n, cap;
    bool oom;
} strbuf;

static bool sb_reserve(strbuf *b, size_t extra) {
    if (b->oom) return false;
    char *p = lfm2c_grow(b->p, &b->cap, b->n, extra + 1, 1, 64);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    return true;
}

static void sb_add(strbuf *b, const void *s, size_t n) {
    if (!sb_reserve(b, n)) return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_putc(strbuf *b, char c) { sb_add(b, &c, 1); }
static void sb_puts(strbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* ---- UTF-8 -------------------------------------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at p (1..4), or 0 if the bytes there are not one. */
static size_t utf8_len(const unsigned char *p, size_t n) {
    if (n == 0) return 0;
    unsigned c = p[0];
    if (c < 0x80) return 1;
    size_t k;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) k = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        k = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if (n < k || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < k; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    return k;
}

static void sb_put_utf8(strbuf *b, unsigned long cp) {
    char s[4];
    size_t n;
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD; /* a lone surrogate has no UTF-8 form */
    if (cp < 0x80) {
        s[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        s[0] = (char)(0xC0 | cp >> 6);
        s[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        s[0] = (char)(0xE0 | cp >> 12);
        s[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        s[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        s[0] = (char)(0xF0 | cp >> 18);
        s[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        s[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        s[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    sb_add(b, s, n);
}

/* ---- compact JSON writer ------------------------------------------------------------------ */

/* A JSON string literal; bytes that are not well-formed UTF-8 become U+FFFD so the output is
 * always valid JSON whatever the model produced. */
static void write_json_string(strbuf *b, const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    sb_putc(b, '"');
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        if (c == '"' || c == '\\') {
            sb_putc(b, '\\');
            sb_putc(b, (char)c);
            i++;
        } else if (c == '\n') {
            sb_puts(b, "\\n");
            i++;
        } else if (c == '\t') {
            sb_puts(b, "\\t");
            i++;
        } else if (c == '\r') {
            sb_puts(b, "\\r");
            i++;
        } else if (c < 0x20 || c == 0x7F) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_puts(b, esc);
            i++;
        } else {
            size_t k = utf8_len(p + i, n - i);
            if (k) {
                sb_add(b, p + i, k);
                i += k;
            } else {
                sb_put_utf8(b, 0xFFFD);
                i++;
            }
        }
    }
    sb_putc(b, '"');
}

/* Shortest decimal form that reads back as the same double, laid out as Python's repr does
 * (1000.0, 0.0025, 1e+23, 2.5e-05): always with a '.' or an exponent so it stays a float.
 * Callers run under the C numeric locale. */
static void write_json_real(strbuf *b, double v) {
    char s[48];
    int prec = 1;
    for (; prec < 17; prec++) {
        snprintf(s, sizeof s, "%.*e", prec - 1, v);
        if (strtod(s, NULL) == v) break;
    }
    snprintf(s, sizeof s, "%.*e", prec - 1, v);
    int exp = atoi(strchr(s, 'e') + 1);
    if (exp >= -4 && exp < 16) {
        snprintf(s, sizeof s, "%.*f", prec - 1 - exp > 0 ? prec - 1 - exp : 0, v);
        sb_puts(b, s);
        if (!strchr(s, '.')) sb_puts(b, ".0");
    } else sb_puts(b, s);
}

static void write_json(strbuf *b, const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        size_t key_len;
        json_t *item;
        bool first = true;
        sb_putc(b, '{');
        json_object_keylen_foreach((json_t *)v, key, key_len, item) {
            if (!first) sb_putc(b, ',');
            first = false;
            write_json_string(b, key, key_len);
            sb_putc(b, ':');
            write_json(b, item);
        }
        sb_putc(b, '}');
        break;
    }
    case JSON_ARRAY:
        sb_putc(b, '[');
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) sb_putc(b, ',');
            write_json(b, json_array_get(v, i));
        }
        sb_putc(b, ']');
        break;
    case JSON_STRING: write_json_string(b, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: {
        char s[32];
        snprintf(s, sizeof s, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        sb_puts(b, s);
        break;
    }
    case JSON_REAL: write_json_real(b, json_real_value(v)); break;
    case JSON_TRUE: sb_puts(b, "true"); break;
    case JSON_FALSE: sb_puts(b, "false"); break;
    case JSON_NULL: sb_puts(b, "null"); break;
    }
}

/* strtod/snprintf must use '.' whatever locale the host program set (e.g. a chat UI calling
 * setlocale(LC_ALL, "")); the switch is per thread (base/os.h), so this is safe in a server. */
typedef os_c_numeric c_numeric;
static c_numeric c_numeric_begin(void) { return os_c_numeric_begin(); }
static void c_numeric_end(c_numeric s) { os_c_numeric_end(s); }

/* ---- Python literal reader ---------------------------------------------------------------- */

typedef struct {
    const char *p, *end;
    int depth;
    strbuf tmp; /* scratch for decoded strings and number text */
} cursor;

static bool is_space(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_ident_start(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_ident_char(int c) { return is_ident_start(c) || is_digit(c); }

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool at(const cursor *c, char ch) { return c->p < c->end && *c->p == ch; }

/* Whitespace and newlines between tokens, and Python's backslash line continuation. */
static void skip_ws(cursor *c) {
    while (c->p < c->end) {
        if (is_space((unsigned char)*c->p)) c->p++;
        else if (*c->p == '\\' && c->p + 1 < c->end && c->p[1] == '\n') c->p += 2;
        else if (*c->p == '\\' && c->p + 2 < c->end && c->p[1] == '\r' && c->p[2] == '\n') c->p += 3;
        else break;
    }
}

/* An identifier (ASCII letters, digits, '_', and any well-formed non-ASCII UTF-8 character, as
 * Python 3 allows); with `hyphen`, '-' may appear after the first character (OpenAI tool names
 * allow it). Returns its length, 0 if there is none at the cursor. */
static size_t ident_len(const char *s, const char *end, bool hyphen) {
    const unsigned char *p = (const unsigned char *)s, *e = (const unsigned char *)end;
    const unsigned char *q = p;
    while (q < e) {
        if (*q >= 0x80) {
            size_t k = utf8_len(q, (size_t)(e - q));
            if (!k) break;
            q += k;
        } else if (q == p ? is_ident_start(*q) : (is_ident_char(*q) || (hyphen && *q == '-'))) q++;
        else break;
    }
    return (size_t)(q - p);
}

/* Reads n hex digits at *pp into *cp. */
static bool read_hex(const char **pp, const char *end, int n, unsigned long *cp) {
    unsigned long v = 0;
    for (int i = 0; i < n; i++) {
        int h = *pp + i < end ? hexval((unsigned char)(*pp)[i]) : -1;
        if (h < 0) return false;
        v = v * 16 + (unsigned long)h;
    }
    *pp += n;
    *cp = v;
    return true;
}

/* One escape after a backslash (c->p is just past it), decoded into c->tmp. Python rules: an
 * unknown escape keeps its backslash ("\d" is two characters); a malformed \x \u \U fails. */
static bool read_escape(cursor *c) {
    if (c->p >= c->end) return false;
    char e = *c->p++;
    unsigned long cp;
    switch (e) {
    case '\n': return true; /* line continuation inside a string */
    case '\r':
        if (at(c, '\n')) c->p++;
        return true;
    case '\\':
    case '\'':
    case '"': sb_putc(&c->tmp, e); return true;
    case 'a': sb_putc(&c->tmp, '\a'); return true;
    case 'b': sb_putc(&c->tmp, '\b'); return true;
    case 'f': sb_putc(&c->tmp, '\f'); return true;
    case 'n': sb_putc(&c->tmp, '\n'); return true;
    case 'r': sb_putc(&c->tmp, '\r'); return true;
    case 't': sb_putc(&c->tmp, '\t'); return true;
    case 'v': sb_putc(&c->tmp, '\v'); return true;
    case 'x':
        if (!read_hex(&c->p, c->end, 2, &cp)) return false;
        sb_put_utf8(&c->tmp, cp);
        return true;
    case 'U':
        if (!read_hex(&c->p, c->end, 8, &cp) || cp > 0x10FFFF) return false;
        sb_put_utf8(&c->tmp, cp);
        return true;
    case 'u':
        if (!read_hex(&c->p, c->end, 4, &cp)) return false;
        /* A surrogate pair written as two escapes (JSON habit) is one character. */
        if (cp >= 0xD800 && cp <= 0xDBFF && c->end - c->p >= 6 && c->p[0] == '\\' && c->p[1] == 'u') {
            const char *q = c->p + 2;
            unsigned long lo;
            if (read_hex(&q, c->end, 4, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                c->p = q;
            }
        }
        sb_put_utf8(&c->tmp, cp);
        return true;
    default:
        if (e >= '0' && e <= '7') { /* octal, up to three digits */
            cp = (unsigned long)(e - '0');
            for (int i = 0; i < 2 && c->p < c->end && *c->p >= '0' && *c->p <= '7'; i++)
                cp = cp * 8 + (unsigned long)(*c->p++ - '0');
            sb_put_utf8(&c->tmp, cp);
            return true;
        }
        sb_putc(&c->tmp, '\\');
        c->p--; /* the character itself is read as ordinary text */
        return true;
    }
}

/* '...' or "..." (or a triple-quoted form); raw newlines inside are part of the string. */
static json_t *read_string(cursor *c) {
    char q = *c->p;
    bool triple = c->end - c->p >= 3 && c->p[1] == q && c->p[2] == q;
    c->p += triple ? 3 : 1;
    c->tmp.n = 0;
    for (;;) {
        if (c->p >= c->end) return NULL; /* unterminated */
        unsigned char ch = (unsigned char)*c->p;
        if (ch == (unsigned char)q) {
            if (!triple) {
                c->p++;
                break;
            }
            if (c->end - c->p >= 3 && c->p[1] == q && c->p[2] == q) {
                c->p += 3;
                break;
            }
            sb_putc(&c->tmp, q);
            c->p++;
        } else if (ch == '\\') {
            c->p++;
            if (!read_escape(c)) return NULL;
        } else if (ch < 0x80) {
            sb_putc(&c->tmp, (char)ch);
            c->p++;
        } else {
            size_t k = utf8_len((const unsigned char *)c->p, (size_t)(c->end - c->p));
            if (k) {
                sb_add(&c->tmp, c->p, k);
                c->p += k;
            } else {
                sb_put_utf8(&c->tmp, 0xFFFD);
                c->p++;
            }
        }
    }
    if (c->tmp.oom) return NULL;
    return json_stringn(c->tmp.n ? c->tmp.p : "", c->tmp.n);
}

/* Digits of the given base with Python's '_' separators, copied without them into c->tmp. */
static size_t read_digits(cursor *c, int base) {
    size_t n = 0;
    while (c->p < c->end) {
        int h = hexval((unsigned char)*c->p);
        if (h >= 0 && h < base) {
            sb_putc(&c->tmp, *c->p++);
            n++;
        } else if (*c->p == '_' && n && c->p + 1 < c->end && hexval((unsigned char)c->p[1]) >= 0 &&
                   hexval((unsigned char)c->p[1]) < base)
            c->p++;
        else break;
    }
    return n;
}

/* Python int / float literal with an optional sign: 12, -0.25, 1e3, 2.5E-3, .5, 5., 0x1F, 1_000. */
static json_t *read_number(cursor *c) {
    c->tmp.n = 0;
    if (at(c, '+') || at(c, '-')) {
        sb_putc(&c->tmp, *c->p++);
        skip_ws(c); /* Python reads "- 5" as -5 */
    }
    int base = 10;
    if (c->end - c->p >= 2 && c->p[0] == '0' && c->p[1] && strchr("xXoObB", c->p[1])) {
        base = c->p[1] == 'x' || c->p[1] == 'X' ? 16 : c->p[1] == 'o' || c->p[1] == 'O' ? 8 : 2;
        c->p += 2;
        if (!read_digits(c, base)) return NULL;
    } else {
        bool is_float = false;
        size_t n = read_digits(c, 10);
        if (at(c, '.')) {
            sb_putc(&c->tmp, *c->p++);
            n += read_digits(c, 10);
            is_float = true;
        }
        if (!n) return NULL;
        if ((at(c, 'e') || at(c, 'E'))) {
            const char *q = c->p + 1;
            if (q < c->end && (*q == '+' || *q == '-')) q++;
            if (q < c->end && is_digit((unsigned char)*q)) {
                sb_putc(&c->tmp, 'e');
                if (*(c->p + 1) == '-' || *(c->p + 1) == '+') sb_putc(&c->tmp, c->p[1]);
                c->p = q;
                read_digits(c, 10);
                is_float = true;
            }
        }
        if (c->tmp.oom) return NULL;
        if (is_float) {
            double v = strtod(c->tmp.p, NULL);
            return isfinite(v) ? json_real(v) : NULL;
        }
    }
    if (c->tmp.oom) return NULL;
    errno = 0;
    long long v = strtoll(c->tmp.p, NULL, base);
    if (errno == ERANGE) { /* beyond 64 bits: keep the magnitude as a float */
        if (base != 10) return NULL;
        double d = strtod(c->tmp.p, NULL);
        return isfinite(d) ? json_real(d) : NULL;
    }
    return json_integer(v);
}

static json_t *read_value(cursor *c);

/* Items up to `close` ("]" or ")"), commas between, a trailing comma allowed. */
static json_t *read_sequence(cursor *c, char close, bool *saw_comma) {
    json_t *arr = json_array();
    if (!arr) return NULL;
    *saw_comma = false;
    for (;;) {
        skip_ws(c);
        if (at(c, close)) {
            c->p++;
            return arr;
        }
        json_t *v = read_value(c);
        if (!v || json_array_append_new(arr, v)) break;
        skip_ws(c);
        if (at(c, ',')) {
            c->p++;
            *saw_comma = true;
            continue;
        }
        if (at(c, close)) {
            c->p++;
            return arr;
        }
        break;
    }
    json_decref(arr);
    return NULL;
}

/* {'key': value, ...} with string keys; a repeated key keeps the last value, as Python does. */
static json_t *read_dict(cursor *c) {
    json_t *obj = json_object();
    if (!obj) return NULL;
    c->p++;
    for (;;) {
        skip_ws(c);
        if (at(c, '}')) {
            c->p++;
            return obj;
        }
        json_t *key = read_value(c);
        if (!key || !json_is_string(key)) {
            json_decref(key);
            break;
        }
        skip_ws(c);
        json_t *v = NULL;
        if (at(c, ':')) {
            c->p++;
            skip_ws(c);
            v = read_value(c);
        }
        int bad = !v || json_object_setn_new(obj, json_string_value(key), json_string_length(key), v);
        json_decref(key);
        if (bad) break;
        skip_ws(c);
        if (at(c, ',')) {
            c->p++;
            continue;
        }
        if (at(c, '}')) {
            c->p++;
            return obj;
        }
        break;
    }
    json_decref(obj);
    return NULL;
}

static json_t *read_value_inner(cursor *c) {
    if (c->p >= c->end) return NULL;
    unsigned char ch = (unsigned char)*c->p;
    bool comma;
    if (ch == '"' || ch == '\'') return read_string(c);
    if (ch == '[') {
        c->p++;
        return read_sequence(c, ']', &comma);
    }
    if (ch == '(') { /* a tuple becomes a list; "(x)" without a comma is just x */
        c->p++;
        json_t *t = read_sequence(c, ')', &comma);
        if (t && json_array_size(t) == 1 && !comma) {
            json_t *x = json_incref(json_array_get(t, 0));
            json_decref(t);
            return x;
        }
        return t;
    }
    if (ch == '{') return read_dict(c);
    if (is_digit(ch) || ch == '-' || ch == '+' || ch == '.') return read_number(c);
    size_t n = ident_len(c->p, c->end, false);
    static const struct {
        const char *word;
        json_type type;
    } words[] = {
        {"True", JSON_TRUE}, {"False", JSON_FALSE}, {"None", JSON_NULL},
        {"true", JSON_TRUE}, {"false", JSON_FALSE}, {"null", JSON_NULL},
    };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (strlen(words[i].word) == n && !memcmp(c->p, words[i].word, n)) {
            c->p += n;
            return words[i].type == JSON_TRUE ? json_true() : words[i].type == JSON_FALSE ? json_false() : json_null();
        }
    }
    return NULL; /* any other bare word (a variable, a call) is not a literal */
}

static json_t *read_value(cursor *c) {
    if (c->depth >= MAX_DEPTH) return NULL;
    c->depth++;
    json_t *v = read_value_inner(c);
    c->depth--;
    return v;
}

/* ---- calls --------------------------------------------------------------------------------- */

typedef struct {
    char *name;
    json_t *args; /* object */
} raw_call;

typedef struct {
    raw_call *v;
    int n, cap;
} call_list;

static void calls_clear(call_list *l) {
    for (int i = 0; i < l->n; i++) {
        free(l->v[i].name);
        json_decref(l->v[i].args);
    }
    l->n = 0;
}

/* Takes ownership of args. */
static bool calls_push(call_list *l, const char *name, size_t name_len, json_t *args) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 4;
        raw_call *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) {
            json_decref(args);
            return false;
        }
        l->v = v;
        l->cap = cap;
    }
    char *s = malloc(name_len + 1);
    if (!s) {
        json_decref(args);
        return false;
    }
    memcpy(s, name, name_len);
    s[name_len] = 0;
    l->v[l->n++] = (raw_call){s, args};
    return true;
}

/* A dotted function name: ident ('.' ident)*. Returns its length or 0. */
static size_t name_len(const char *p, const char *end) {
    size_t n = 0;
    for (;;) {
        size_t k = ident_len(p + n, end, true);
        if (!k) return 0;
        n += k;
        if (p + n + 1 < end && p[n] == '.' && ident_len(p + n + 1, end, true)) n++;
        else return n;
    }
}

/* name(key=value, ...): keyword arguments only (a positional argument has no name to go under). */
static bool read_call(cursor *c, call_list *out) {
    size_t nlen = name_len(c->p, c->end);
    if (!nlen) return false;
    const char *name = c->p;
    c->p += nlen;
    skip_ws(c);
    if (!at(c, '(')) return false;
    c->p++;
    json_t *args = json_object();
    if (!args) return false;
    for (;;) {
        skip_ws(c);
        if (at(c, ')')) {
            c->p++;
            return calls_push(out, name, nlen, args);
        }
        size_t klen = ident_len(c->p, c->end, false);
        if (!klen) break;
        const char *key = c->p;
        c->p += klen;
        skip_ws(c);
        if (!at(c, '=') || (c->p + 1 < c->end && c->p[1] == '=')) break;
        c->p++;
        skip_ws(c);
        json_t *v = read_value(c);
        if (!v) break;
        /* Python rejects a repeated keyword; so do we rather than silently drop one. */
        if (json_object_getn(args, key, klen) || json_object_setn_new(args, key, klen, v)) {
            json_decref(v);
            break;
        }
        skip_ws(c);
        if (at(c, ',')) {
            c->p++;
            continue;
        }
        if (at(c, ')')) {
            c->p++;
            return calls_push(out, name, nlen, args);
        }
        break;
    }
    json_decref(args);
    return false;
}

/* JSON mode: {"name": "f", "arguments": {...} | "<JSON object text>" | missing}. */
static bool call_from_object(const json_t *o, call_list *out) {
    const json_t *name = json_object_get(o, "name");
    if (!json_is_string(name) || !json_string_length(name)) return false;
    const char *s = json_string_value(name);
    size_t n = json_string_length(name);
    if (memchr(s, 0, n)) return false;
    const json_t *a = json_object_get(o, "arguments");
    if (!a) a = json_object_get(o, "parameters"); /* the other spelling some models use */
    json_t *args;
    if (!a || json_is_null(a)) args = json_object();
    else if (json_is_object(a)) args = json_incref((json_t *)a);
    else if (json_is_string(a)) {
        args = json_loadb(json_string_value(a), json_string_length(a), JSON_ALLOW_NUL, NULL);
        if (args && !json_is_object(args)) {
            json_decref(args);
            args = NULL;
        }
    } else args = NULL;
    if (!args) return false;
    return calls_push(out, s, n, args);
}

/* [call, call, ...]; in a marked region an element may also be a JSON-mode object. */
static bool read_call_list(cursor *c, call_list *out, bool allow_objects) {
    if (!at(c, '[')) return false;
    c->p++;
    for (;;) {
        skip_ws(c);
        if (at(c, ']')) {
            c->p++;
            return true;
        }
        if (at(c, '{')) {
            if (!allow_objects) return false;
            json_t *o = read_value(c);
            bool ok = o && call_from_object(o, out);
            json_decref(o);
            if (!ok) return false;
        } else if (!read_call(c, out)) return false;
        skip_ws(c);
        if (at(c, ',')) {
            c->p++;
            continue;
        }
        if (at(c, ']')) {
            c->p++;
            return true;
        }
        return false;
    }
}

/* The text of one marked region: a Pythonic or JSON call list (also tolerated: a single call or a
 * single JSON object without the brackets). Nothing else may be in the region. */
static bool parse_region(const char *p, size_t n, call_list *out, cursor *c) {
    c->p = p;
    c->end = p + n;
    c->depth = 0;
    skip_ws(c);
    if (c->p >= c->end) return false;
    if (*c->p == '[' || *c->p == '{') { /* strict JSON first */
        json_t *j = json_loadb(c->p, (size_t)(c->end - c->p), JSON_ALLOW_NUL, NULL);
        if (j) {
            bool ok = true;
            if (json_is_object(j)) ok = call_from_object(j, out);
            else
                for (size_t i = 0; ok && i < json_array_size(j); i++) {
                    json_t *e = json_array_get(j, i);
                    ok = json_is_object(e) && call_from_object(e, out);
                }
            json_decref(j);
            return ok;
        }
    }
    bool ok;
    if (*c->p == '[') ok = read_call_list(c, out, true);
    else if (*c->p == '{') {
        json_t *o = read_value(c);
        ok = o && call_from_object(o, out);
        json_decref(o);
    } else ok = read_call(c, out);
    skip_ws(c);
    return ok && c->p == c->end;
}

/* Does text (starting at its first non-space byte) begin "[" name "("? 1 yes, 0 no, -1 cannot tell
 * yet (the text ends first). Shared by the one-shot parse and the stream so both decide alike. */
static int bare_list_start(const char *p, size_t n) {
    const char *end = p + n, *q = p;
    if (q >= end) return -1;
    if (*q++ != '[') return 0;
    while (q < end && is_space((unsigned char)*q)) q++;
    if (q >= end) return -1;
    for (;;) { /* name = ident ('.' ident)* */
        size_t k = ident_len(q, end, true);
        if (!k) return (end - q < 4 && (unsigned char)*q >= 0x80) ? -1 : 0; /* split UTF-8 */
        q += k;
        if (q >= end) return -1;
        if (*q != '.') break;
        if (++q >= end) return -1;
    }
    while (q < end && is_space((unsigned char)*q)) q++;
    if (q >= end) return -1;
    return *q == '(' ? 1 : 0;
}

/* ---- whole output ------------------------------------------------------------------------ */

static const char *find(const char *hay, size_t n, const char *needle) {
    return memmem(hay, n, needle, strlen(needle));
}

/* Rule 5: each piece outside the calls stripped of surrounding whitespace, empty ones dropped,
 * the rest joined by one newline. */
static void add_piece(strbuf *content, const char *p, size_t n) {
    while (n && is_space((unsigned char)*p)) {
        p++;
        n--;
    }
    while (n && is_space((unsigned char)p[n - 1])) n--;
    if (!n) return;
    if (content->n) sb_putc(content, '\n');
    sb_add(content, p, n);
}

static bool finish_result(toolcall_result *out, call_list *calls, strbuf *content, bool parsed, const char *text,
                          size_t len) {
    memset(out, 0, sizeof *out);
    out->parsed = parsed;
    if (!parsed) { /* rule 6: the whole output, nothing extracted */
        calls_clear(calls);
        content->n = 0;
        sb_add(content, text, len);
    }
    if (!sb_reserve(content, 0)) return false;
    out->content = content->p;
    out->content_len = content->n;
    content->p = NULL;
    if (calls->n) {
        out->calls = calloc((size_t)calls->n, sizeof *out->calls);
        if (!out->calls) return false;
        out->n_calls = calls->n;
        for (int i = 0; i < calls->n; i++) {
            strbuf a = {0};
            write_json(&a, calls->v[i].args);
            if (!sb_reserve(&a, 0)) {
                free(a.p);
                return false;
            }
            out->calls[i].arguments = a.p;
            out->calls[i].name = calls->v[i].name;
            calls->v[i].name = NULL;
        }
    }
    return true;
}

bool toolcall_parse(const char *text, size_t len, toolcall_result *out) {
    if (!text) len = 0;
    if (!text) text = "";
    call_list calls = {0};
    strbuf content = {0};
    cursor c = {0};
    bool parsed = true, any_region = false;
    c_numeric loc = c_numeric_begin();

    if (!find(text, len, TOOLCALL_START) && !find(text, len, TOOLCALL_END)) {
        /* Rule 4: a bare list at the very start (after whitespace) of a marker-free output. */
        size_t i = 0;
        while (i < len && is_space((unsigned char)text[i])) i++;
        if (bare_list_start(text + i, len - i) == 1) {
            any_region = true;
            c.p = text + i;
            c.end = text + len;
            parsed = read_call_list(&c, &calls, false);
            if (parsed) add_piece(&content, c.p, (size_t)(c.end - c.p));
        }
    } else {
        /* Rule 1: every start..end region is a call list; a missing end runs to the end. */
        const size_t ls = strlen(TOOLCALL_START), le = strlen(TOOLCALL_END);
        size_t pos = 0;
        while (parsed) {
            const char *s = find(text + pos, len - pos, TOOLCALL_START);
            if (!s) {
                add_piece(&content, text + pos, len - pos);
                break;
            }
            add_piece(&content, text + pos, (size_t)(s - (text + pos)));
            any_region = true;
            size_t body = (size_t)(s - text) + ls;
            const char *e = find(text + body, len - body, TOOLCALL_END);
            size_t body_end = e ? (size_t)(e - text) : len;
            parsed = parse_region(text + body, body_end - body, &calls, &c);
            pos = e ? body_end + le : len;
        }
    }
    if (parsed && !any_region) { /* no call at all: the output exactly as it is */
        content.n = 0;
        sb_add(&content, text, len);
    }
    c_numeric_end(loc);
    bool ok = !content.oom && !c.tmp.oom && finish_result(out, &calls, &content, parsed, text, len);
    calls_clear(&calls);
    free(calls.v);
    free(content.p);
    free(c.tmp.p);
    if (!ok) {
        toolcall_result_free(out);
        memset(out, 0, sizeof *out);
    }
    return ok;
}

void toolcall_result_free(toolcall_result *r) {
    if (!r) return;
    for (int i = 0; r->calls && i < r->n_calls; i++) {
        free(r->calls[i].name);
        free(r->calls[i].arguments);
    }
    free(r->calls);
    free(r->content);
    memset(r, 0, sizeof *r);
}

char *toolcall_result_to_json(const toolcall_result *r) {
    strbuf b = {0};
    sb_puts(&b, "{\"content\":");
    write_json_string(&b, r->content ? r->content : "", r->content_len);
    sb_puts(&b, ",\"tool_calls\":[");
    for (int i = 0; i < r->n_calls; i++) {
        if (i) sb_putc(&b, ',');
        sb_puts(&b, "{\"name\":");
        write_json_string(&b, r->calls[i].name, strlen(r->calls[i].name));
        sb_puts(&b, ",\"arguments\":");
        sb_puts(&b, r->calls[i].arguments);
        sb_putc(&b, '}');
    }
    sb_puts(&b, r->parsed ? "],\"parsed\":true}" : "],\"parsed\":false}");
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

json_t *toolcall_openai_json(const toolcall_result *r, toolcall_id_fn make_id, void *ctx) {
    json_t *arr = json_array();
    for (int i = 0; arr && i < r->n_calls; i++) {
        char id[64];
        make_id(ctx, id, sizeof id);
        json_t *call = json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", id, "type", "function", "function", "name",
                                 r->calls[i].name, "arguments", r->calls[i].arguments);
        if (!call || json_array_append_new(arr, call)) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

/* ---- streaming ------------------------------------------------------------------------------ */

enum { STREAM_START, STREAM_TEXT, STREAM_HOLD };

struct toolcall_stream {
    strbuf buf;     /* everything fed so far */
    size_t emitted; /* buf[0, emitted) was returned as content */
    size_t scanned; /* no start marker begins before this offset */
    int mode;       /* START: only whitespace or an undecided "[..." so far; TEXT: plain text
                       until a marker; HOLD: the rest waits for finish (calls, or a bare list) */
};

toolcall_stream *toolcall_stream_new(void) { return calloc(1, sizeof(toolcall_stream)); }

void toolcall_stream_free(toolcall_stream *s) {
    if (!s) return;
    free(s->buf.p);
    free(s);
}

/* Length of the longest suffix of p[0,n) that is a proper prefix of the start marker. */
static size_t marker_prefix_suffix(const char *p, size_t n) {
    size_t lm = strlen(TOOLCALL_START);
    for (size_t k = lm - 1 < n ? lm - 1 : n; k > 0; k--)
        if (!memcmp(p + n - k, TOOLCALL_START, k)) return k;
    return 0;
}

/* Moves `end` back so that it does not cut a UTF-8 character in two. */
static size_t utf8_cut(const char *p, size_t start, size_t end) {
    for (size_t j = end, back = 0; j > start && back < 4; back++) {
        unsigned char b = (unsigned char)p[--j];
        if ((b & 0xC0) == 0x80) continue; /* continuation byte */
        size_t want = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
        return j + want > end ? j : end;
    }
    return end;
}

const char *toolcall_stream_feed(toolcall_stream *s, const char *piece, size_t len, size_t *n) {
    *n = 0;
    if (len) sb_add(&s->buf, piece, len);
    if (s->buf.oom) return NULL;
    const char *b = s->buf.p ? s->buf.p : "";
    size_t total = s->buf.n;
    if (s->mode == STREAM_START) {
        size_t i = s->scanned;
        while (i < total && is_space((unsigned char)b[i])) i++;
        s->scanned = i;
        if (i == total) return b + s->emitted;
        if (b[i] == '[') {
            int bare = bare_list_start(b + i, total - i);
            if (bare < 0) return b + s->emitted;
            if (bare > 0) {
                s->mode = STREAM_HOLD;
                return b + s->emitted;
            }
        }
        s->mode = STREAM_TEXT;
        s->scanned = 0;
    }
    if (s->mode == STREAM_HOLD) return b + s->emitted;
    size_t from = s->scanned > s->emitted ? s->scanned : s->emitted;
    const char *m = find(b + from, total - from, TOOLCALL_START);
    size_t safe;
    if (m) {
        safe = (size_t)(m - b);
        s->mode = STREAM_HOLD;
    } else {
        safe = total - marker_prefix_suffix(b, total);
        s->scanned = safe;
    }
    while (safe > s->emitted && is_space((unsigned char)b[safe - 1])) safe--; /* may border a call */
    safe = utf8_cut(b, s->emitted, safe);
    const char *out = b + s->emitted;
    *n = safe - s->emitted;
    s->emitted = safe;
    return out;
}

bool toolcall_stream_finish(toolcall_stream *s, toolcall_result *out, const char **tail, size_t *tail_len) {
    if (s->buf.oom || !toolcall_parse(s->buf.p, s->buf.n, out)) return false;
    const char *shown = s->buf.p ? s->buf.p : "";
    size_t k = s->emitted, lead = 0;
    /* What was shown is a prefix of the content, except for leading whitespace that the content
     * strips when calls follow. */
    if (!(k <= out->content_len && !memcmp(out->content, shown, k)))
        while (lead < k && is_space((unsigned char)shown[lead])) lead++;
    if (k - lead <= out->content_len && !memcmp(out->content, shown + lead, k - lead)) {
        *tail = out->content + (k - lead);
        *tail_len = out->content_len - (k - lead);
    } else { /* cannot happen by construction; show nothing rather than repeat text */
        *tail = out->content + out->content_len;
        *tail_len = 0;
    }
    return true;
}

/* ---- public API ------------------------------------------------------------------------------ */

char *lfm2c_parse_tool_calls(const char *text, size_t len) {
    if (!text) return NULL;
    toolcall_result r;
    if (!toolcall_parse(text, len, &r)) return NULL;
    char *json = toolcall_result_to_json(&r);
    toolcall_result_free(&r);
    return json;
}

size_t toolcall_before_cut(const char *text, size_t n) {
    static const char start[] = TOOLCALL_START, end[] = TOOLCALL_END;
    const char *last = NULL;
    for (const char *p = text; p && (size_t)(p - text) < n;) {
        const char *q = memmem(p, n - (size_t)(p - text), start, sizeof start - 1);
        if (!q) break;
        last = q;
        p = q + sizeof start - 1;
    }
    if (!last || memmem(last, n - (size_t)(last - text), end, sizeof end - 1)) return n;
    return (size_t)(last - text);
}

/* ---- the writer ------------------------------------------------------------------------------ */

typedef struct wbuf {
    char *p;
    size_t n, cap;
    bool oom;
} wbuf;

static void w_add(wbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap * 2 + n + 64;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void w_json(wbuf *b, const json_t *v) {
    char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!t) {
        b->oom = true;
        return;
    }
    w_add(b, t, strlen(t));
    free(t);
}

/* A JSON value as a Python literal (True/False/None, lists, dicts with string keys). */
static void w_py(wbuf *b, const json_t *v) {
    if (json_is_true(v)) {
        w_add(b, "True", 4);
        return;
    }
    if (json_is_false(v)) {
        w_add(b, "False", 5);
        return;
    }
    if (json_is_null(v)) {
        w_add(b, "None", 4);
        return;
    }
    if (json_is_array(v)) {
        w_add(b, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) w_add(b, ", ", 2);
            w_py(b, json_array_get(v, i));
        }
        w_add(b, "]", 1);
        return;
    }
    if (json_is_object(v)) {
        w_add(b, "{", 1);
        const char *k;
        json_t *x;
        int i = 0;
        json_object_foreach((json_t *)v, k, x) {
            if (i++) w_add(b, ", ", 2);
            json_t *ks = json_string(k);
            if (ks) w_json(b, ks);
            else b->oom = true;
            json_decref(ks);
            w_add(b, ": ", 2);
            w_py(b, x);
        }
        w_add(b, "}", 1);
        return;
    }
    w_json(b, v); /* strings and numbers are the same in both */
}

char *toolcall_format(const json_t *calls, size_t *len) {
    if (!json_is_array(calls)) return NULL;
    wbuf b = {0};
    w_add(&b, TOOLCALL_START "[", sizeof TOOLCALL_START);
    for (size_t k = 0; k < json_array_size(calls); k++) {
        const json_t *c = json_array_get(calls, k);
        const char *name = json_string_value(json_object_get(c, "name"));
        const json_t *args = json_object_get(c, "arguments");
        if (!name || !*name || !json_is_object(args)) {
            free(b.p);
            return NULL;
        }
        if (k) w_add(&b, ", ", 2);
        w_add(&b, name, strlen(name));
        w_add(&b, "(", 1);
        const char *key;
        json_t *v;
        int j = 0;
        json_object_foreach((json_t *)args, key, v) {
            if (j++) w_add(&b, ", ", 2);
            w_add(&b, key, strlen(key));
            w_add(&b, "=", 1);
            w_py(&b, v);
        }
        w_add(&b, ")", 1);
    }
    w_add(&b, "]" TOOLCALL_END, sizeof TOOLCALL_END);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    if (len) *len = b.n;
    return b.p;
}
