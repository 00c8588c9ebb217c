/* jinja.c — a small Jinja2 interpreter for chat templates (see jinja.h).
 *
 * Pipeline: the source is normalised (newlines, trailing newline) and cut into tokens (text,
 * tag delimiters, expression tokens), whitespace control applied as jinja2's lexer does; a
 * recursive-descent parser builds an AST; the evaluator walks it over a dynamically typed value.
 * The built-ins it calls (filters, tests, the str / dict / list methods, the global functions,
 * printf-style %) are jinja_builtins.c's; what the two files share is jinja_internal.h.
 *
 * Memory: everything a parse or a render creates lives in an arena freed at once at the end.
 * Values are immutable once built (the sandbox is immutable; only namespaces change), so they
 * can be shared freely without reference counts. Errors unwind with longjmp to the entry point,
 * which is safe because nothing outside the arena needs cleaning up.
 *
 * A template is a program from a file we did not write, run on every request: a render has a
 * budget (jinja_options: steps, output bytes, memory, evaluation depth, wall time, a cancel flag)
 * charged where work happens — every node evaluated, every list item and string byte built, every
 * element compared or searched — and checked often, so no template can run away with a thread.
 * Sizes and indices are computed with checked arithmetic (Python ints are unbounded; ours are
 * int64, and an overflow is a clean render error, never a wrap). */
#include "base/error.h"
#include "chat/jinja_internal.h"
#include "base/clock.h"
#include "base/os.h"

#include <ctype.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena ---------------------------------------------------------------------------------- */

typedef struct arena_blk {
    struct arena_blk *next;
    size_t used, cap;
    _Alignas(16) char data[];
} arena_blk;

struct arena {
    arena_blk *blk;
    size_t total, limit;
    bool shared;       /* a render's: counted against the process's bound too */
    bool process_full; /* an allocation failed for the process's bound */
};

/* Bytes held by all renders in progress, and their bound (jinja_set_process_memory). */
static _Atomic size_t render_total;
static _Atomic size_t render_bound = JINJA_PROCESS_MEMORY;

void jinja_set_process_memory(size_t bytes) { atomic_store(&render_bound, bytes ? bytes : JINJA_PROCESS_MEMORY); }
size_t jinja_process_memory_in_use(void) { return atomic_load(&render_total); }

static void *arena_alloc(arena *a, size_t n) {
    if (n > a->limit) return NULL; /* also keeps the rounding below from wrapping */
    n = (n + 15) & ~(size_t)15;
    if (!a->blk || a->blk->cap - a->blk->used < n) {
        size_t cap = n > 65536 - sizeof(arena_blk) ? n : 65536 - sizeof(arena_blk);
        if (a->total + cap > a->limit) return NULL;
        if (a->shared && atomic_fetch_add(&render_total, cap) + cap > atomic_load(&render_bound)) {
            atomic_fetch_sub(&render_total, cap);
            a->process_full = true;
            return NULL;
        }
        arena_blk *b = malloc(sizeof *b + cap);
        if (!b) {
            if (a->shared) atomic_fetch_sub(&render_total, cap);
            return NULL;
        }
        b->next = a->blk, b->used = 0, b->cap = cap;
        a->blk = b;
        a->total += cap;
    }
    void *p = a->blk->data + a->blk->used;
    a->blk->used += n;
    return p;
}

static void arena_free(arena *a) {
    if (a->shared) atomic_fetch_sub(&render_total, a->total);
    for (arena_blk *b = a->blk, *nx; b; b = nx) nx = b->next, free(b);
    a->blk = NULL;
    a->total = 0;
}

/* ---- errors: both the parser and the evaluator unwind to their entry point ------------------- */

/* What a render may still spend (NULL while parsing: the parser is linear in the source). */
struct budget {
    uint64_t steps, max_steps, next_check;
    double deadline;          /* CLOCK_MONOTONIC seconds */
    const atomic_int *cancel; /* non-zero: stop */
};

static _Noreturn void failv(jfail *f, int code, int line, const char *fmt, va_list ap) {
    if (f->err) {
        f->err->code = code;
        int k = line > 0 ? snprintf(f->err->msg, sizeof f->err->msg, "template line %d: ", line)
                         : snprintf(f->err->msg, sizeof f->err->msg, "template: ");
        vsnprintf(f->err->msg + k, sizeof f->err->msg - (size_t)k, fmt, ap);
        /* a message cut at the buffer's end must not end inside a UTF-8 character */
        size_t n = strlen(f->err->msg), j = n;
        while (j > 0 && ((unsigned char)f->err->msg[j - 1] & 0xC0) == 0x80) j--;
        if (j > 0 && (unsigned char)f->err->msg[j - 1] >= 0xC0) {
            unsigned char lead = (unsigned char)f->err->msg[j - 1];
            size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
            if (n - (j - 1) < need) f->err->msg[j - 1] = 0;
        }
        for (char *s = f->err->msg; *s; s++)
            if (*s == '\n' || *s == '\r') *s = ' '; /* one line */
    }
    longjmp(f->jb, 1);
}

_Noreturn __attribute__((format(printf, 3, 4))) void fail(jfail *f, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    failv(f, LFM2C_EINVAL, line, fmt, ap);
}

_Noreturn __attribute__((format(printf, 4, 5))) void fail_code(jfail *f, int code, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    failv(f, code, line, fmt, ap);
}

/* Charges n units of work to the render; fails when the steps, the time or the caller run out. */
void tick(jfail *f, uint64_t n) {
    budget *b = f->bud;
    if (!b) return;
    b->steps += n;
    if (b->steps < b->next_check) return;
    b->next_check = b->steps + 4096;
    if (b->steps > b->max_steps)
        fail_code(f, LFM2C_EINVAL, 0, "the template exceeded its budget of %llu steps",
                  (unsigned long long)b->max_steps);
    if (b->cancel && atomic_load(b->cancel)) fail_code(f, LFM2C_ECANCELLED, 0, "template rendering cancelled");
    if (lfm2c_now_s() > b->deadline) fail_code(f, LFM2C_EINVAL, 0, "the template exceeded its time budget");
}

void *xalloc(jfail *f, size_t n) {
    tick(f, 1 + n / 256);
    void *p = arena_alloc(f->a, n ? n : 1);
    if (!p && f->a->process_full)
        fail_code(f, LFM2C_ENOMEM, 0,
                  "out of memory (the renders in progress hold the process's %zu MiB for templates)",
                  atomic_load(&render_bound) >> 20);
    if (!p) fail_code(f, LFM2C_ENOMEM, 0, "out of memory (the template needs more than %zu MiB)", f->a->limit >> 20);
    return p;
}

/* Before a loop that repeats `unit` bytes or items `count` times: charges the whole loop to the
 * budget (at least one step per repetition, an empty unit too) and refuses output that could
 * never fit the render's memory, so no repetition runs or allocates past the budget. */
void charge_repeat(jfail *f, int line, uint64_t count, uint64_t unit, uint64_t elem_size, const char *what) {
    uint64_t work, bytes;
    if (__builtin_mul_overflow(count, unit ? unit : 1, &work)) work = UINT64_MAX;
    if (__builtin_mul_overflow(count, unit, &bytes) || __builtin_mul_overflow(bytes, elem_size, &bytes))
        bytes = UINT64_MAX;
    budget *b = f->bud;
    if (b && work > b->max_steps - (b->steps < b->max_steps ? b->steps : b->max_steps))
        fail_code(f, LFM2C_EINVAL, line, "%s too large: the template exceeded its budget of %llu steps", what,
                  (unsigned long long)b->max_steps);
    if (bytes > f->a->limit)
        fail_code(f, LFM2C_ENOMEM, line, "%s too large: out of memory (the template's is %zu MiB)", what,
                  f->a->limit >> 20);
    tick(f, work);
}

/* ---- UTF-8 helpers ----------------------------------------------------------------------------- */

/* Decodes one code point at s (n bytes left); *len gets its byte length. Inputs are validated
 * UTF-8, but a stray byte still decodes as itself rather than reading past the end. */
uint32_t utf8_dec(const char *s, size_t n, int *len) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80 || n < 2) {
        *len = 1;
        return u[0];
    }
    if ((u[0] & 0xE0) == 0xC0) {
        *len = 2;
        return ((u[0] & 0x1Fu) << 6) | (u[1] & 0x3Fu);
    }
    if ((u[0] & 0xF0) == 0xE0 && n >= 3) {
        *len = 3;
        return ((u[0] & 0x0Fu) << 12) | ((u[1] & 0x3Fu) << 6) | (u[2] & 0x3Fu);
    }
    if ((u[0] & 0xF8) == 0xF0 && n >= 4) {
        *len = 4;
        return ((u[0] & 0x07u) << 18) | ((u[1] & 0x3Fu) << 12) | ((u[2] & 0x3Fu) << 6) | (u[3] & 0x3Fu);
    }
    *len = 1;
    return u[0];
}

int utf8_enc(uint32_t c, char *o) {
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xC0 | (c >> 6));
        o[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | (c >> 12));
        o[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (c >> 18));
    o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

static bool utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        int k = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!k || i + (size_t)k > n) return false;
        for (int j = 1; j < k; j++)
            if ((u[i + j] & 0xC0) != 0x80) return false;
        if (k > 1) {
            int l;
            uint32_t cp = utf8_dec(s + i, n - i, &l);
            if ((k == 2 && cp < 0x80) || (k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
                (cp >= 0xD800 && cp <= 0xDFFF))
                return false;
        }
        i += (size_t)k;
    }
    return true;
}

size_t utf8_count(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

/* Byte offset of code point index ci (ci <= count). */
static size_t utf8_offset(const char *s, size_t n, size_t ci) {
    size_t i = 0;
    for (; i < n && ci; ci--) {
        int l;
        utf8_dec(s + i, n - i, &l);
        i += (size_t)l;
    }
    return i;
}

/* Python's str.isspace(). */
bool u_isspace(uint32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Python's str.isprintable() for repr(); Cn (unassigned) is not known here. */
static bool u_isprintable(uint32_t c) {
    if (c < 0x20 || (c >= 0x7F && c <= 0xA0)) return false;
    if (c == 0xAD || c == 0x1680 || (c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F) ||
        (c >= 0x205F && c <= 0x2064) || (c >= 0x2066 && c <= 0x206F) || c == 0x3000 || c == 0xFEFF ||
        (c >= 0xFFF9 && c <= 0xFFFB) || (c >= 0x600 && c <= 0x605) || c == 0x61C || c == 0x6DD || c == 0x70F ||
        c == 0x180E || (c >= 0xD800 && c <= 0xF8FF) || c >= 0xF0000 || (c >= 0xE0000 && c <= 0xE007F))
        return false;
    return true;
}

/* ---- values (the type and its constructors: jinja_internal.h) ------------------------------ */

static size_t mul_size(jfail *f, size_t a, size_t b) {
    size_t r;
    if (__builtin_mul_overflow(a, b, &r)) fail_code(f, LFM2C_ENOMEM, 0, "out of memory (size overflow)");
    return r;
}

list *list_new(jfail *f, size_t cap) {
    list *l = xzalloc(f, sizeof *l);
    l->cap = cap ? cap : 4;
    l->v = xalloc(f, mul_size(f, l->cap, sizeof(value)));
    return l;
}

void list_push(jfail *f, list *l, value v) {
    if (l->n == l->cap) {
        value *nv = xalloc(f, mul_size(f, 2 * l->cap, sizeof(value)));
        memcpy(nv, l->v, l->n * sizeof(value));
        l->v = nv;
        l->cap *= 2;
    }
    l->v[l->n++] = v;
    tick(f, 1);
}

dict *dict_new(jfail *f, size_t cap) {
    dict *d = xzalloc(f, sizeof *d);
    d->cap = cap ? cap : 4;
    d->k = xalloc(f, mul_size(f, d->cap, sizeof(value)));
    d->v = xalloc(f, mul_size(f, d->cap, sizeof(value)));
    return d;
}

long dict_find(const dict *d, value k) {
    for (size_t i = 0; i < d->n; i++)
        if (v_eq(d->k[i], k)) return (long)i;
    return -1;
}

long dict_find_str(const dict *d, const char *s, size_t n) {
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == V_STR && d->k[i].u.s.n == n && !memcmp(d->k[i].u.s.p, s, n)) return (long)i;
    return -1;
}

/* Appends without looking for an existing key (caller knows it is new). */
static void dict_append(jfail *f, dict *d, value k, value v) {
    if (d->n == d->cap) {
        value *nk = xalloc(f, 2 * d->cap * sizeof(value)), *nv = xalloc(f, 2 * d->cap * sizeof(value));
        memcpy(nk, d->k, d->n * sizeof(value));
        memcpy(nv, d->v, d->n * sizeof(value));
        d->k = nk, d->v = nv, d->cap *= 2;
    }
    d->k[d->n] = k;
    d->v[d->n++] = v;
}

/* Python dict assignment: an existing key keeps its position. */
void dict_set(jfail *f, dict *d, value k, value v) {
    long i = dict_find(d, k);
    if (i >= 0) d->v[i] = v;
    else dict_append(f, d, k, v);
}

bool v_eq_d(value a, value b, int depth) {
    if (depth > 10000) return false;
    if (v_num(a) && v_num(b)) {
        if (a.t == V_FLOAT || b.t == V_FLOAT) return v_asf(a) == v_asf(b);
        return v_asi(a) == v_asi(b);
    }
    if (a.t != b.t) return false;
    switch (a.t) {
    case V_UNDEF:
    case V_NONE: return true;
    case V_STR: return a.u.s.n == b.u.s.n && !memcmp(a.u.s.p, b.u.s.p, a.u.s.n);
    case V_LIST:
        if (a.u.l->n != b.u.l->n) return false;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!v_eq_d(a.u.l->v[i], b.u.l->v[i], depth + 1)) return false;
        return true;
    case V_DICT:
        if (a.u.d->n != b.u.d->n) return false;
        for (size_t i = 0; i < a.u.d->n; i++) {
            long j = dict_find(b.u.d, a.u.d->k[i]);
            if (j < 0 || !v_eq_d(a.u.d->v[i], b.u.d->v[j], depth + 1)) return false;
        }
        return true;
    case V_NS: return a.u.d == b.u.d;
    case V_FUNC: return a.u.fn == b.u.fn;
    default: return false;
    }
}

