/* jinja_internal.h — private to the Jinja interpreter: what jinja.c (the lexer, the parser, the
 * evaluator, the render's arena and budget) and jinja_builtins.c (the built-in filters, tests,
 * globals and the str / dict / list methods) share. The value type and its containers, the string
 * buffer, the interpreter's state (ctx: the failure point, the output, the depth), the budget
 * functions every built-in charges its work to, and the evaluator's operations the built-ins call
 * back (str(), repr(), json.dumps, item access, comparison); then the built-ins' entry points the
 * evaluator calls. Nothing outside src/chat/jinja*.c includes it; the public interface is jinja.h.
 *
 * Errors unwind with longjmp (fail, FAIL) to the render's entry point; everything a render
 * allocates lives in its arena (xalloc), freed at once. */
#ifndef LFM2C_CHAT_JINJA_INTERNAL_H
#define LFM2C_CHAT_JINJA_INTERNAL_H
#include "base/error.h"
#include "base/os.h"
#include "chat/jinja.h"

#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* ---- failure and budget (jinja.c) ----------------------------------------------------------- */

typedef struct arena arena;   /* a parse's or a render's memory (jinja.c) */
typedef struct budget budget; /* what a render may still spend (jinja.c) */

typedef struct jfail {
    jmp_buf jb;
    lfm2c_error *err;
    arena *a;
    budget *bud;
} jfail;

/* Sets the error (LFM2C_EINVAL, or code) with the template line (0: none) and unwinds. */
_Noreturn __attribute__((format(printf, 3, 4))) void fail(jfail *f, int line, const char *fmt, ...);
_Noreturn __attribute__((format(printf, 4, 5))) void fail_code(jfail *f, int code, int line, const char *fmt, ...);
/* Charges n units of work to the render; fails when the steps, the time or the caller run out. */
void tick(jfail *f, uint64_t n);
/* n bytes of the arena, charged to the budget; fails when the memory bounds are reached. */
void *xalloc(jfail *f, size_t n);
/* Before a loop that repeats `unit` bytes or items `count` times: charges the whole loop to the
 * budget and refuses output that could never fit the render's memory. */
void charge_repeat(jfail *f, int line, uint64_t count, uint64_t unit, uint64_t elem_size, const char *what);

static inline void *xzalloc(jfail *f, size_t n) { return memset(xalloc(f, n), 0, n); }

static inline char *xstrndup(jfail *f, const char *s, size_t n) {
    char *p = xalloc(f, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* ---- UTF-8 (jinja.c) -------------------------------------------------------------------------- */

/* Decodes one code point at s (n bytes left); *len gets its byte length. */
uint32_t utf8_dec(const char *s, size_t n, int *len);
int utf8_enc(uint32_t c, char *o);
size_t utf8_count(const char *s, size_t n);
/* Python's str.isspace(). */
bool u_isspace(uint32_t c);

/* ---- values --------------------------------------------------------------------------------- */

typedef enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_FUNC } vtype;

typedef struct list list;
typedef struct dict dict;
typedef struct func func;

typedef struct value {
    vtype t;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s; /* V_STR; V_UNDEF: the missing name (p may be NULL) */
        list *l;
        dict *d; /* V_DICT and V_NS */
        func *fn;
    } u;
} value;

struct list {
    value *v;
    size_t n, cap;
    bool tuple;
};
struct dict {
    value *k, *v;
    size_t n, cap;
};

static inline value v_undef(const char *name) {
    value v = {V_UNDEF, {0}};
    v.u.s.p = name;
    v.u.s.n = name ? strlen(name) : 0;
    return v;
}
static inline value v_none(void) {
    value v = {V_NONE, {0}};
    return v;
}
static inline value v_bool(bool b) {
    value v = {V_BOOL, {0}};
    v.u.b = b;
    return v;
}
static inline value v_int(int64_t i) {
    value v = {V_INT, {0}};
    v.u.i = i;
    return v;
}
static inline value v_float(double f) {
    value v = {V_FLOAT, {0}};
    v.u.f = f;
    return v;
}
static inline value v_str(const char *p, size_t n) {
    value v = {V_STR, {0}};
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}
static inline value v_cstr(const char *p) { return v_str(p, strlen(p)); }
static inline value v_list(list *l) {
    value v = {V_LIST, {0}};
    v.u.l = l;
    return v;
}
static inline value v_dict(dict *d) {
    value v = {V_DICT, {0}};
    v.u.d = d;
    return v;
}

list *list_new(jfail *f, size_t cap);
void list_push(jfail *f, list *l, value v);
dict *dict_new(jfail *f, size_t cap);
long dict_find(const dict *d, value k);
long dict_find_str(const dict *d, const char *s, size_t n);
/* Python dict assignment: an existing key keeps its position. */
void dict_set(jfail *f, dict *d, value k, value v);

static inline bool v_num(value v) { return v.t == V_INT || v.t == V_FLOAT || v.t == V_BOOL; }
static inline double v_asf(value v) { return v.t == V_FLOAT ? v.u.f : v.t == V_INT ? (double)v.u.i : (double)v.u.b; }
static inline int64_t v_asi(value v) { return v.t == V_INT ? v.u.i : (int64_t)v.u.b; }

/* Equality as Python's ==. Values nested deeper than 10,000 levels (a template can build them
 * in a loop) compare unequal rather than exhaust the C stack. */
bool v_eq_d(value a, value b, int depth);
static inline bool v_eq(value a, value b) { return v_eq_d(a, b, 0); }
bool v_truthy(value v);
const char *v_typename(value v);