bool v_truthy(value v) {
    switch (v.t) {
    case V_UNDEF:
    case V_NONE: return false;
    case V_BOOL: return v.u.b;
    case V_INT: return v.u.i != 0;
    case V_FLOAT: return v.u.f != 0.0;
    case V_STR: return v.u.s.n != 0;
    case V_LIST: return v.u.l->n != 0;
    case V_DICT: return v.u.d->n != 0;
    default: return true;
    }
}

const char *v_typename(value v) {
    static const char *names[] = {"Undefined", "NoneType", "bool", "int",       "float",
                                  "str",       "list",     "dict", "Namespace", "function"};
    if (v.t == V_LIST && v.u.l->tuple) return "tuple";
    return names[v.t];
}

/* ---- string buffer -------------------------------------------------------------------------- */

void sb_put(jfail *f, sbuf *b, const char *s, size_t n) {
    tick(f, 1 + n / 256);
    if (n > f->a->limit || b->n + n + 1 > f->a->limit)
        fail_code(f, LFM2C_ENOMEM, 0, "out of memory (string too large)");
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *np = xalloc(f, cap);
        if (b->n) memcpy(np, b->p, b->n);
        b->p = np, b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static __attribute__((format(printf, 3, 4))) void sb_printf(jfail *f, sbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(f, b, tmp, (size_t)(k < (int)sizeof tmp ? k : (int)sizeof tmp - 1));
}

/* ---- Python number formatting ------------------------------------------------------------------ */

/* repr(float): the shortest digit string that reads back to the same double, written in fixed
 * notation when the decimal exponent is in [-4, 16), else as d.ddde+XX. */
static void fmt_float(jfail *f, sbuf *b, double x) {
    if (isnan(x)) {
        sb_puts(f, b, "nan");
        return;
    }
    if (isinf(x)) {
        sb_puts(f, b, x < 0 ? "-inf" : "inf");
        return;
    }
    if (x == 0) {
        sb_puts(f, b, signbit(x) ? "-0.0" : "0.0");
        return;
    }
    char tmp[40];
    for (int prec = 0; prec < 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec, x);
        if (strtod(tmp, NULL) == x) break;
    }
    char digits[24];
    int nd = 0, neg = tmp[0] == '-';
    const char *p = tmp + neg;
    for (; *p && *p != 'e'; p++)
        if (isdigit((unsigned char)*p)) digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    if (neg) sb_putc(f, b, '-');
    if (exp >= -4 && exp < 16) {
        if (exp >= 0) {
            for (int i = 0; i <= exp; i++) sb_putc(f, b, i < nd ? digits[i] : '0');
            sb_putc(f, b, '.');
            if (nd > exp + 1) sb_put(f, b, digits + exp + 1, (size_t)(nd - exp - 1));
            else sb_putc(f, b, '0');
        } else {
            sb_puts(f, b, "0.");
            for (int i = 0; i < -exp - 1; i++) sb_putc(f, b, '0');
            sb_put(f, b, digits, (size_t)nd);
        }
    } else {
        sb_putc(f, b, digits[0]);
        if (nd > 1) {
            sb_putc(f, b, '.');
            sb_put(f, b, digits + 1, (size_t)nd - 1);
        }
        sb_printf(f, b, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
}

/* ---- tokens and lexer ----------------------------------------------------------------------- */

typedef enum { T_TEXT, T_VBEGIN, T_VEND, T_BBEGIN, T_BEND, T_NAME, T_STR, T_INT, T_FLOAT, T_OP, T_EOF } ttype;

typedef struct token {
    ttype t;
    int line;
    const char *p; /* text, name, operator, or decoded string literal */
    size_t n;
    int64_t i;
    double f;
} token;

typedef struct lexer {
    jfail *f;
    const char *s;
    size_t n, pos;
    int line;
    token *tk;
    int ntk, cap;
} lexer;

static token *lex_push(lexer *L, ttype t_type, int line, const char *p, size_t n) {
    if (L->ntk == L->cap) {
        int cap = L->cap ? L->cap * 2 : 256;
        token *nt = xalloc(L->f, (size_t)cap * sizeof *nt);
        if (L->ntk) memcpy(nt, L->tk, (size_t)L->ntk * sizeof *nt);
        L->tk = nt, L->cap = cap;
    }
    token *t = &L->tk[L->ntk++];
    memset(t, 0, sizeof *t);
    t->t = t_type;
    t->line = line;
    t->p = p;
    t->n = n;
    return t;
}

static int count_nl(const char *s, size_t n) {
    int k = 0;
    for (size_t i = 0; i < n; i++) k += s[i] == '\n';
    return k;
}

/* Length of s without its trailing (Unicode) whitespace: Python's rstrip(). */
static size_t rstrip_len(const char *s, size_t n) {
    while (n > 0) {
        size_t j = n - 1;
        while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
        int l;
        if (!u_isspace(utf8_dec(s + j, n - j, &l))) break;
        n = j;
    }
    return n;
}

/* Bytes of leading (Unicode) whitespace: Python's lstrip(). */
static size_t lstrip_len(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        int l;
        if (!u_isspace(utf8_dec(s + i, n - i, &l))) break;
        i += (size_t)l;
    }
    return i;
}

static int hexval(char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* A string literal's body, decoded as jinja2 does (Python's unicode-escape rules). */
static void lex_decode_string(lexer *L, token *t, const char *s, size_t n) {
    char *o = xalloc(L->f, n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) {
            o[k++] = s[i];
            continue;
        }
        char e = s[++i];
        uint32_t cp;
        switch (e) {
        case '\n': continue;
        case '\\':
        case '\'':
        case '"': o[k++] = e; continue;
        case 'a': o[k++] = 7; continue;
        case 'b': o[k++] = 8; continue;
        case 'f': o[k++] = 12; continue;
        case 'n': o[k++] = '\n'; continue;
        case 'r': o[k++] = '\r'; continue;
        case 't': o[k++] = '\t'; continue;
        case 'v': o[k++] = 11; continue;
        case 'x':
        case 'u':
        case 'U': {
            int nd = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            cp = 0;
            for (int d = 0; d < nd; d++) {
                int h = i + 1 + (size_t)d < n ? hexval(s[i + 1 + (size_t)d]) : -1;
                if (h < 0) fail(L->f, t->line, "truncated \\%c escape in a string literal", e);
                cp = cp * 16 + (uint32_t)h;
            }
            i += (size_t)nd;
            break;
        }
        default:
            if (e >= '0' && e <= '7') {
                cp = (uint32_t)(e - '0');
                for (int d = 0; d < 2 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7'; d++)
                    cp = cp * 8 + (uint32_t)(s[++i] - '0');
                break;
            }
            if (e == 'N') fail(L->f, t->line, "\\N{...} escapes are not supported");
            o[k++] = '\\';
            o[k++] = e;
            continue;
        }
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            fail(L->f, t->line, "string literal escape gives an invalid code point U+%04X", cp);
        k += (size_t)utf8_enc(cp, o + k);
    }
    o[k] = 0;
    t->p = o;
    t->n = k;
}

/* lex_tag's phases: each reads one token at c (left bytes to the end) and moves L->pos past it. */

/* The tag's end (with its '-' or '+'), at depth 0 only: true when it was there. */
static bool lex_tag_end(lexer *L, bool is_block, const char *c, size_t left, bool *strip_after) {
    const char *end = is_block ? "%}" : "}}";
    if (left >= 3 && (c[0] == '-' || c[0] == '+') && !memcmp(c + 1, end, 2)) {
        lex_push(L, is_block ? T_BEND : T_VEND, L->line, c, 3);
        L->pos += 3;
        *strip_after = c[0] == '-';
        return true;
    }
    if (left >= 2 && !memcmp(c, end, 2)) {
        lex_push(L, is_block ? T_BEND : T_VEND, L->line, c, 2);
        L->pos += 2;
        *strip_after = false;
        return true;
    }
    return false;
}

/* names: ASCII letters, digits, '_', and (as Python identifiers) non-ASCII characters */
static void lex_name(lexer *L, const char *c, size_t left) {
    size_t i = 0;
    while (i < left) {
        if (isalnum((unsigned char)c[i]) || c[i] == '_') {
            i++;
            continue;
        }
        if ((unsigned char)c[i] < 0x80 || lstrip_len(c + i, left - i)) break;
        int l;
        utf8_dec(c + i, left - i, &l);
        i += (size_t)l;
    }
    lex_push(L, T_NAME, L->line, c, i);
    L->pos += i;
}

static void lex_number(lexer *L, const char *c, size_t left) {
    size_t i = 0;
    bool isf = false;
    char buf[64];
    size_t bn = 0;
    /* every write is bounded: a longer literal sets bn to the cap and fails below */
#define PUT(ch) \
    do { \
        if (bn < sizeof buf - 1) buf[bn++] = (ch); \
        else bn = sizeof buf; \
    } while (0)
#define DIGITS() \
    while (i < left && \
           (isdigit((unsigned char)c[i]) || (c[i] == '_' && i + 1 < left && isdigit((unsigned char)c[i + 1])))) { \
        if (c[i] != '_') PUT(c[i]); \
        i++; \
    }
    DIGITS();
    if (i + 1 < left && c[i] == '.' && isdigit((unsigned char)c[i + 1])) {
        isf = true;
        PUT(c[i]);
        i++;
        DIGITS();
    }
    if (i + 1 < left && (c[i] == 'e' || c[i] == 'E') &&
        (isdigit((unsigned char)c[i + 1]) ||
         (i + 2 < left && (c[i + 1] == '+' || c[i + 1] == '-') && isdigit((unsigned char)c[i + 2])))) {
        isf = true;
        PUT(c[i]);
        i++;
        if (c[i] == '+' || c[i] == '-') {
            PUT(c[i]);
            i++;
        }
        DIGITS();
    }
#undef DIGITS
#undef PUT
    if (bn >= sizeof buf - 1) fail(L->f, L->line, "number literal too long (at most %zu digits)", sizeof buf - 2);
    buf[bn] = 0;
    token *t = lex_push(L, isf ? T_FLOAT : T_INT, L->line, c, i);
    if (isf) t->f = strtod(buf, NULL);
    else {
        char *e;
        unsigned long long u = strtoull(buf, &e, 10);
        if (u > INT64_MAX || bn > 19) fail(L->f, L->line, "integer literal %s is too large", buf);
        t->i = (int64_t)u;
    }
    L->pos += i;
}

static void lex_string(lexer *L, const char *c, size_t left) {
    size_t i = 1;
    int line = L->line;
    while (i < left && c[i] != *c) {
        if (c[i] == '\\' && i + 1 < left) i++;
        i++;
    }
    if (i >= left) fail(L->f, line, "unterminated string literal");
    token *t = lex_push(L, T_STR, line, NULL, 0);
    lex_decode_string(L, t, c + 1, i - 1);
    L->line += count_nl(c, i);
    L->pos += i + 1;
}

/* An operator or punctuation; *depth counts the open brackets. */
static void lex_op(lexer *L, const char *c, size_t left, int *depth) {
    static const char *ops2[] = {"//", "**", "==", "!=", ">=", "<="};
    size_t k = 1;
    for (size_t j = 0; j < sizeof ops2 / sizeof *ops2; j++)
        if (left >= 2 && c[0] == ops2[j][0] && c[1] == ops2[j][1]) k = 2;
    if (k == 1 && !strchr("+-/*%~[](){}><=.:|,;", *c)) fail(L->f, L->line, "unexpected character '%c' in a tag", *c);
    if (*c == '(' || *c == '[' || *c == '{') (*depth)++;
    if ((*c == ')' || *c == ']' || *c == '}') && *depth > 0) (*depth)--;
    lex_push(L, T_OP, L->line, c, k);
    L->pos += k;
}

static void lex_tag(lexer *L, bool is_block, int open_line, bool *strip_after) {
    const char *s = L->s;
    int depth = 0;
    for (;;) {
        while (L->pos < L->n && isspace((unsigned char)s[L->pos])) L->line += s[L->pos++] == '\n';
        if (L->pos >= L->n)
            fail(L->f, open_line, "unexpected end of template: '%s' opened here is not closed", is_block ? "{%" : "{{");
        const char *c = s + L->pos;
        size_t left = L->n - L->pos;
        if (depth == 0 && lex_tag_end(L, is_block, c, left, strip_after)) return;
        if (isalpha((unsigned char)*c) || *c == '_' || ((unsigned char)*c >= 0x80 && !lstrip_len(c, left)))
            lex_name(L, c, left);
        else if (isdigit((unsigned char)*c)) lex_number(L, c, left);
        else if (*c == '\'' || *c == '"') lex_string(L, c, left);
        else lex_op(L, c, left, &depth);
    }
}

static bool at_word(const char *s, size_t n, size_t p, const char *w) {
    size_t k = strlen(w);
    return p + k <= n && !memcmp(s + p, w, k) && (p + k == n || !(isalnum((unsigned char)s[p + k]) || s[p + k] == '_'));
}

/* {% raw %}...{% endraw %}: the body is text, untouched. L->pos is just after "{%" (and its
 * '-'/'+'). Returns false (nothing consumed) when the tag is not raw. */
static bool lex_raw(lexer *L, int open_line, bool *lstrip) {
    const char *s = L->s;
    size_t n = L->n, p = L->pos;
    while (p < n && isspace((unsigned char)s[p])) p++;
    if (!at_word(s, n, p, "raw")) return false;
    p += 3;
    while (p < n && isspace((unsigned char)s[p])) p++;
    bool d = p < n && s[p] == '-';
    if (d || (p < n && s[p] == '+')) p++;
    if (p + 2 > n || s[p] != '%' || s[p + 1] != '}') fail(L->f, open_line, "expected '%%}' after 'raw'");
    p += 2;
    size_t cs = p;
    if (d) cs += lstrip_len(s + cs, n - cs);
    for (size_t q = cs; q + 1 < n; q++) {
        if (s[q] != '{' || s[q + 1] != '%') continue;
        size_t r = q + 2;
        bool d2 = r < n && s[r] == '-';
        if (r < n && (s[r] == '-' || s[r] == '+')) r++;
        while (r < n && isspace((unsigned char)s[r])) r++;
        if (!at_word(s, n, r, "endraw")) continue;
        r += 6;
        while (r < n && isspace((unsigned char)s[r])) r++;
        bool d3 = r < n && s[r] == '-';
        if (d3 || (r < n && s[r] == '+')) r++;
        if (r + 2 > n || s[r] != '%' || s[r + 1] != '}') continue;
        size_t ce = q;
        if (d2) ce = cs + rstrip_len(s + cs, ce - cs);
        L->line += count_nl(s + L->pos, cs - L->pos);
        if (ce > cs) lex_push(L, T_TEXT, L->line, s + cs, ce - cs);
        L->line += count_nl(s + cs, r + 2 - cs);
        L->pos = r + 2;
        *lstrip = d3;
        return true;
    }
    fail(L->f, open_line, "'raw' block is not closed with 'endraw'");
}

static void lex_all(lexer *L) {
    const char *s = L->s;
    bool lstrip = false;
    while (L->pos < L->n) {
        size_t start = L->pos, i = start;
        while (i + 1 < L->n && !(s[i] == '{' && (s[i + 1] == '{' || s[i + 1] == '%' || s[i + 1] == '#'))) i++;
        if (i + 1 >= L->n) i = L->n;
        size_t ts = start, te = i;
        if (lstrip) ts += lstrip_len(s + ts, te - ts);
        if (i + 2 < L->n && s[i + 2] == '-') te = ts + rstrip_len(s + ts, te - ts);
        if (te > ts) lex_push(L, T_TEXT, L->line + count_nl(s + start, ts - start), s + ts, te - ts);
        L->line += count_nl(s + start, i - start);
        L->pos = i;
        lstrip = false;
        if (i >= L->n) break;
        char kind = s[i + 1];
        int open_line = L->line;
        L->pos += 2;
        if (L->pos < L->n && (s[L->pos] == '-' || s[L->pos] == '+')) L->pos++;
        if (kind == '#') {
            size_t q = L->pos;
            while (q + 1 < L->n && !(s[q] == '#' && s[q + 1] == '}')) q++;
            if (q + 1 >= L->n) fail(L->f, open_line, "comment '{#' is not closed");
            lstrip = q > L->pos && s[q - 1] == '-';
            L->line += count_nl(s + L->pos, q - L->pos);
            L->pos = q + 2;
            continue;
        }
        if (kind == '%' && lex_raw(L, open_line, &lstrip)) continue;
        lex_push(L, kind == '{' ? T_VBEGIN : T_BBEGIN, open_line, s + i, 2);
        lex_tag(L, kind == '%', open_line, &lstrip);
    }
    lex_push(L, T_EOF, L->line, "", 0);
}

/* ---- AST ------------------------------------------------------------------------------------ */

enum {
    /* statements */
    S_TEXT,
    S_OUTPUT,
    S_IF,
    S_FOR,
    S_SET,
    S_SETATTR,
    S_SETBLOCK,
    S_MACRO,
    S_CALLBLOCK,
    S_FILTERBLOCK,
    S_BREAK,
    S_CONTINUE,
    S_WITH,
    S_GENERATION,
    /* expressions */
    E_CONST,
    E_NAME,
    E_ATTR,
    E_ITEM,
    E_SLICE,
    E_CALL,
    E_FILTER,
    E_TEST,
    E_NOT,
    E_NEG,
    E_POS,
    E_BIN,
    E_AND,
    E_OR,
    E_CMP,
    E_COND,
    E_LIST,
    E_TUPLE,
    E_DICT,
    E_CAPTURED,
};

enum { OP_EQ = 1, OP_NE, OP_LT, OP_GT, OP_LE, OP_GE, OP_IN, OP_NOTIN };

struct nlist {
    node **v;
    int n, cap;
};

struct node {
    int kind, line, op;
    value val;        /* E_CONST, S_TEXT; S_SETATTR: the attribute name */
    const char *name; /* variable, attribute, filter, test or macro name */
    node *a, *b, *c, *d;
    nlist items;        /* positional args, elements, body */
    nlist items2;       /* keyword-arg values, dict values, else-body, defaults */
    const char **names; /* keyword-arg names, loop / set targets, parameters */
    int n_names;
};

struct jinja_template {
    arena a;
    nlist body;
};

typedef struct parser {
    jfail *f;
    token *tk;
    int pos, depth;
    int loops; /* enclosing for-loop bodies (inside the current macro), for break/continue */
} parser;

static void nl_push(jfail *f, nlist *l, node *x) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 4;
        node **nv = xalloc(f, (size_t)cap * sizeof *nv);
        if (l->n) memcpy(nv, l->v, (size_t)l->n * sizeof *nv);
        l->v = nv, l->cap = cap;
    }
    l->v[l->n++] = x;
}

static void names_push(jfail *f, node *x, const char *name) {
    const char **nv = xalloc(f, (size_t)(x->n_names + 1) * sizeof *nv);
    if (x->n_names) memcpy(nv, x->names, (size_t)x->n_names * sizeof *nv);
    nv[x->n_names++] = name;
    x->names = nv;
}

static node *mk(parser *P, int kind, int line) {
    node *x = xzalloc(P->f, sizeof *x);
    x->kind = kind;
    x->line = line;
    return x;
}

static token *peek(parser *P) { return &P->tk[P->pos]; }
static token *peek2(parser *P) { return P->tk[P->pos].t == T_EOF ? &P->tk[P->pos] : &P->tk[P->pos + 1]; }
static token *advance(parser *P) {
    token *t = &P->tk[P->pos];
    if (t->t != T_EOF) P->pos++;
    return t;
}
static bool tok_op(const token *t, const char *op) {
    return t->t == T_OP && t->n == strlen(op) && !memcmp(t->p, op, t->n);
}
static bool tok_name(const token *t, const char *w) {
    return t->t == T_NAME && t->n == strlen(w) && !memcmp(t->p, w, t->n);
}
static bool accept_op(parser *P, const char *op) {
    if (tok_op(peek(P), op)) {
        advance(P);
        return true;
    }
    return false;
}
static bool accept_name(parser *P, const char *w) {
    if (tok_name(peek(P), w)) {
        advance(P);
        return true;
    }
    return false;
}

static const char *tok_desc(parser *P, const token *t) {
    switch (t->t) {
    case T_EOF: return "end of template";
    case T_VEND:
    case T_BEND: return "end of tag";
    case T_TEXT: return "text";
    case T_VBEGIN: return "'{{'";
    case T_BBEGIN: return "'{%'";
    case T_STR: return "a string";
    default: {
        char *s = xalloc(P->f, t->n + 3);
        snprintf(s, t->n + 3, "'%.*s'", (int)t->n, t->p);
        return s;
    }
    }
}

static void expect_op(parser *P, const char *op) {
    if (!accept_op(P, op)) fail(P->f, peek(P)->line, "expected '%s', got %s", op, tok_desc(P, peek(P)));
}

static const char *expect_ident(parser *P) {
    token *t = peek(P);
    if (t->t != T_NAME) fail(P->f, t->line, "expected a name, got %s", tok_desc(P, t));
    advance(P);
    return xstrndup(P->f, t->p, t->n);
}

static void expect_block_end(parser *P) {
    token *t = peek(P);
    if (t->t != T_BEND) fail(P->f, t->line, "expected end of tag '%%}', got %s", tok_desc(P, t));
    advance(P);
}

static node *parse_expr(parser *P);
static node *parse_or(parser *P);
static node *parse_unary(parser *P, bool with_filter);
static node *parse_primary(parser *P);

static void enter(parser *P) {
    if (++P->depth > JINJA_MAX_NESTING)
        fail(P->f, peek(P)->line, "expression or block nesting too deep (more than %d levels)", JINJA_MAX_NESTING);
}

/* Call arguments after '(' : positional then keyword (name=value). */
static void parse_args(parser *P, node *x) {
    while (!accept_op(P, ")")) {
        if (x->items.n + x->n_names > 0) {
            expect_op(P, ",");
            if (accept_op(P, ")")) break;
        }
        if (tok_op(peek(P), "*") || tok_op(peek(P), "**"))
            fail(P->f, peek(P)->line, "*args / **kwargs in calls are not supported");
        if (peek(P)->t == T_NAME && tok_op(peek2(P), "=")) {
            names_push(P->f, x, expect_ident(P));
            advance(P);
            nl_push(P->f, &x->items2, parse_expr(P));
        } else {
            if (x->n_names) fail(P->f, peek(P)->line, "positional argument after keyword argument");
            nl_push(P->f, &x->items, parse_expr(P));
        }
    }
}

static node *parse_filter_chain(parser *P, node *x);

/* Filter and test names may be dotted (`a.b`), as in jinja2; none of ours are, so such a name
 * is reported as unknown. */
static const char *parse_dotted_name(parser *P) {
    const char *name = expect_ident(P);
    while (accept_op(P, ".")) {
        const char *part = expect_ident(P);
        size_t n = strlen(name), m = strlen(part);
        char *joined = xalloc(P->f, n + m + 2);
        memcpy(joined, name, n);
        joined[n] = '.';
        memcpy(joined + n + 1, part, m + 1);
        name = joined;
    }
    return name;
}

/* A test name after 'is' (optionally 'not'), with arguments in parentheses or one bare
 * argument (`is divisibleby 3`, `is sameas false`). */
static node *parse_test(parser *P, node *x) {
    node *t = mk(P, E_TEST, peek(P)->line);
    t->a = x;
    if (accept_name(P, "not")) t->op = 1;
    token *nt = peek(P);
    if (nt->t != T_NAME) fail(P->f, nt->line, "expected a test name after 'is', got %s", tok_desc(P, nt));
    t->name = parse_dotted_name(P);

    if (accept_op(P, "(")) parse_args(P, t);
    else {
        token *a = peek(P);
        bool bare = a->t == T_STR || a->t == T_INT || a->t == T_FLOAT || tok_op(a, "[") || tok_op(a, "{") ||
                    tok_op(a, "-") ||
                    (a->t == T_NAME && !tok_name(a, "else") && !tok_name(a, "or") && !tok_name(a, "and") &&
                     !tok_name(a, "is") && !tok_name(a, "in") && !tok_name(a, "not") && !tok_name(a, "if"));
        if (bare) {
            node *arg = parse_primary(P);
            nl_push(P->f, &t->items, arg);
        }
    }
    if (tok_name(peek(P), "is")) fail(P->f, peek(P)->line, "you cannot chain multiple tests with 'is'");
    return t;
}

static node *parse_filter_chain(parser *P, node *x) {
    for (;;) {
        if (accept_op(P, "|")) {
            node *fl = mk(P, E_FILTER, peek(P)->line);
            fl->a = x;
            fl->name = parse_dotted_name(P);
            if (accept_op(P, "(")) parse_args(P, fl);
            x = fl;
        } else if (accept_name(P, "is")) {
            x = parse_test(P, x);
        } else if (tok_op(peek(P), "(")) {
            node *call = mk(P, E_CALL, peek(P)->line);
            advance(P);
            call->a = x;
            parse_args(P, call);
            x = call;
        } else {
            return x;
        }
    }
}

static node *parse_postfix(parser *P, node *x) {
    for (;;) {
        token *t = peek(P);
        if (tok_op(t, ".")) {
            advance(P);
            token *n = peek(P);
            if (n->t == T_NAME) {
                node *at = mk(P, E_ATTR, n->line);
                at->a = x;
                at->name = expect_ident(P);
                x = at;
            } else if (n->t == T_INT) {
                advance(P);
                node *it = mk(P, E_ITEM, n->line);
                it->a = x;
                it->b = mk(P, E_CONST, n->line);
                it->b->val = v_int(n->i);
                x = it;
            } else {
                fail(P->f, n->line, "expected an attribute name after '.', got %s", tok_desc(P, n));
            }
        } else if (tok_op(t, "[")) {
            advance(P);
            node *idx[3] = {0};
            int nparts = 0;
            bool is_slice = false;
            for (;;) {
                if (nparts == 3) fail(P->f, t->line, "too many ':' in a slice");
                if (!tok_op(peek(P), ":") && !tok_op(peek(P), "]")) idx[nparts] = parse_expr(P);
                nparts++;
                if (accept_op(P, ":")) {
                    is_slice = true;
                    continue;
                }
                break;
            }
            expect_op(P, "]");
            if (is_slice) {
                node *s = mk(P, E_SLICE, t->line);
                s->a = x, s->b = idx[0], s->c = idx[1], s->d = idx[2];
                x = s;
            } else {
                if (!idx[0]) fail(P->f, t->line, "empty subscript");
                node *it = mk(P, E_ITEM, t->line);
                it->a = x, it->b = idx[0];
                x = it;
            }
        } else if (tok_op(t, "(")) {
            advance(P);
            node *call = mk(P, E_CALL, t->line);
            call->a = x;
            parse_args(P, call);
            x = call;
        } else {
            return x;
        }
    }
}