/* ---- string buffer -------------------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

void sb_put(jfail *f, sbuf *b, const char *s, size_t n);
static inline void sb_puts(jfail *f, sbuf *b, const char *s) { sb_put(f, b, s, strlen(s)); }
static inline void sb_putc(jfail *f, sbuf *b, char c) { sb_put(f, b, &c, 1); }
static inline value sb_value(sbuf *b) { return b->n ? v_str(b->p, b->n) : v_str("", 0); }

/* ---- the interpreter's state ------------------------------------------------------------------ */

typedef struct node node; /* the syntax tree (jinja.c) */
typedef struct nlist nlist;

typedef struct frame {
    struct frame *parent;
    dict *vars;
} frame;

typedef struct args {
    value *pos;
    int npos;
    const char **kwn;
    value *kwv;
    int nkw;
} args;

typedef struct ctx ctx;
typedef value (*builtin_fn)(ctx *c, int line, func *fn, args *a);

struct func {
    const char *name;
    builtin_fn fn;     /* builtins and bound methods */
    value self;        /* the receiver of a bound method; the loop of loop.cycle */
    const node *macro; /* macros and call-block callers: params in names/items2, body in items */
    frame *closure;
    value caller; /* the `caller` a call block hands to its macro */
};

enum { CTL_NONE, CTL_BREAK, CTL_CONTINUE };

struct ctx {
    jfail f;
    sbuf *out;
    size_t max_output;
    int ctl, depth;
    int eval_depth, max_depth; /* nested eval/exec calls (the C stack) */
    time_t now;
    os_ctype *loc;  /* Unicode case and classes (base/os.h), NULL: ASCII only */
    value captured; /* the body of a filter block / block set, for its filter chain */
    frame *globals;
};

#define FAIL(c, line, ...) fail(&(c)->f, line, __VA_ARGS__)

static inline value v_func(ctx *c, const char *name, builtin_fn fn, value self) {
    func *f = xzalloc(&c->f, sizeof *f);
    f->name = name, f->fn = fn, f->self = self;
    value v = {V_FUNC, {0}};
    v.u.fn = f;
    return v;
}

/* ---- the evaluator's operations the built-ins use (jinja.c) --------------------------------- */

/* An undefined value remembering why it is undefined, for the error its use raises. */
__attribute__((format(printf, 2, 3))) value v_undef_msg(ctx *c, const char *fmt, ...);
/* str() and repr() of a value, appended to b. */
void str_value(ctx *c, sbuf *b, value v, int depth);
void repr_value(ctx *c, sbuf *b, value v, int depth);
value to_str(ctx *c, value v);

typedef struct json_opts {
    const char *indent; /* NULL: one line */
    const char *item_sep, *key_sep;
    bool sort_keys, ensure_ascii;
} json_opts;
/* json.dumps of v with o's layout, appended to b. */
void json_value(ctx *c, int line, sbuf *b, value v, const json_opts *o, int level);

value get_attr(ctx *c, int line, value obj, const char *name);
value get_item(ctx *c, int line, value obj, value key);
value do_slice(ctx *c, int line, value obj, value vs, value ve, value vstep);
/* Items a for loop / filter walks over (a string's characters, a dict's keys; undefined: none). */
list *iter_list(ctx *c, int line, value v);
int64_t v_len(ctx *c, int line, value v);
value str_concat(ctx *c, value a, value b);
/* An arithmetic operator on two values: '+' '-' '*' '/' '%' '~', 'F' (//), 'P' (**). */
value binop(ctx *c, int line, int op, value a, value b);
/* Ordering for <, sort, min, max: numbers, strings (code point order), lists. */
int v_cmp(ctx *c, int line, value a, value b, bool fold_case);
bool v_contains(ctx *c, int line, value container, value item);

/* Arguments: positional i, else keyword kw (NULL: positional only). */
static inline value arg_get(const args *a, int i, const char *kw) {
    if (i >= 0 && i < a->npos) return a->pos[i];
    for (int k = 0; kw && k < a->nkw; k++)
        if (!strcmp(a->kwn[k], kw)) return a->kwv[k];
    return v_undef(NULL);
}
static inline bool arg_has(const args *a, int i, const char *kw) {
    if (i >= 0 && i < a->npos) return true;
    for (int k = 0; kw && k < a->nkw; k++)
        if (!strcmp(a->kwn[k], kw)) return true;
    return false;
}
value arg_str(ctx *c, int line, const args *a, int i, const char *kw, const char *what);
int64_t arg_int(ctx *c, int line, const args *a, int i, const char *kw, int64_t dflt, const char *what);

/* ---- the built-ins (jinja_builtins.c) ------------------------------------------------------- */

/* obj.name when it is a built-in method of obj's type (str, dict, list), bound to obj, in *out. */
bool builtin_method(ctx *c, value obj, const char *name, value *out);
/* The global function name (range, namespace, dict, raise_exception, strftime_now) in *out. */
bool builtin_global(ctx *c, const char *name, value *out);
/* loop.cycle(...), bound to the loop's namespace. */
value loop_cycle(ctx *c, int line, func *fn, args *a);
/* Python's printf-style formatting: fmt % argv. */
value py_format(ctx *c, int line, value fmt, value argv);
/* Filters and tests by name: the parser checks a name is known, the evaluator applies it. */
bool known_filter(const char *name);
value apply_filter(ctx *c, int line, const char *name, value in, args *a);
bool known_test(const char *name);
bool apply_test(ctx *c, int line, const char *name, value in, args *a);
#endif