static node *parse_primary(parser *P) {
    token *t = peek(P);
    enter(P);
    node *x;
    if (t->t == T_NAME) {
        advance(P);
        x = mk(P, E_CONST, t->line);
        if (tok_name(t, "true") || tok_name(t, "True")) x->val = v_bool(true);
        else if (tok_name(t, "false") || tok_name(t, "False")) x->val = v_bool(false);
        else if (tok_name(t, "none") || tok_name(t, "None")) x->val = v_none();
        else {
            x->kind = E_NAME;
            x->name = xstrndup(P->f, t->p, t->n);
        }
    } else if (t->t == T_STR) {
        /* adjacent string literals are concatenated */
        sbuf b = {0};
        while (peek(P)->t == T_STR) {
            token *s = advance(P);
            sb_put(P->f, &b, s->p, s->n);
        }
        x = mk(P, E_CONST, t->line);
        x->val = sb_value(&b);
    } else if (t->t == T_INT || t->t == T_FLOAT) {
        advance(P);
        x = mk(P, E_CONST, t->line);
        x->val = t->t == T_INT ? v_int(t->i) : v_float(t->f);
    } else if (tok_op(t, "(")) {
        advance(P);
        if (accept_op(P, ")")) {
            x = mk(P, E_TUPLE, t->line);
        } else {
            node *e = parse_expr(P);
            if (tok_op(peek(P), ",")) {
                x = mk(P, E_TUPLE, t->line);
                nl_push(P->f, &x->items, e);
                while (accept_op(P, ",")) {
                    if (tok_op(peek(P), ")")) break;
                    nl_push(P->f, &x->items, parse_expr(P));
                }
            } else {
                x = e;
            }
            expect_op(P, ")");
        }
    } else if (tok_op(t, "[")) {
        advance(P);
        x = mk(P, E_LIST, t->line);
        while (!accept_op(P, "]")) {
            if (x->items.n) {
                expect_op(P, ",");
                if (accept_op(P, "]")) break;
            }
            nl_push(P->f, &x->items, parse_expr(P));
        }
    } else if (tok_op(t, "{")) {
        advance(P);
        x = mk(P, E_DICT, t->line);
        while (!accept_op(P, "}")) {
            if (x->items.n) {
                expect_op(P, ",");
                if (accept_op(P, "}")) break;
            }
            nl_push(P->f, &x->items, parse_expr(P));
            expect_op(P, ":");
            nl_push(P->f, &x->items2, parse_expr(P));
        }
    } else {
        fail(P->f, t->line, "unexpected %s in an expression", tok_desc(P, t));
    }
    P->depth--;
    return x;
}

static node *parse_unary(parser *P, bool with_filter) {
    token *t = peek(P);
    node *x;
    enter(P);
    if (tok_op(t, "-") || tok_op(t, "+")) {
        advance(P);
        x = mk(P, tok_op(t, "-") ? E_NEG : E_POS, t->line);
        x->a = parse_unary(P, false);
    } else {
        x = parse_primary(P);
    }
    x = parse_postfix(P, x);
    if (with_filter) x = parse_filter_chain(P, x);
    P->depth--;
    return x;
}

static node *mk_bin(parser *P, int kind, int op, int line, node *a, node *b) {
    node *x = mk(P, kind, line);
    x->op = op, x->a = a, x->b = b;
    return x;
}

static node *parse_pow(parser *P) {
    node *x = parse_unary(P, true);
    while (tok_op(peek(P), "**")) {
        int line = advance(P)->line;
        x = mk_bin(P, E_BIN, 'P', line, x, parse_unary(P, true));
    }
    return x;
}

static node *parse_math2(parser *P) {
    node *x = parse_pow(P);
    for (;;) {
        token *t = peek(P);
        int op = tok_op(t, "*") ? '*' : tok_op(t, "/") ? '/' : tok_op(t, "//") ? 'F' : tok_op(t, "%") ? '%' : 0;
        if (!op) return x;
        advance(P);
        x = mk_bin(P, E_BIN, op, t->line, x, parse_pow(P));
    }
}

static node *parse_concat(parser *P) {
    node *x = parse_math2(P);
    while (tok_op(peek(P), "~")) {
        int line = advance(P)->line;
        x = mk_bin(P, E_BIN, '~', line, x, parse_math2(P));
    }
    return x;
}

static node *parse_math1(parser *P) {
    node *x = parse_concat(P);
    for (;;) {
        token *t = peek(P);
        int op = tok_op(t, "+") ? '+' : tok_op(t, "-") ? '-' : 0;
        if (!op) return x;
        advance(P);
        x = mk_bin(P, E_BIN, op, t->line, x, parse_concat(P));
    }
}

/* Chained comparisons a < b < c become (a < b) and (b < c), b evaluated twice (expressions have
 * no side effects here). */
static node *parse_compare(parser *P) {
    node *x = parse_math1(P), *result = NULL, *left = x;
    for (;;) {
        token *t = peek(P);
        int op = tok_op(t, "==")     ? OP_EQ
                 : tok_op(t, "!=")   ? OP_NE
                 : tok_op(t, "<")    ? OP_LT
                 : tok_op(t, ">")    ? OP_GT
                 : tok_op(t, "<=")   ? OP_LE
                 : tok_op(t, ">=")   ? OP_GE
                 : tok_name(t, "in") ? OP_IN
                                     : 0;
        if (!op && tok_name(t, "not") && tok_name(peek2(P), "in")) {
            advance(P);
            op = OP_NOTIN;
        }
        if (!op) break;
        advance(P);
        node *right = parse_math1(P);
        node *cmp = mk_bin(P, E_CMP, op, t->line, left, right);
        result = result ? mk_bin(P, E_AND, 0, t->line, result, cmp) : cmp;
        left = right;
    }
    return result ? result : x;
}

static node *parse_not(parser *P) {
    token *t = peek(P);
    if (tok_name(t, "not")) {
        advance(P);
        enter(P);
        node *x = mk(P, E_NOT, t->line);
        x->a = parse_not(P);
        P->depth--;
        return x;
    }
    return parse_compare(P);
}

static node *parse_and(parser *P) {
    node *x = parse_not(P);
    while (tok_name(peek(P), "and")) {
        int line = advance(P)->line;
        x = mk_bin(P, E_AND, 0, line, x, parse_not(P));
    }
    return x;
}

static node *parse_or(parser *P) {
    node *x = parse_and(P);
    while (tok_name(peek(P), "or")) {
        int line = advance(P)->line;
        x = mk_bin(P, E_OR, 0, line, x, parse_and(P));
    }
    return x;
}

/* expr: or_expr ['if' or_expr ['else' expr]] */
static node *parse_expr(parser *P) {
    enter(P);
    node *x = parse_or(P);
    while (tok_name(peek(P), "if")) {
        node *c = mk(P, E_COND, advance(P)->line);
        c->b = x;
        c->a = parse_or(P);
        if (accept_name(P, "else")) c->c = parse_expr(P);
        x = c;
    }
    P->depth--;
    return x;
}

/* An expression that may be an unparenthesised tuple: `{{ a, b }}`, `set x = 1, 2`. As in jinja2,
 * an if/elif test takes no conditional expression (`{% if a if b %}` is a syntax error). */
static node *parse_tuple_expr_cond(parser *P, bool condexpr) {
    node *x = condexpr ? parse_expr(P) : parse_or(P);
    if (!tok_op(peek(P), ",")) return x;
    node *t = mk(P, E_TUPLE, x->line);
    nl_push(P->f, &t->items, x);
    while (accept_op(P, ",")) {
        token *n = peek(P);
        if (n->t == T_BEND || n->t == T_VEND) break;
        nl_push(P->f, &t->items, condexpr ? parse_expr(P) : parse_or(P));
    }
    return t;
}

static node *parse_tuple_expr(parser *P) { return parse_tuple_expr_cond(P, true); }

/* ---- statements ---- */

static int parse_body(parser *P, nlist *body, const char *const *ends, int n_ends);

/* Targets of for / set: `x`, `a, b`, `(a, b)`. */
static void parse_targets(parser *P, node *x) {
    bool paren = accept_op(P, "(");
    do {
        if (paren && tok_op(peek(P), ")")) break;
        names_push(P->f, x, expect_ident(P));
    } while (accept_op(P, ","));
    if (paren) expect_op(P, ")");
}

static void parse_params(parser *P, node *x) {
    expect_op(P, "(");
    while (!accept_op(P, ")")) {
        if (x->n_names) {
            expect_op(P, ",");
            if (accept_op(P, ")")) break;
        }
        names_push(P->f, x, expect_ident(P));
        nl_push(P->f, &x->items2, accept_op(P, "=") ? parse_expr(P) : NULL);
    }
}

/* After the filter name(s) of `{% filter f | g %}` or `{% set x | f %}`: a filter chain applied to
 * the captured body. */
static node *parse_block_filters(parser *P, int line, bool first_pipe_consumed) {
    node *x = mk(P, E_CAPTURED, line);
    if (first_pipe_consumed) {
        node *fl = mk(P, E_FILTER, line);
        fl->a = x;
        fl->name = parse_dotted_name(P);
        if (accept_op(P, "(")) parse_args(P, fl);
        x = fl;
    }
    return parse_filter_chain(P, x);
}

/* parse_statement's phases, one per statement: each starts after the statement's name and stops
 * before the last end tag's '%}' (parse_set and the break / continue in parse_statement close their own). */

static node *parse_if(parser *P, int line) {
    node *x = mk(P, S_IF, line);
    x->a = parse_tuple_expr_cond(P, false);
    expect_block_end(P);
    static const char *const ends[] = {"elif", "else", "endif"};
    node *cur = x;
    for (;;) {
        int e = parse_body(P, &cur->items, ends, 3);
        if (e == 0) {
            node *el = mk(P, S_IF, peek(P)->line);
            el->a = parse_tuple_expr_cond(P, false);
            expect_block_end(P);
            nl_push(P->f, &cur->items2, el);
            cur = el;
            continue;
        }
        if (e == 1) {
            expect_block_end(P);
            static const char *const endif[] = {"endif"};
            parse_body(P, &cur->items2, endif, 1);
        }
        break;
    }
    return x;
}

static node *parse_for(parser *P, int line) {
    node *x = mk(P, S_FOR, line);
    parse_targets(P, x);
    if (!accept_name(P, "in")) fail(P->f, peek(P)->line, "expected 'in' in a for loop, got %s", tok_desc(P, peek(P)));
    /* the iterable: no conditional expression here, `if` starts the loop filter */
    x->a = parse_or(P);
    if (tok_op(peek(P), ",")) {
        node *t = mk(P, E_TUPLE, x->a->line);
        nl_push(P->f, &t->items, x->a);
        while (accept_op(P, ",")) nl_push(P->f, &t->items, parse_or(P));
        x->a = t;
    }
    if (accept_name(P, "if")) x->b = parse_expr(P);
    if (tok_name(peek(P), "recursive")) fail(P->f, line, "recursive for loops are not supported");
    expect_block_end(P);
    static const char *const ends[] = {"else", "endfor"};
    P->loops++;
    int e = parse_body(P, &x->items, ends, 2);
    P->loops--;
    if (e == 0) {
        expect_block_end(P);
        static const char *const endfor[] = {"endfor"};
        parse_body(P, &x->items2, endfor, 1);
    }
    return x;
}

/* `set`: an attribute, targets = value, or a block set; closes its own end tag. */
static node *parse_set(parser *P, int line) {
    node *x;
    token *t = peek(P);
    if (t->t == T_NAME && tok_op(peek2(P), ".")) {
        x = mk(P, S_SETATTR, line);
        x->name = expect_ident(P);
        advance(P);
        const char *attr = expect_ident(P);
        x->val = v_cstr(attr);
        expect_op(P, "=");
        x->a = parse_tuple_expr(P);
        expect_block_end(P);
        return x;
    }
    x = mk(P, S_SET, line);
    parse_targets(P, x);
    if (accept_op(P, "=")) {
        x->a = parse_tuple_expr(P);
        expect_block_end(P);
        return x;
    }
    if (x->n_names != 1) fail(P->f, line, "a block set takes exactly one target");
    x->kind = S_SETBLOCK;
    if (accept_op(P, "|")) x->b = parse_block_filters(P, line, true);
    expect_block_end(P);
    static const char *const ends[] = {"endset"};
    parse_body(P, &x->items, ends, 1);
    expect_block_end(P);
    return x;
}

/* `macro` and `call`: a body parsed outside any loop. */
static node *parse_macro(parser *P, int line) {
    node *x = mk(P, S_MACRO, line);
    x->name = expect_ident(P);
    parse_params(P, x);
    expect_block_end(P);
    static const char *const ends[] = {"endmacro"};
    int loops = P->loops;
    P->loops = 0;
    parse_body(P, &x->items, ends, 1);
    P->loops = loops;
    if (peek(P)->t == T_NAME) advance(P); /* {% endmacro name %} */
    return x;
}

static node *parse_call(parser *P, int line) {
    node *x = mk(P, S_CALLBLOCK, line);
    if (tok_op(peek(P), "(")) parse_params(P, x);
    x->a = parse_expr(P);
    if (x->a->kind != E_CALL) fail(P->f, line, "'call' expects a macro call");
    expect_block_end(P);
    static const char *const ends[] = {"endcall"};
    int loops = P->loops;
    P->loops = 0;
    parse_body(P, &x->items, ends, 1);
    P->loops = loops;
    return x;
}

static node *parse_filter_block(parser *P, int line) {
    node *x = mk(P, S_FILTERBLOCK, line);
    x->b = parse_block_filters(P, line, true);
    expect_block_end(P);
    static const char *const ends[] = {"endfilter"};
    parse_body(P, &x->items, ends, 1);
    return x;
}

static node *parse_with(parser *P, int line) {
    node *x = mk(P, S_WITH, line);
    while (peek(P)->t == T_NAME) {
        names_push(P->f, x, expect_ident(P));
        expect_op(P, "=");
        nl_push(P->f, &x->items2, parse_expr(P));
        if (!accept_op(P, ",")) break;
    }
    expect_block_end(P);
    static const char *const ends[] = {"endwith"};
    parse_body(P, &x->items, ends, 1);
    return x;
}

static node *parse_generation(parser *P, int line) {
    node *x = mk(P, S_GENERATION, line);
    expect_block_end(P);
    static const char *const ends[] = {"endgeneration"};
    parse_body(P, &x->items, ends, 1);
    return x;
}

/* A statement after '{%': its name, then the phase that parses it. */
static node *parse_statement(parser *P) {
    token *kw = peek(P);
    int line = kw->line;
    if (kw->t != T_NAME) fail(P->f, line, "expected a statement name after '{%%', got %s", tok_desc(P, kw));
    advance(P);
    node *x;
    if (tok_name(kw, "if")) x = parse_if(P, line);
    else if (tok_name(kw, "for")) x = parse_for(P, line);
    else if (tok_name(kw, "set")) return parse_set(P, line);
    else if (tok_name(kw, "macro")) x = parse_macro(P, line);
    else if (tok_name(kw, "call")) x = parse_call(P, line);
    else if (tok_name(kw, "filter")) x = parse_filter_block(P, line);
    else if (tok_name(kw, "with")) x = parse_with(P, line);
    else if (tok_name(kw, "generation")) x = parse_generation(P, line);
    else if (tok_name(kw, "break") || tok_name(kw, "continue")) {
        x = mk(P, tok_name(kw, "break") ? S_BREAK : S_CONTINUE, line);
        if (!P->loops) fail(P->f, line, "'%.*s' outside of a for loop", (int)kw->n, kw->p);
        expect_block_end(P);
        return x;
    } else {
        fail(P->f, line, "unsupported tag '%.*s'", (int)kw->n, kw->p);
    }
    /* the end tag's name was consumed by parse_body; close it */
    expect_block_end(P);
    return x;
}

/* Parses nodes until a block tag whose name is one of ends (consumed; returns its index), or the
 * end of the template when ends is empty (returns -1). */
static int parse_body(parser *P, nlist *body, const char *const *ends, int n_ends) {
    int open_line = peek(P)->line;
    enter(P);
    for (;;) {
        token *t = peek(P);
        switch (t->t) {
        case T_EOF:
            if (n_ends)
                fail(P->f, open_line, "block is not closed: expected '{%% %s %%}' before the end of the template",
                     ends[n_ends - 1]);
            P->depth--;
            return -1;
        case T_TEXT: {
            advance(P);
            node *x = mk(P, S_TEXT, t->line);
            x->val = v_str(t->p, t->n);
            nl_push(P->f, body, x);
            break;
        }
        case T_VBEGIN: {
            advance(P);
            node *x = mk(P, S_OUTPUT, t->line);
            x->a = parse_tuple_expr(P);
            token *e = peek(P);
            if (e->t != T_VEND) fail(P->f, e->line, "expected '}}', got %s", tok_desc(P, e));
            advance(P);
            nl_push(P->f, body, x);
            break;
        }
        case T_BBEGIN: {
            advance(P);
            token *kw = peek(P);
            for (int i = 0; i < n_ends; i++)
                if (tok_name(kw, ends[i])) {
                    advance(P);
                    P->depth--;
                    return i;
                }
            static const char *const closers[] = {"endif",   "endfor",    "endset",  "endmacro",
                                                  "endcall", "endfilter", "endwith", "endgeneration",
                                                  "elif",    "else",      "endraw"};
            for (size_t i = 0; i < sizeof closers / sizeof *closers; i++)
                if (tok_name(kw, closers[i]))
                    fail(P->f, kw->line, "unexpected '%s'%s%s", closers[i], n_ends ? ", expected " : "",
                         n_ends ? ends[n_ends - 1] : "");
            nl_push(P->f, body, parse_statement(P));
            break;
        }
        default: fail(P->f, t->line, "unexpected %s", tok_desc(P, t));
        }
    }
}

/* jinja2 refuses unknown filter and test names when compiling, except inside an if statement or
 * conditional expression ("soft" scopes, where it waits until the call is reached); loop, macro,
 * call, with and block bodies start hard again. */
/* Also bounds the tree's height: operator and filter chains (a + b + c ..., x|e|e ...) are
 * parsed by loops into left-deep trees that the parser's own nesting limit never sees, and
 * this walk and the evaluator recurse on the tree (a 200,000-term chain overflowed the stack). */
static void check_names(jfail *f, const node *x, bool soft, int depth) {
    if (!x) return;
    if (depth > JINJA_MAX_NESTING)
        fail(f, x->line, "expression or block nesting too deep (more than %d levels)", JINJA_MAX_NESTING);
    bool inner_soft = soft;
    switch (x->kind) {
    case S_IF:
    case E_COND: inner_soft = true; break;
    case E_FILTER:
        if (!soft && !known_filter(x->name)) fail(f, x->line, "no filter named '%s'", x->name);
        break;
    case E_TEST:
        if (!soft && !known_test(x->name)) fail(f, x->line, "no test named '%s'", x->name);
        break;
    default: break;
    }
    switch (x->kind) {
    case S_FOR:
        check_names(f, x->a, soft, depth + 1);
        check_names(f, x->b, false, depth + 1);
        for (int i = 0; i < x->items.n; i++) check_names(f, x->items.v[i], false, depth + 1);
        for (int i = 0; i < x->items2.n; i++) check_names(f, x->items2.v[i], false, depth + 1);
        return;
    case S_CALLBLOCK:
        check_names(f, x->a, soft, depth + 1);
        inner_soft = false;
        break;
    case S_MACRO:
    case S_WITH:
    case S_FILTERBLOCK:
    case S_SETBLOCK:
    case S_GENERATION: inner_soft = false; break;
    default: check_names(f, x->a, inner_soft, depth + 1); break;
    }
    check_names(f, x->b, inner_soft, depth + 1);
    check_names(f, x->c, inner_soft, depth + 1);
    check_names(f, x->d, inner_soft, depth + 1);
    for (int i = 0; i < x->items.n; i++) check_names(f, x->items.v[i], inner_soft, depth + 1);
    for (int i = 0; i < x->items2.n; i++) check_names(f, x->items2.v[i], inner_soft, depth + 1);
}

jinja_template *jinja_parse(const char *src, size_t len, lfm2c_error *err) {
    jinja_template *volatile t = calloc(1, sizeof *t);
    if (!t) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return NULL;
    }
    t->a.limit = (size_t)1 << 30;
    jfail f = {.err = err, .a = &t->a};
    if (setjmp(f.jb)) {
        jinja_free(t);
        return NULL;
    }
    if (!utf8_valid(src, len)) fail(&f, 0, "template is not valid UTF-8");
    /* jinja2 reads \r\n and \r as \n and drops one trailing newline (keep_trailing_newline off) */
    char *s = xalloc(&f, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n && s[n - 1] == '\n') n--;
    s[n] = 0;
    lexer L = {.f = &f, .s = s, .n = n, .line = 1};
    lex_all(&L);
    parser P = {.f = &f, .tk = L.tk};
    parse_body(&P, &t->body, NULL, 0);
    for (int i = 0; i < t->body.n; i++) check_names(&f, t->body.v[i], false, 0);
    return t;
}

void jinja_free(jinja_template *t) {
    if (!t) return;
    arena_free(&t->a);
    free(t);
}

/* ---- evaluation ------------------------------------------------------------------------------ */

/* An undefined value remembering why it is undefined, for the error its use raises. */
__attribute__((format(printf, 2, 3))) value v_undef_msg(ctx *c, const char *fmt, ...) {
    char tmp[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    return v_undef(xstrndup(&c->f, tmp, strlen(tmp)));
}

static _Noreturn void fail_undef(ctx *c, int line, value u) {
    FAIL(c, line, "UndefinedError: %s", u.u.s.p ? u.u.s.p : "value is undefined");
}

static frame *frame_new(ctx *c, frame *parent) {
    frame *fr = xzalloc(&c->f, sizeof *fr);
    fr->parent = parent;
    fr->vars = dict_new(&c->f, 4);
    return fr;
}

static void frame_set(ctx *c, frame *fr, const char *name, value v) {
    long i = dict_find_str(fr->vars, name, strlen(name));
    if (i >= 0) fr->vars->v[i] = v;
    else dict_append(&c->f, fr->vars, v_cstr(name), v);
}

/* ---- str() and repr() ---- */

static void repr_str(ctx *c, sbuf *b, const char *s, size_t n) {
    bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    sb_putc(&c->f, b, q);
    for (size_t i = 0; i < n;) {
        int l;
        uint32_t cp = utf8_dec(s + i, n - i, &l);
        if (cp == (uint32_t)q || cp == '\\') {
            sb_putc(&c->f, b, '\\');
            sb_putc(&c->f, b, (char)cp);
        } else if (cp == '\n') sb_puts(&c->f, b, "\\n");
        else if (cp == '\r') sb_puts(&c->f, b, "\\r");
        else if (cp == '\t') sb_puts(&c->f, b, "\\t");
        else if (cp < 0x80 && (cp < 0x20 || cp == 0x7F)) sb_printf(&c->f, b, "\\x%02x", cp);
        else if (cp >= 0x80 && !u_isprintable(cp))
            sb_printf(&c->f, b, cp < 0x100 ? "\\x%02x" : cp < 0x10000 ? "\\u%04x" : "\\U%08x", cp);
        else sb_put(&c->f, b, s + i, (size_t)l);
        i += (size_t)l;
    }
    sb_putc(&c->f, b, q);
}

/* Python str(). */
void str_value(ctx *c, sbuf *b, value v, int depth) {
    switch (v.t) {
    case V_UNDEF: return;
    case V_NONE: sb_puts(&c->f, b, "None"); return;
    case V_BOOL: sb_puts(&c->f, b, v.u.b ? "True" : "False"); return;
    case V_INT: sb_printf(&c->f, b, "%lld", (long long)v.u.i); return;
    case V_FLOAT: fmt_float(&c->f, b, v.u.f); return;
    case V_STR: sb_put(&c->f, b, v.u.s.p, v.u.s.n); return;
    case V_NS:
        sb_puts(&c->f, b, "<Namespace ");
        repr_value(c, b, v_dict(v.u.d), depth);
        sb_putc(&c->f, b, '>');
        return;
    case V_FUNC: sb_printf(&c->f, b, "<function %s>", v.u.fn->name ? v.u.fn->name : "?"); return;
    default: repr_value(c, b, v, depth); return;
    }
}

void repr_value(ctx *c, sbuf *b, value v, int depth) {
    if (depth > 200) FAIL(c, 0, "value nested too deeply to print");
    switch (v.t) {
    case V_UNDEF: sb_puts(&c->f, b, "Undefined"); return;
    case V_STR: repr_str(c, b, v.u.s.p, v.u.s.n); return;
    case V_LIST: {
        list *l = v.u.l;
        sb_putc(&c->f, b, l->tuple ? '(' : '[');
        for (size_t i = 0; i < l->n; i++) {
            if (i) sb_puts(&c->f, b, ", ");
            repr_value(c, b, l->v[i], depth + 1);
        }
        if (l->tuple && l->n == 1) sb_putc(&c->f, b, ',');
        sb_putc(&c->f, b, l->tuple ? ')' : ']');
        return;
    }
    case V_DICT: {
        dict *d = v.u.d;
        sb_putc(&c->f, b, '{');
        for (size_t i = 0; i < d->n; i++) {
            if (i) sb_puts(&c->f, b, ", ");
            repr_value(c, b, d->k[i], depth + 1);
            sb_puts(&c->f, b, ": ");
            repr_value(c, b, d->v[i], depth + 1);
        }
        sb_putc(&c->f, b, '}');
        return;
    }
    default: str_value(c, b, v, depth); return;
    }
}

value to_str(ctx *c, value v) {
    if (v.t == V_STR) return v;
    sbuf b = {0};
    str_value(c, &b, v, 0);
    return sb_value(&b);
}

/* ---- JSON (json.dumps as transformers' tojson calls it) ---- */

static void json_str(ctx *c, sbuf *b, const char *s, size_t n, bool ensure_ascii) {
    sb_putc(&c->f, b, '"');
    for (size_t i = 0; i < n;) {
        int l;
        uint32_t cp = utf8_dec(s + i, n - i, &l);
        switch (cp) {
        case '"': sb_puts(&c->f, b, "\\\""); break;
        case '\\': sb_puts(&c->f, b, "\\\\"); break;
        case '\n': sb_puts(&c->f, b, "\\n"); break;
        case '\r': sb_puts(&c->f, b, "\\r"); break;
        case '\t': sb_puts(&c->f, b, "\\t"); break;
        case '\b': sb_puts(&c->f, b, "\\b"); break;
        case '\f': sb_puts(&c->f, b, "\\f"); break;
        default:
            if (cp < 0x20 || (ensure_ascii && cp == 0x7F)) sb_printf(&c->f, b, "\\u%04x", cp);
            else if (ensure_ascii && cp >= 0x80) {
                if (cp >= 0x10000) {
                    uint32_t v = cp - 0x10000;
                    sb_printf(&c->f, b, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
                } else {
                    sb_printf(&c->f, b, "\\u%04x", cp);
                }
            } else sb_put(&c->f, b, s + i, (size_t)l);
        }
        i += (size_t)l;
    }
    sb_putc(&c->f, b, '"');
}

static void json_float(ctx *c, sbuf *b, double x) {
    if (isnan(x)) sb_puts(&c->f, b, "NaN");
    else if (isinf(x)) sb_puts(&c->f, b, x < 0 ? "-Infinity" : "Infinity");
    else fmt_float(&c->f, b, x);
}

static void json_newline(ctx *c, sbuf *b, const json_opts *o, int level) {
    sb_putc(&c->f, b, '\n');
    for (int i = 0; i < level; i++) sb_puts(&c->f, b, o->indent);
}

void json_value(ctx *c, int line, sbuf *b, value v, const json_opts *o, int level) {
    if (level > 500) FAIL(c, line, "value nested too deeply for tojson");
    switch (v.t) {
    case V_NONE: sb_puts(&c->f, b, "null"); return;
    case V_BOOL: sb_puts(&c->f, b, v.u.b ? "true" : "false"); return;
    case V_INT: sb_printf(&c->f, b, "%lld", (long long)v.u.i); return;
    case V_FLOAT: json_float(c, b, v.u.f); return;
    case V_STR: json_str(c, b, v.u.s.p, v.u.s.n, o->ensure_ascii); return;
    case V_LIST: {
        list *l = v.u.l;
        if (!l->n) {
            sb_puts(&c->f, b, "[]");
            return;
        }
        sb_putc(&c->f, b, '[');
        if (o->indent) json_newline(c, b, o, level + 1);
        for (size_t i = 0; i < l->n; i++) {
            if (i) {
                sb_puts(&c->f, b, o->item_sep);
                if (o->indent) json_newline(c, b, o, level + 1);
            }
            json_value(c, line, b, l->v[i], o, level + 1);
        }
        if (o->indent) json_newline(c, b, o, level);
        sb_putc(&c->f, b, ']');
        return;
    }
    case V_DICT: {
        dict *d = v.u.d;
        if (!d->n) {
            sb_puts(&c->f, b, "{}");
            return;
        }
        size_t *ord = xalloc(&c->f, d->n * sizeof *ord);
        for (size_t i = 0; i < d->n; i++) ord[i] = i;
        if (o->sort_keys) { /* insertion sort: stable, and key lists are short */
            for (size_t i = 0; i < d->n; i++)
                if (d->k[i].t != V_STR) FAIL(c, line, "TypeError: tojson(sort_keys=True) needs string keys");
            for (size_t i = 1; i < d->n; i++) {
                size_t k = ord[i], j = i;
                for (; j > 0; j--) {
                    value a = d->k[ord[j - 1]], bk = d->k[k];
                    size_t m = a.u.s.n < bk.u.s.n ? a.u.s.n : bk.u.s.n;
                    int r = memcmp(a.u.s.p, bk.u.s.p, m);
                    if (r < 0 || (r == 0 && a.u.s.n <= bk.u.s.n)) break;
                    ord[j] = ord[j - 1];
                }
                ord[j] = k;
            }
        }
        sb_putc(&c->f, b, '{');
        if (o->indent) json_newline(c, b, o, level + 1);
        for (size_t i = 0; i < d->n; i++) {
            value k = d->k[ord[i]];
            if (i) {
                sb_puts(&c->f, b, o->item_sep);
                if (o->indent) json_newline(c, b, o, level + 1);
            }
            switch (k.t) {
            case V_STR: json_str(c, b, k.u.s.p, k.u.s.n, o->ensure_ascii); break;
            case V_INT: sb_printf(&c->f, b, "\"%lld\"", (long long)k.u.i); break;
            case V_BOOL: sb_puts(&c->f, b, k.u.b ? "\"true\"" : "\"false\""); break;
            case V_NONE: sb_puts(&c->f, b, "\"null\""); break;
            case V_FLOAT:
                sb_putc(&c->f, b, '"');
                json_float(c, b, k.u.f);
                sb_putc(&c->f, b, '"');
                break;
            default: FAIL(c, line, "TypeError: keys must be str, int, float, bool or None, not %s", v_typename(k));
            }
            sb_puts(&c->f, b, o->key_sep);
            json_value(c, line, b, d->v[ord[i]], o, level + 1);
        }
        if (o->indent) json_newline(c, b, o, level);
        sb_putc(&c->f, b, '}');
        return;
    }
    default: FAIL(c, line, "TypeError: Object of type %s is not JSON serializable", v_typename(v));
    }
}

/* ---- attribute and item access ---- */

value get_attr(ctx *c, int line, value obj, const char *name) {
    size_t n = strlen(name);
    value m;
    switch (obj.t) {
    case V_UNDEF: fail_undef(c, line, obj);
    case V_DICT:
        if (builtin_method(c, obj, name, &m)) return m;
        /* fallthrough */
    case V_NS: {
        long i = dict_find_str(obj.u.d, name, n);
        if (i >= 0) return obj.u.d->v[i];
        break;
    }
    case V_STR:
    case V_LIST:
        if (builtin_method(c, obj, name, &m)) return m;
        break;
    default: break;
    }
    return v_undef_msg(c, "'%s object' has no attribute '%s'", v_typename(obj), name);
}

static value str_slice_cp(ctx *c, value s, size_t from, size_t to) {
    size_t a = utf8_offset(s.u.s.p, s.u.s.n, from);
    size_t b = a + utf8_offset(s.u.s.p + a, s.u.s.n - a, to - from);
    return v_str(s.u.s.p + a, b - a);
}

value get_item(ctx *c, int line, value obj, value key) {
    switch (obj.t) {
    case V_UNDEF: fail_undef(c, line, obj);
    case V_DICT:
    case V_NS: {
        long i = dict_find(obj.u.d, key);
        if (i >= 0) return obj.u.d->v[i];
        break;
    }
    case V_LIST:
        if (key.t == V_INT || key.t == V_BOOL) {
            int64_t i = v_asi(key), n = (int64_t)obj.u.l->n;
            if (i < 0) i += n;
            if (i >= 0 && i < n) return obj.u.l->v[i];
            return v_undef_msg(c, "%s object has no element %lld", v_typename(obj), (long long)v_asi(key));
        }
        break;
    case V_STR:
        if (key.t == V_INT || key.t == V_BOOL) {
            int64_t i = v_asi(key), n = (int64_t)utf8_count(obj.u.s.p, obj.u.s.n);
            if (i < 0) i += n;
            if (i >= 0 && i < n) return str_slice_cp(c, obj, (size_t)i, (size_t)i + 1);
            return v_undef_msg(c, "str object has no element %lld", (long long)v_asi(key));
        }
        break;
    default: break;
    }
    if (key.t == V_STR) {
        value r = get_attr(c, line, obj, xstrndup(&c->f, key.u.s.p, key.u.s.n));
        if (r.t == V_UNDEF && (obj.t == V_DICT || obj.t == V_NS))
            return v_undef_msg(c, "'%s object' has no attribute '%.*s'", v_typename(obj), (int)key.u.s.n, key.u.s.p);
        return r;
    }
    sbuf kb = {0};
    repr_value(c, &kb, key, 0);
    return v_undef_msg(c, "'%s object' has no element %s", v_typename(obj), kb.n ? kb.p : "");
}

/* Python slice index normalisation (PySlice_AdjustIndices). */
static void slice_indices(ctx *c, int line, int64_t len, value vs, value ve, value vstep, int64_t *start, int64_t *stop,
                          int64_t *step) {
    value parts[3] = {vs, ve, vstep};
    for (int i = 0; i < 3; i++)
        if (parts[i].t != V_NONE && parts[i].t != V_UNDEF && parts[i].t != V_INT && parts[i].t != V_BOOL)
            FAIL(c, line, "TypeError: slice indices must be integers or None");
    *step = vstep.t == V_INT || vstep.t == V_BOOL ? v_asi(vstep) : 1;
    if (*step == 0) FAIL(c, line, "ValueError: slice step cannot be zero");
    if (*step < -INT64_MAX) *step = -INT64_MAX; /* as Python clamps to -sys.maxsize */
    bool has_s = vs.t == V_INT || vs.t == V_BOOL, has_e = ve.t == V_INT || ve.t == V_BOOL;
    int64_t lo = *step < 0 ? -1 : 0, hi = *step < 0 ? len - 1 : len;
    if (!has_s) *start = *step < 0 ? hi : lo;
    else {
        *start = v_asi(vs);
        if (*start < 0) {
            *start += len;
            if (*start < lo) *start = lo;
        } else if (*start > hi) *start = hi;
    }
    if (!has_e) *stop = *step < 0 ? lo : hi;
    else {
        *stop = v_asi(ve);
        if (*stop < 0) {
            *stop += len;
            if (*stop < lo) *stop = lo;
        } else if (*stop > hi) *stop = hi;
    }
}

/* How many indices start, start+step, ... lie before stop (Python's slice length). The indices
 * are within [-1, len] after slice_indices, so the differences cannot overflow, and start +
 * k*step for k < count stays between start and stop. */
static int64_t slice_count(int64_t start, int64_t stop, int64_t step) {
    if (step > 0) return stop > start ? (stop - start - 1) / step + 1 : 0;
    return start > stop ? (start - stop - 1) / (-(step + 1) + 1) + 1 : 0;
}

value do_slice(ctx *c, int line, value obj, value vs, value ve, value vstep) {
    if (obj.t == V_UNDEF) fail_undef(c, line, obj);
    int64_t start, stop, step;
    if (obj.t == V_LIST) {
        slice_indices(c, line, (int64_t)obj.u.l->n, vs, ve, vstep, &start, &stop, &step);
        int64_t n = slice_count(start, stop, step);
        list *r = list_new(&c->f, (size_t)(n ? n : 1));
        r->tuple = obj.u.l->tuple;
        for (int64_t k = 0; k < n; k++) list_push(&c->f, r, obj.u.l->v[start + k * step]);
        return v_list(r);
    }
    if (obj.t == V_STR) {
        int64_t n = (int64_t)utf8_count(obj.u.s.p, obj.u.s.n);
        slice_indices(c, line, n, vs, ve, vstep, &start, &stop, &step);
        if (step == 1) return stop > start ? str_slice_cp(c, obj, (size_t)start, (size_t)stop) : v_str("", 0);
        size_t *off = xalloc(&c->f, (size_t)(n + 1) * sizeof *off);
        for (int64_t i = 0, p = 0; i <= n; i++) {
            off[i] = (size_t)p;
            if (i < n) {
                int l;
                utf8_dec(obj.u.s.p + p, obj.u.s.n - (size_t)p, &l);
                p += l;
            }
        }
        sbuf b = {0};
        for (int64_t k = 0, m = slice_count(start, stop, step); k < m; k++) {
            int64_t i = start + k * step;
            sb_put(&c->f, &b, obj.u.s.p + off[i], off[i + 1] - off[i]);
        }
        return sb_value(&b);
    }
    return v_undef_msg(c, "'%s' object is not subscriptable", v_typename(obj));
}

/* Items a for loop / filter walks over. */
list *iter_list(ctx *c, int line, value v) {
    switch (v.t) {
    case V_UNDEF: return list_new(&c->f, 1);
    case V_LIST: return v.u.l;
    case V_DICT: {
        list *l = list_new(&c->f, v.u.d->n);
        for (size_t i = 0; i < v.u.d->n; i++) list_push(&c->f, l, v.u.d->k[i]);
        return l;
    }
    case V_STR: {
        list *l = list_new(&c->f, v.u.s.n);
        for (size_t i = 0; i < v.u.s.n;) {
            int k;
            utf8_dec(v.u.s.p + i, v.u.s.n - i, &k);
            list_push(&c->f, l, v_str(v.u.s.p + i, (size_t)k));
            i += (size_t)k;
        }
        return l;
    }
    default: FAIL(c, line, "TypeError: '%s' object is not iterable", v_typename(v));
    }
}

int64_t v_len(ctx *c, int line, value v) {
    switch (v.t) {
    case V_UNDEF: return 0;
    case V_STR: return (int64_t)utf8_count(v.u.s.p, v.u.s.n);
    case V_LIST: return (int64_t)v.u.l->n;
    case V_DICT: return (int64_t)v.u.d->n;
    default: FAIL(c, line, "TypeError: object of type '%s' has no len()", v_typename(v));
    }
}

/* ---- operators ---- */

value str_concat(ctx *c, value a, value b) {
    if (!a.u.s.n) return b;
    if (!b.u.s.n) return a;
    char *p = xalloc(&c->f, a.u.s.n + b.u.s.n + 1);
    memcpy(p, a.u.s.p, a.u.s.n);
    memcpy(p + a.u.s.n, b.u.s.p, b.u.s.n);
    p[a.u.s.n + b.u.s.n] = 0;
    return v_str(p, a.u.s.n + b.u.s.n);
}

static _Noreturn void fail_operands(ctx *c, int line, const char *op, value a, value b) {
    if (a.t == V_UNDEF) fail_undef(c, line, a);
    if (b.t == V_UNDEF) fail_undef(c, line, b);
    FAIL(c, line, "TypeError: unsupported operand type(s) for %s: '%s' and '%s'", op, v_typename(a), v_typename(b));
}

static int64_t floordiv_i(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
    return q;
}

/* binop's phases, one per operator family; num: both operands are numbers, flt: one of them a float. */

static value op_add(ctx *c, int line, value a, value b, bool num, bool flt) {
    int64_t r;
    if (num && !flt) {
        if (__builtin_add_overflow(v_asi(a), v_asi(b), &r)) FAIL(c, line, "integer overflow");
        return v_int(r);
    }
    if (num) return v_float(v_asf(a) + v_asf(b));
    if (a.t == V_STR && b.t == V_STR) return str_concat(c, a, b);
    if (a.t == V_LIST && b.t == V_LIST && a.u.l->tuple == b.u.l->tuple) {
        list *l = list_new(&c->f, a.u.l->n + b.u.l->n);
        l->tuple = a.u.l->tuple;
        for (size_t i = 0; i < a.u.l->n; i++) list_push(&c->f, l, a.u.l->v[i]);
        for (size_t i = 0; i < b.u.l->n; i++) list_push(&c->f, l, b.u.l->v[i]);
        return v_list(l);
    }
    fail_operands(c, line, "+", a, b);
}

static value op_sub(ctx *c, int line, value a, value b, bool num, bool flt) {
    int64_t r;
    if (num && !flt) {
        if (__builtin_sub_overflow(v_asi(a), v_asi(b), &r)) FAIL(c, line, "integer overflow");
        return v_int(r);
    }
    if (num) return v_float(v_asf(a) - v_asf(b));
    fail_operands(c, line, "-", a, b);
}

/* A string or list `a` repeated k times (an int or bool b). */
static value op_repeat(ctx *c, int line, value a, value b) {
    int64_t k = v_asi(b);
    if (k < 0) k = 0;
    if (a.t == V_STR) {
        if (a.u.s.n && (uint64_t)k > (uint64_t)(256u << 20) / a.u.s.n) FAIL(c, line, "string repetition too large");
        charge_repeat(&c->f, line, (uint64_t)k, a.u.s.n, 1, "string repetition");
        sbuf buf = {0};
        for (int64_t i = 0; i < k; i++) sb_put(&c->f, &buf, a.u.s.p, a.u.s.n);
        return sb_value(&buf);
    }
    if (a.u.l->n && (uint64_t)k > (uint64_t)(16u << 20) / a.u.l->n) FAIL(c, line, "list repetition too large");
    charge_repeat(&c->f, line, (uint64_t)k, a.u.l->n, sizeof(value), "list repetition");
    list *l = list_new(&c->f, 0);
    l->tuple = a.u.l->tuple;
    for (int64_t i = 0; i < k; i++)
        for (size_t j = 0; j < a.u.l->n; j++) list_push(&c->f, l, a.u.l->v[j]);
    return v_list(l);
}

static value op_mul(ctx *c, int line, value a, value b, bool num, bool flt) {
    int64_t r;
    if (num && !flt) {
        if (__builtin_mul_overflow(v_asi(a), v_asi(b), &r)) FAIL(c, line, "integer overflow");
        return v_int(r);
    }
    if (num) return v_float(v_asf(a) * v_asf(b));
    if ((a.t == V_STR || a.t == V_LIST) && (b.t == V_INT || b.t == V_BOOL)) return op_repeat(c, line, a, b);
    if ((b.t == V_STR || b.t == V_LIST) && (a.t == V_INT || a.t == V_BOOL)) return op_mul(c, line, b, a, num, flt);
    fail_operands(c, line, "*", a, b);
}

/* '/' and '//' ('F') */
static value op_div(ctx *c, int line, int op, value a, value b, bool num, bool flt) {
    if (op == '/') {
        if (!num) fail_operands(c, line, "/", a, b);
        if (v_asf(b) == 0) FAIL(c, line, "ZeroDivisionError: division by zero");
        return v_float(v_asf(a) / v_asf(b));
    }
    if (!num) fail_operands(c, line, "//", a, b);
    if (v_asf(b) == 0) FAIL(c, line, "ZeroDivisionError: integer division or modulo by zero");
    if (!flt) {
        if (v_asi(a) == INT64_MIN && v_asi(b) == -1) FAIL(c, line, "integer overflow");
        return v_int(floordiv_i(v_asi(a), v_asi(b)));
    }
    return v_float(floor(v_asf(a) / v_asf(b)));
}

/* '%': a string's format, or the modulo with the divisor's sign */
static value op_mod(ctx *c, int line, value a, value b, bool num, bool flt) {
    if (a.t == V_STR) return py_format(c, line, a, b);
    if (!num) fail_operands(c, line, "%", a, b);
    if (v_asf(b) == 0) FAIL(c, line, "ZeroDivisionError: integer division or modulo by zero");
    if (!flt) {
        if (v_asi(b) == -1) return v_int(0);
        int64_t m = v_asi(a) % v_asi(b);
        if (m != 0 && ((m < 0) != (v_asi(b) < 0))) m += v_asi(b);
        return v_int(m);
    }
    double m = fmod(v_asf(a), v_asf(b));
    if (m != 0 && ((m < 0) != (v_asf(b) < 0))) m += v_asf(b);
    return v_float(m);
}

/* '**' ('P') */
static value op_pow(ctx *c, int line, value a, value b, bool num, bool flt) {
    if (!num) fail_operands(c, line, "**", a, b);
    if (!flt && v_asi(b) >= 0) {
        int64_t base = v_asi(a), e = v_asi(b), acc = 1;
        if (base == 0 || base == 1) return v_int(e == 0 ? 1 : base);
        if (base == -1) return v_int(e % 2 ? -1 : 1);
        for (;;) { /* |base| >= 2: at most 63 squarings before an overflow */
            if ((e & 1) && __builtin_mul_overflow(acc, base, &acc)) FAIL(c, line, "integer overflow");
            e >>= 1;
            if (!e) break;
            if (__builtin_mul_overflow(base, base, &base)) FAIL(c, line, "integer overflow");
        }
        return v_int(acc);
    }
    return v_float(pow(v_asf(a), v_asf(b)));
}

value binop(ctx *c, int line, int op, value a, value b) {
    if (op == '~') {
        value sa = to_str(c, a), sb = to_str(c, b);
        return str_concat(c, sa, sb);
    }
    bool num = v_num(a) && v_num(b), flt = num && (a.t == V_FLOAT || b.t == V_FLOAT);
    switch (op) {
    case '+': return op_add(c, line, a, b, num, flt);
    case '-': return op_sub(c, line, a, b, num, flt);
    case '*': return op_mul(c, line, a, b, num, flt);
    case '/':
    case 'F': return op_div(c, line, op, a, b, num, flt);
    case '%': return op_mod(c, line, a, b, num, flt);
    case 'P': return op_pow(c, line, a, b, num, flt);
    }
    FAIL(c, line, "unknown operator");
}

/* Ordering for <, sort, min, max: numbers, strings (code point order), lists. */
int v_cmp(ctx *c, int line, value a, value b, bool fold_case) {
    if (v_num(a) && v_num(b)) {
        if (a.t != V_FLOAT && b.t != V_FLOAT) return v_asi(a) < v_asi(b) ? -1 : v_asi(a) > v_asi(b);
        double x = v_asf(a), y = v_asf(b);
        return x < y ? -1 : x > y;
    }
    if (a.t == V_STR && b.t == V_STR) {
        if (fold_case) {
            size_t i = 0, j = 0;
            while (i < a.u.s.n && j < b.u.s.n) {
                int la, lb;
                uint32_t x = utf8_dec(a.u.s.p + i, a.u.s.n - i, &la), y = utf8_dec(b.u.s.p + j, b.u.s.n - j, &lb);
                if (c->loc) {
                    x = os_towlower(c->loc, x);
                    y = os_towlower(c->loc, y);
                } else {
                    x = x < 128 ? (uint32_t)tolower((int)x) : x;
                    y = y < 128 ? (uint32_t)tolower((int)y) : y;
                }
                if (x != y) return x < y ? -1 : 1;
                i += (size_t)la, j += (size_t)lb;
            }
            return (i < a.u.s.n) - (j < b.u.s.n);
        }
        size_t m = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
        int r = memcmp(a.u.s.p, b.u.s.p, m);
        return r ? (r < 0 ? -1 : 1) : (a.u.s.n > b.u.s.n) - (a.u.s.n < b.u.s.n);
    }
    if (a.t == V_LIST && b.t == V_LIST) {
        for (size_t i = 0; i < a.u.l->n && i < b.u.l->n; i++) {
            if (v_eq(a.u.l->v[i], b.u.l->v[i])) continue;
            return v_cmp(c, line, a.u.l->v[i], b.u.l->v[i], fold_case);
        }
        return (a.u.l->n > b.u.l->n) - (a.u.l->n < b.u.l->n);
    }
    if (a.t == V_UNDEF) fail_undef(c, line, a);
    if (b.t == V_UNDEF) fail_undef(c, line, b);
    FAIL(c, line, "TypeError: '<' not supported between instances of '%s' and '%s'", v_typename(a), v_typename(b));
}

bool v_contains(ctx *c, int line, value container, value item) {
    switch (container.t) {
    case V_UNDEF: return false;
    case V_STR:
        if (item.t != V_STR)
            FAIL(c, line, "TypeError: 'in <string>' requires string as left operand, not %s", v_typename(item));
        tick(&c->f, 1 + container.u.s.n / 64);
        return item.u.s.n == 0 || memmem(container.u.s.p, container.u.s.n, item.u.s.p, item.u.s.n) != NULL;
    case V_LIST:
        tick(&c->f, container.u.l->n);
        for (size_t i = 0; i < container.u.l->n; i++)
            if (v_eq(container.u.l->v[i], item)) return true;
        return false;
    case V_DICT: tick(&c->f, container.u.d->n); return dict_find(container.u.d, item) >= 0;
    default: FAIL(c, line, "TypeError: argument of type '%s' is not iterable", v_typename(container));
    }
}

static value compare(ctx *c, int line, int op, value a, value b) {
    switch (op) {
    case OP_EQ: return v_bool(v_eq(a, b));
    case OP_NE: return v_bool(!v_eq(a, b));
    case OP_IN: return v_bool(v_contains(c, line, b, a));
    case OP_NOTIN: return v_bool(!v_contains(c, line, b, a));
    }
    int r = v_cmp(c, line, a, b, false);
    return v_bool(op == OP_LT ? r < 0 : op == OP_GT ? r > 0 : op == OP_LE ? r <= 0 : r >= 0);
}

/* ---- argument helpers ---- */

value arg_str(ctx *c, int line, const args *a, int i, const char *kw, const char *what) {
    value v = arg_get(a, i, kw);
    if (v.t != V_STR) FAIL(c, line, "TypeError: %s expects a string argument, got %s", what, v_typename(v));
    return v;
}

int64_t arg_int(ctx *c, int line, const args *a, int i, const char *kw, int64_t dflt, const char *what) {
    value v = arg_get(a, i, kw);
    if (v.t == V_UNDEF || v.t == V_NONE) return dflt;
    if (v.t != V_INT && v.t != V_BOOL)
        FAIL(c, line, "TypeError: %s expects an integer argument, got %s", what, v_typename(v));
    return v_asi(v);
}

static value eval(ctx *c, frame *fr, const node *x);
static void exec_body(ctx *c, frame *fr, const nlist *body);

static void eval_args(ctx *c, frame *fr, const node *x, args *a, int extra_front) {
    a->npos = x->items.n + extra_front;
    a->pos = xalloc(&c->f, (size_t)(a->npos + 1) * sizeof(value));
    for (int i = 0; i < x->items.n; i++) a->pos[i + extra_front] = eval(c, fr, x->items.v[i]);
    a->nkw = x->n_names;
    a->kwn = x->names;
    a->kwv = xalloc(&c->f, (size_t)(a->nkw + 1) * sizeof(value));
    for (int i = 0; i < a->nkw; i++) a->kwv[i] = eval(c, fr, x->items2.v[i]);
}

/* ---- macros ---- */

static value call_macro(ctx *c, int line, func *fn, args *a) {
    const node *m = fn->macro;
    if (++c->depth > 100) FAIL(c, line, "macro recursion too deep");
    frame *fr = frame_new(c, fn->closure);
    int np = m->n_names;
    bool *set = xzalloc(&c->f, (size_t)(np + 1) * sizeof(bool));
    list *varargs = list_new(&c->f, 0);
    dict *kwargs = dict_new(&c->f, 0);
    for (int i = 0; i < a->npos; i++) {
        if (i < np) frame_set(c, fr, m->names[i], a->pos[i]), set[i] = true;
        else list_push(&c->f, varargs, a->pos[i]);
    }
    for (int k = 0; k < a->nkw; k++) {
        int i = 0;
        while (i < np && strcmp(m->names[i], a->kwn[k])) i++;
        if (i < np) {
            if (set[i])
                FAIL(c, line, "TypeError: macro '%s' got multiple values for argument '%s'", fn->name, a->kwn[k]);
            frame_set(c, fr, m->names[i], a->kwv[k]);
            set[i] = true;
        } else {
            dict_set(&c->f, kwargs, v_cstr(a->kwn[k]), a->kwv[k]);
        }
    }
    for (int i = 0; i < np; i++)
        if (!set[i])
            frame_set(c, fr, m->names[i],
                      m->items2.v[i] ? eval(c, fr, m->items2.v[i])
                                     : v_undef_msg(c, "parameter '%s' was not provided", m->names[i]));
    frame_set(c, fr, "varargs", v_list(varargs));
    frame_set(c, fr, "kwargs", v_dict(kwargs));
    if (fn->caller.t == V_FUNC) frame_set(c, fr, "caller", fn->caller);
    sbuf buf = {0}, *saved = c->out;
    c->out = &buf;
    exec_body(c, fr, &m->items);
    c->out = saved;
    c->ctl = CTL_NONE;
    c->depth--;
    return sb_value(&buf);
}

static value call_value(ctx *c, int line, value callee, args *a) {
    if (callee.t == V_UNDEF) fail_undef(c, line, callee);
    if (callee.t != V_FUNC) FAIL(c, line, "TypeError: '%s' object is not callable", v_typename(callee));
    func *fn = callee.u.fn;
    if (fn->macro) return call_macro(c, line, fn, a);
    return fn->fn(c, line, fn, a);
}

/* ---- evaluator ---- */

static value lookup(ctx *c, frame *fr, const char *name) {
    for (; fr; fr = fr->parent) {
        long i = dict_find_str(fr->vars, name, strlen(name));
        if (i >= 0) return fr->vars->v[i];
    }
    value g;
    if (builtin_global(c, name, &g)) return g;
    return v_undef_msg(c, "'%s' is undefined", name);
}

static value eval_node(ctx *c, frame *fr, const node *x);

/* Every evaluation is charged a step, and nesting is bounded so the C stack is too. */
static value eval(ctx *c, frame *fr, const node *x) {
    tick(&c->f, 1);
    if (++c->eval_depth > c->max_depth) FAIL(c, x->line, "the template nests evaluations deeper than %d", c->max_depth);
    value v = eval_node(c, fr, x);
    c->eval_depth--;
    return v;
}

static value eval_node(ctx *c, frame *fr, const node *x) {
    switch (x->kind) {
    case E_CONST: return x->val;
    case E_NAME: return lookup(c, fr, x->name);
    case E_CAPTURED: return c->captured;
    case E_ATTR: return get_attr(c, x->line, eval(c, fr, x->a), x->name);
    case E_ITEM: {
        value obj = eval(c, fr, x->a);
        return get_item(c, x->line, obj, eval(c, fr, x->b));
    }
    case E_SLICE: {
        value obj = eval(c, fr, x->a);
        value s = x->b ? eval(c, fr, x->b) : v_none(), e = x->c ? eval(c, fr, x->c) : v_none(),
              st = x->d ? eval(c, fr, x->d) : v_none();
        return do_slice(c, x->line, obj, s, e, st);
    }
    case E_CALL: {
        value callee = eval(c, fr, x->a);
        args a;
        eval_args(c, fr, x, &a, 0);
        return call_value(c, x->line, callee, &a);
    }
    case E_FILTER: {
        value in = eval(c, fr, x->a);
        args a;
        eval_args(c, fr, x, &a, 0);
        return apply_filter(c, x->line, x->name, in, &a);
    }
    case E_TEST: {
        value in = eval(c, fr, x->a);
        args a;
        eval_args(c, fr, x, &a, 0);
        bool r = apply_test(c, x->line, x->name, in, &a);
        return v_bool(x->op ? !r : r);
    }
    case E_NOT: return v_bool(!v_truthy(eval(c, fr, x->a)));
    case E_NEG:
    case E_POS: {
        value v = eval(c, fr, x->a);
        if (v.t == V_UNDEF) fail_undef(c, x->line, v);
        if (!v_num(v))
            FAIL(c, x->line, "TypeError: bad operand type for unary %c: '%s'", x->kind == E_NEG ? '-' : '+',
                 v_typename(v));
        if (x->kind == E_POS) return v.t == V_BOOL ? v_int(v.u.b) : v;
        if (v.t == V_FLOAT) return v_float(-v.u.f);
        if (v_asi(v) == INT64_MIN) FAIL(c, x->line, "integer overflow");
        return v_int(-v_asi(v));
    }
    case E_BIN: {
        value a = eval(c, fr, x->a);
        return binop(c, x->line, x->op, a, eval(c, fr, x->b));
    }
    case E_AND: {
        value a = eval(c, fr, x->a);
        return v_truthy(a) ? eval(c, fr, x->b) : a;
    }
    case E_OR: {
        value a = eval(c, fr, x->a);
        return v_truthy(a) ? a : eval(c, fr, x->b);
    }
    case E_CMP: {
        value a = eval(c, fr, x->a);
        return compare(c, x->line, x->op, a, eval(c, fr, x->b));
    }
    case E_COND:
        if (v_truthy(eval(c, fr, x->a))) return eval(c, fr, x->b);
        return x->c ? eval(c, fr, x->c)
                    : v_undef_msg(
                          c, "the inline if-expression on line %d evaluated to false and no else section was defined",
                          x->line);
    case E_LIST:
    case E_TUPLE: {
        list *l = list_new(&c->f, (size_t)x->items.n);
        l->tuple = x->kind == E_TUPLE;
        for (int i = 0; i < x->items.n; i++) list_push(&c->f, l, eval(c, fr, x->items.v[i]));
        return v_list(l);
    }
    case E_DICT: {
        dict *d = dict_new(&c->f, (size_t)x->items.n);
        for (int i = 0; i < x->items.n; i++) {
            value k = eval(c, fr, x->items.v[i]);
            if (k.t == V_LIST && !k.u.l->tuple) FAIL(c, x->line, "TypeError: unhashable type: 'list'");
            if (k.t == V_DICT || k.t == V_NS || k.t == V_UNDEF)
                FAIL(c, x->line, "TypeError: unhashable dict key (%s)", v_typename(k));
            dict_set(&c->f, d, k, eval(c, fr, x->items2.v[i]));
        }
        return v_dict(d);
    }
    }
    FAIL(c, x->line, "internal error: node %d is not an expression", x->kind);
}

static void emit(ctx *c, value v) {
    str_value(c, c->out, v, 0);
    if (c->out->n > c->max_output) FAIL(c, 0, "the template's output exceeds %zu bytes", c->max_output);
}

/* Binds loop / set targets; several targets unpack a sequence of exactly that length. */
static void assign(ctx *c, frame *fr, int line, const char *const *names, int n, value v) {
    if (n == 1) {
        frame_set(c, fr, names[0], v);
        return;
    }
    list *l = v.t == V_LIST ? v.u.l : v.t == V_STR ? iter_list(c, line, v) : NULL;
    if (!l) FAIL(c, line, "TypeError: cannot unpack non-iterable %s object", v_typename(v));
    if ((int)l->n != n)
        FAIL(c, line, "ValueError: %s values to unpack (expected %d, got %zu)",
             (int)l->n > n ? "too many" : "not enough", n, l->n);
    for (int i = 0; i < n; i++) frame_set(c, fr, names[i], l->v[i]);
}

static value capture(ctx *c, frame *fr, const nlist *body) {
    sbuf buf = {0}, *saved = c->out;
    c->out = &buf;
    exec_body(c, fr, body);
    c->out = saved;
    return sb_value(&buf);
}

/* Each iteration runs in a fresh scope (as in jinja2): what the body sets is gone at the next
 * iteration and after the loop. */
static void exec_for(ctx *c, frame *fr, const node *x) {
    list *items = iter_list(c, x->line, eval(c, fr, x->a));
    if (x->b) { /* the loop filter runs before `loop` exists and decides loop.length */
        list *kept = list_new(&c->f, items->n);
        frame *ff = frame_new(c, fr);
        for (size_t i = 0; i < items->n; i++) {
            assign(c, ff, x->line, x->names, x->n_names, items->v[i]);
            if (v_truthy(eval(c, ff, x->b))) list_push(&c->f, kept, items->v[i]);
        }
        items = kept;
    }
    if (!items->n) {
        exec_body(c, fr, &x->items2);
        return;
    }
    static const char *const fields[] = {"index",  "index0",   "revindex", "revindex0", "first",  "last",
                                         "length", "previtem", "nextitem", "depth",     "depth0", "cycle"};
    enum {
        L_INDEX,
        L_INDEX0,
        L_REVINDEX,
        L_REVINDEX0,
        L_FIRST,
        L_LAST,
        L_LENGTH,
        L_PREV,
        L_NEXT,
        L_DEPTH,
        L_DEPTH0,
        L_CYCLE,
        L_N
    };
    dict *ld = dict_new(&c->f, L_N);
    for (int k = 0; k < L_N; k++) dict_append(&c->f, ld, v_cstr(fields[k]), v_none());
    value loop = {V_NS, {0}};
    loop.u.d = ld;
    ld->v[L_CYCLE] = v_func(c, "cycle", loop_cycle, loop);
    ld->v[L_DEPTH] = v_int(1);
    ld->v[L_DEPTH0] = v_int(0);
    int64_t n = (int64_t)items->n;
    ld->v[L_LENGTH] = v_int(n);
    value no_prev = v_undef_msg(c, "there is no previous item"), no_next = v_undef_msg(c, "there is no next item");
    for (int64_t i = 0; i < n; i++) {
        ld->v[L_INDEX] = v_int(i + 1);
        ld->v[L_INDEX0] = v_int(i);
        ld->v[L_REVINDEX] = v_int(n - i);
        ld->v[L_REVINDEX0] = v_int(n - i - 1);
        ld->v[L_FIRST] = v_bool(i == 0);
        ld->v[L_LAST] = v_bool(i == n - 1);
        ld->v[L_PREV] = i > 0 ? items->v[i - 1] : no_prev;
        ld->v[L_NEXT] = i < n - 1 ? items->v[i + 1] : no_next;
        frame *lf = frame_new(c, fr);
        frame_set(c, lf, "loop", loop);
        assign(c, lf, x->line, x->names, x->n_names, items->v[i]);
        exec_body(c, lf, &x->items);
        int ctl = c->ctl;
        c->ctl = CTL_NONE;
        if (ctl == CTL_BREAK) break;
    }
}

static void exec_node_inner(ctx *c, frame *fr, const node *x);

static void exec_node(ctx *c, frame *fr, const node *x) {
    tick(&c->f, 1);
    if (++c->eval_depth > c->max_depth) FAIL(c, x->line, "the template nests blocks deeper than %d", c->max_depth);
    exec_node_inner(c, fr, x);
    c->eval_depth--;
}

static void exec_node_inner(ctx *c, frame *fr, const node *x) {
    switch (x->kind) {
    case S_TEXT:
        sb_put(&c->f, c->out, x->val.u.s.p, x->val.u.s.n);
        if (c->out->n > c->max_output) FAIL(c, x->line, "the template's output exceeds %zu bytes", c->max_output);
        return;
    case S_OUTPUT: emit(c, eval(c, fr, x->a)); return;
    case S_IF: exec_body(c, fr, v_truthy(eval(c, fr, x->a)) ? &x->items : &x->items2); return;
    case S_FOR: exec_for(c, fr, x); return;
    case S_SET: assign(c, fr, x->line, x->names, x->n_names, eval(c, fr, x->a)); return;
    case S_SETATTR: {
        value ns = lookup(c, fr, x->name);
        if (ns.t != V_NS)
            FAIL(c, x->line, "TemplateRuntimeError: cannot assign attribute on non-namespace object '%s'", x->name);
        dict_set(&c->f, ns.u.d, x->val, eval(c, fr, x->a));
        return;
    }
    case S_SETBLOCK: {
        value v = capture(c, fr, &x->items);
        if (x->b) {
            c->captured = v;
            v = eval(c, fr, x->b);
        }
        frame_set(c, fr, x->names[0], v);
        return;
    }
    case S_FILTERBLOCK:
        c->captured = capture(c, fr, &x->items);
        emit(c, eval(c, fr, x->b));
        return;
    case S_MACRO: {
        func *f = xzalloc(&c->f, sizeof *f);
        f->name = x->name, f->macro = x, f->closure = fr;
        value v = {V_FUNC, {0}};
        v.u.fn = f;
        frame_set(c, fr, x->name, v);
        return;
    }
    case S_CALLBLOCK: {
        func *caller = xzalloc(&c->f, sizeof *caller);
        caller->name = "caller", caller->macro = x, caller->closure = fr;
        value cv = {V_FUNC, {0}};
        cv.u.fn = caller;
        const node *call = x->a;
        value callee = eval(c, fr, call->a);
        if (callee.t != V_FUNC || !callee.u.fn->macro) FAIL(c, x->line, "'call' block needs a macro to call");
        func *m = xalloc(&c->f, sizeof *m);
        *m = *callee.u.fn;
        m->caller = cv;
        args a;
        eval_args(c, fr, call, &a, 0);
        emit(c, call_macro(c, x->line, m, &a));
        return;
    }
    case S_WITH: {
        frame *wf = frame_new(c, fr);
        for (int i = 0; i < x->n_names; i++) frame_set(c, wf, x->names[i], eval(c, fr, x->items2.v[i]));
        exec_body(c, wf, &x->items);
        return;
    }
    case S_GENERATION: /* transformers renders the body as a call block: a scope of its own */
        exec_body(c, frame_new(c, fr), &x->items);
        return;
    case S_BREAK: c->ctl = CTL_BREAK; return;
    case S_CONTINUE: c->ctl = CTL_CONTINUE; return;
    }
    FAIL(c, x->line, "internal error: node %d is not a statement", x->kind);
}

static void exec_body(ctx *c, frame *fr, const nlist *body) {
    for (int i = 0; i < body->n && !c->ctl; i++) exec_node(c, fr, body->v[i]);
}

/* ---- JSON input ---- */

static value from_json(ctx *c, const json_t *j, int depth) {
    if (depth > 1000) FAIL(c, 0, "input JSON nested too deeply");
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        dict *d = dict_new(&c->f, json_object_size(j));
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) dict_append(&c->f, d, v_cstr(k), from_json(c, v, depth + 1));
        return v_dict(d);
    }
    case JSON_ARRAY: {
        list *l = list_new(&c->f, json_array_size(j));
        for (size_t i = 0; i < json_array_size(j); i++)
            list_push(&c->f, l, from_json(c, json_array_get(j, i), depth + 1));
        return v_list(l);
    }
    case JSON_STRING: return v_str(json_string_value(j), json_string_length(j));
    case JSON_INTEGER: return v_int((int64_t)json_integer_value(j));
    case JSON_REAL: return v_float(json_real_value(j));
    case JSON_TRUE: return v_bool(true);
    case JSON_FALSE: return v_bool(false);
    default: return v_none();
    }
}

char *jinja_render(const jinja_template *t, const json_t *vars, const jinja_options *opt, size_t *out_len,
                   lfm2c_error *err) {
    arena a = {.limit = opt && opt->memory_limit ? opt->memory_limit : JINJA_DEFAULT_MEMORY, .shared = true};
    budget bud = {.max_steps = opt && opt->max_steps ? opt->max_steps : JINJA_DEFAULT_STEPS,
                  .deadline = lfm2c_now_s() + (opt && opt->max_seconds > 0 ? opt->max_seconds : JINJA_DEFAULT_SECONDS),
                  .cancel = opt ? opt->cancel : NULL};
    ctx c;
    memset(&c, 0, sizeof c);
    c.f.err = err;
    c.f.a = &a;
    c.f.bud = &bud;
    c.max_output = opt && opt->max_output ? opt->max_output : JINJA_DEFAULT_OUTPUT;
    c.max_depth = opt && opt->max_depth > 0 ? opt->max_depth : JINJA_DEFAULT_DEPTH;
    c.now = opt ? opt->now : 0;
    c.loc = os_ctype_new();
    char *volatile result = NULL;
    if (setjmp(c.f.jb) == 0) {
        sbuf out = {0};
        c.out = &out;
        c.globals = frame_new(&c, NULL);
        if (vars && json_is_object(vars)) {
            const char *k;
            json_t *v;
            json_object_foreach((json_t *)vars, k, v) frame_set(&c, c.globals, k, from_json(&c, v, 0));
        }
        exec_body(&c, c.globals, &t->body);
        result = malloc(out.n + 1);
        if (!result) fail(&c.f, 0, "out of memory");
        if (out.n) memcpy(result, out.p, out.n);
        result[out.n] = 0;
        if (out_len) *out_len = out.n;
        if (err) err->code = LFM2C_OK, err->msg[0] = 0;
    }
    os_ctype_free(c.loc);
    arena_free(&a);
    return result;
}
