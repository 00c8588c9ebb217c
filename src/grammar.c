/* grammar.c — JSON-schema constrained decoding as a byte-level pushdown automaton.
 *
 * The schema is compiled into nodes (allowed types + per-type constraints). The parse state is a
 * stack of small frames, one per open value (object, array, string, number, literal, enum), so
 * a state is a plain struct the token mask can copy while it walks a trie of token byte strings:
 * a subtree is cut as soon as its prefix is rejected. grammar_completion drives the same
 * automaton with the "closing-est" byte at every point, so its output is accepted by
 * construction; the server uses it to finish a value when max_tokens is about to run out. */
#include "grammar.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { T_NULL = 1, T_BOOL = 2, T_INT = 4, T_NUM = 8, T_STR = 16, T_ARR = 32, T_OBJ = 64, T_ALL = 127 };
enum { MAX_NODES = 4096, MAX_PROPS = 64, MAX_ENUM = 64, MAX_NUM_BYTES = 40, MAX_SCHEMA_DEPTH = 24 };

typedef struct gstr { char *s; int n; } gstr;

typedef struct gnode {
    int types;
    int n_enum;
    gstr *enums;             /* canonical compact JSON of each allowed value */
    int n_props;
    gstr *keys;              /* property names, JSON-escaped, without quotes */
    int *prop_node;
    uint64_t required;
    int additional;          /* node for other keys, -1: none allowed */
    int items;               /* node of array items */
    int min_items, max_items, min_len, max_len; /* -1: unbounded */
} gnode;

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
};

/* Frame kinds and phases. */
enum { F_VALUE, F_OBJ, F_ARR, F_STR, F_NUM, F_LIT, F_ENUM, F_CALLS };
enum { O_FIRST, O_KEY, O_COLON, O_AFTER, O_NEXT };
enum { A_FIRST, A_AFTER, A_NEXT };
enum { S_CHAR, S_ESC, S_HEX, S_UTF8 };
enum { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };
enum { C_OPEN, C_NAME, C_ARGFIRST, C_KEY, C_ARGAFTER, C_ARGNEXT, C_CALLAFTER, C_NEXTCALL };

static const char *LIT_JSON[3] = {"null", "true", "false"};
static const char *LIT_PY[3] = {"None", "True", "False"};

/* ---- schema compilation ------------------------------------------------------------------ */

typedef struct compiler { grammar *g; char *err; size_t errcap; int cap; } compiler;

static int fail(compiler *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (c->err && c->errcap) vsnprintf(c->err, c->errcap, fmt, ap);
    va_end(ap);
    return -1;
}

static int new_node(compiler *c) {
    grammar *g = c->g;
    if (g->n_nodes >= MAX_NODES) return fail(c, "schema too large (more than %d nodes)", MAX_NODES);
    if (g->n_nodes == c->cap) {
        int ncap = c->cap ? 2 * c->cap : 16;
        gnode *nn = realloc(g->nodes, (size_t)ncap * sizeof *nn);
        if (!nn) return fail(c, "out of memory");
        g->nodes = nn;
        c->cap = ncap;
    }
    gnode *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->types = T_ALL;
    n->additional = 0; /* node 0 is "any value" */
    n->items = 0;
    n->min_items = n->max_items = n->min_len = n->max_len = -1;
    return g->n_nodes++;
}

static gstr dup_str(const char *s, int n) {
    gstr r = {malloc((size_t)n + 1), n};
    if (r.s) { memcpy(r.s, s, (size_t)n); r.s[n] = 0; }
    return r;
}

/* Compact canonical JSON text of a value (enum/const). */
static int canonical(compiler *c, json_t *v, gstr *out) {
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s) return fail(c, "out of memory");
    *out = dup_str(s, (int)strlen(s));
    free(s);
    return out->s ? 0 : fail(c, "out of memory");
}

static int escaped_key(compiler *c, const char *key, gstr *out) {
    json_t *js = json_string(key);
    if (!js) return fail(c, "property name is not valid UTF-8");
    char *s = json_dumps(js, JSON_ENCODE_ANY);
    json_decref(js);
    if (!s) return fail(c, "out of memory");
    *out = dup_str(s + 1, (int)strlen(s) - 2);
    free(s);
    return out->s ? 0 : fail(c, "out of memory");
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
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000000)
        return fail(c, "schema '%s' must be a non-negative integer", key);
    *out = (int)json_integer_value(v);
    return 0;
}

static int compile(compiler *c, json_t *s, int depth) {
    if (depth > MAX_SCHEMA_DEPTH) return fail(c, "schema nested deeper than %d", MAX_SCHEMA_DEPTH);
    if (json_is_true(s)) return 0;
    if (!json_is_object(s)) return fail(c, "schema must be an object");
    static const char *unsupported[] = {"anyOf", "oneOf", "allOf", "$ref", "not", "if", "then", "else",
        "pattern", "patternProperties", "propertyNames", "dependentRequired", "dependentSchemas",
        "dependencies", "prefixItems", "contains", "minContains", "maxContains", "multipleOf",
        "exclusiveMinimum", "exclusiveMaximum", "maximum", "minProperties", "maxProperties",
        "unevaluatedProperties", "unevaluatedItems", "additionalItems"};
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++)
        if (json_object_get(s, unsupported[i]))
            return fail(c, "schema keyword '%s' is not supported", unsupported[i]);
    json_t *uniq = json_object_get(s, "uniqueItems");
    if (uniq && json_is_true(uniq)) return fail(c, "schema keyword 'uniqueItems' is not supported");
    json_t *mini = json_object_get(s, "minimum");
    if (mini && !(json_is_number(mini) && json_number_value(mini) == 0))
        return fail(c, "schema keyword 'minimum' is supported only as 0");

    int id = new_node(c);
    if (id < 0) return -1;
#define N (c->g->nodes[id]) /* nodes may move while children compile */
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
    } else if (json_object_get(s, "properties")) {
        types = T_OBJ;
    } else if (json_object_get(s, "items")) {
        types = T_ARR;
    } else {
        types = T_ALL;
    }
    if (types & T_NUM) types |= T_INT;
    N.types = types;

    json_t *en = json_object_get(s, "enum"), *cn = json_object_get(s, "const");
    if (en && (!json_is_array(en) || json_array_size(en) == 0 || json_array_size(en) > MAX_ENUM))
        return fail(c, "schema 'enum' must be an array of 1..%d values", MAX_ENUM);
    if (en || cn) {
        int n = cn ? 1 : (int)json_array_size(en);
        if (!(N.enums = calloc((size_t)n, sizeof(gstr)))) return fail(c, "out of memory");
        for (int i = 0; i < n; i++) {
            if (canonical(c, cn ? cn : json_array_get(en, (size_t)i), &N.enums[i])) return -1;
            N.n_enum++;
        }
    }

    json_t *props = json_object_get(s, "properties");
    if (props && !json_is_object(props)) return fail(c, "schema 'properties' must be an object");
    if (props) {
        int n = (int)json_object_size(props);
        if (n > MAX_PROPS) return fail(c, "more than %d properties in one object", MAX_PROPS);
        N.keys = calloc((size_t)n + 1, sizeof(gstr));
        N.prop_node = calloc((size_t)n + 1, sizeof(int));
        if (!N.keys || !N.prop_node) return fail(c, "out of memory");
        const char *key;
        json_t *sub;
        json_object_foreach(props, key, sub) {
            int k = N.n_props;
            if (escaped_key(c, key, &N.keys[k])) return -1;
            N.n_props++;
            int child = compile(c, sub, depth + 1);
            if (child < 0) return -1;
            N.prop_node[k] = child;
        }
    }
    json_t *req = json_object_get(s, "required");
    if (req && !json_is_array(req)) return fail(c, "schema 'required' must be an array");
    if (req) {
        size_t i;
        json_t *r;
        json_array_foreach(req, i, r) {
            if (!json_is_string(r)) return fail(c, "schema 'required' must list strings");
            gstr k;
            if (escaped_key(c, json_string_value(r), &k)) return -1;
            int found = -1;
            for (int p = 0; p < N.n_props; p++)
                if (N.keys[p].n == k.n && !memcmp(N.keys[p].s, k.s, (size_t)k.n)) found = p;
            free(k.s);
            if (found < 0)
                return fail(c, "required property '%s' is not in 'properties'", json_string_value(r));
            N.required |= 1ull << found;
        }
    }
    json_t *add = json_object_get(s, "additionalProperties");
    if (add && json_is_false(add)) {
        N.additional = -1;
    } else if (add && !json_is_true(add)) {
        int child = compile(c, add, depth + 1);
        if (child < 0) return -1;
        N.additional = child;
    } else if (!add && props) {
        N.additional = -1; /* generate only the declared properties (still valid output) */
    }
    json_t *items = json_object_get(s, "items");
    if (items && json_is_array(items)) return fail(c, "tuple 'items' is not supported");
    if (items) {
        int child = compile(c, items, depth + 1);
        if (child < 0) return -1;
        N.items = child;
    }
    if (get_count(c, s, "minItems", &N.min_items) || get_count(c, s, "maxItems", &N.max_items) ||
        get_count(c, s, "minLength", &N.min_len) || get_count(c, s, "maxLength", &N.max_len))
        return -1;
    if (N.max_items >= 0 && N.min_items > N.max_items) return fail(c, "minItems > maxItems");
    if (N.max_len >= 0 && N.min_len > N.max_len) return fail(c, "minLength > maxLength");
    /* non-negative numbers: minimum 0 */
    if (mini) N.types |= 0x100;
#undef N
    return id;
}

static grammar *grammar_alloc(compiler *c) {
    grammar *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    c->g = g;
    if (new_node(c) != 0) { free(g); return NULL; } /* node 0: any value */
    return g;
}

grammar *grammar_from_schema(const char *schema_json, char *err, size_t errcap) {
    compiler c = {0};
    c.err = err;
    c.errcap = errcap;
    json_error_t je;
    json_t *s = json_loads(schema_json, JSON_DECODE_ANY, &je);
    if (!s) { fail(&c, "schema is not valid JSON: %s", je.text); return NULL; }
    grammar *g = grammar_alloc(&c);
    if (!g) { json_decref(s); fail(&c, "out of memory"); return NULL; }
    g->root = compile(&c, s, 0);
    json_decref(s);
    if (g->root < 0) { grammar_free(g); return NULL; }
    return g;
}

grammar *grammar_any_object(void) {
    compiler c = {0};
    grammar *g = grammar_alloc(&c);
    if (!g) return NULL;
    g->root = new_node(&c);
    if (g->root < 0) { grammar_free(g); return NULL; }
    g->nodes[g->root].types = T_OBJ;
    return g;
}

grammar *grammar_tool_calls(const char *tools_json, const char *only_name, bool parallel,
                            char *err, size_t errcap) {
    compiler c = {0};
    c.err = err;
    c.errcap = errcap;
    json_error_t je;
    json_t *tools = json_loads(tools_json, 0, &je);
    if (!tools || !json_is_array(tools) || json_array_size(tools) == 0 || json_array_size(tools) > MAX_PROPS) {
        json_decref(tools);
        fail(&c, "'tools' must be an array of 1..%d functions", MAX_PROPS);
        return NULL;
    }
    grammar *g = grammar_alloc(&c);
    if (!g) { json_decref(tools); fail(&c, "out of memory"); return NULL; }
    g->python = g->calls = true;
    g->parallel = parallel;
    g->func_names = calloc(json_array_size(tools), sizeof(gstr));
    g->func_node = calloc(json_array_size(tools), sizeof(int));
    if (!g->func_names || !g->func_node) { fail(&c, "out of memory"); goto bad; }
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *fn = json_object_get(t, "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (!name || !*name) { fail(&c, "tools[%zu].function.name is missing", i); goto bad; }
        if (only_name && strcmp(name, only_name)) continue;
        json_t *params = json_object_get(fn, "parameters");
        int node;
        if (params) {
            if ((node = compile(&c, params, 1)) < 0) goto bad;
        } else if ((node = new_node(&c)) >= 0) {
            g->nodes[node].types = T_OBJ;
            g->nodes[node].additional = -1;
        } else {
            goto bad;
        }
        g->func_names[g->n_funcs] = dup_str(name, (int)strlen(name));
        g->func_node[g->n_funcs++] = node;
    }
    if (!g->n_funcs) { fail(&c, "no function named '%s' in 'tools'", only_name ? only_name : ""); goto bad; }
    json_decref(tools);
    return g;
bad:
    json_decref(tools);
    grammar_free(g);
    return NULL;
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
    }
    for (int i = 0; i < g->n_funcs; i++) free(g->func_names[i].s);
    free(g->func_names);
    free(g->func_node);
    free(g->nodes);
    free(g);
}

/* ---- the automaton ------------------------------------------------------------------------- */

enum { R_REJECT, R_OK, R_REDISPATCH }; /* R_REDISPATCH: frame ended, feed the byte to its parent */

static uint64_t all_bits(int n) { return n >= 64 ? ~0ull : (1ull << n) - 1; }

static bool push(grammar_state *st, int kind, int node, int sp) {
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
    st->depth = 0;
    st->dead = false;
    push(st, g->calls ? F_CALLS : F_VALUE, g->root, 0);
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

/* The first byte of a value of node n starts frame f (an F_VALUE) as the right kind. */
static int start_value(const grammar *g, grammar_state *st, grammar_frame *f, unsigned char b) {
    const gnode *n = &g->nodes[f->node];
    if (f->sp && b == ' ') { f->sp = 0; return R_OK; }
    f->sp = 0;
    if (n->n_enum) {
        f->kind = F_ENUM;
        f->cand = all_bits(n->n_enum);
        f->pos = 0;
        return R_REDISPATCH; /* handled by the caller loop without popping */
    }
    const char *const *lit = g->python ? LIT_PY : LIT_JSON;
    if (b == '{' && (n->types & T_OBJ)) { f->kind = F_OBJ; f->phase = O_FIRST; f->seen = 0; return R_OK; }
    if (b == '[' && (n->types & T_ARR)) {
        f->kind = F_ARR; f->phase = A_FIRST; f->count = 0; return R_OK;
    }
    if (b == '"' && (n->types & T_STR)) { f->kind = F_STR; f->phase = S_CHAR; f->count = 0; return R_OK; }
    if ((b == '-' || is_digit(b)) && (n->types & (T_INT | T_NUM))) {
        if (b == '-' && (n->types & 0x100)) return R_REJECT;
        f->kind = F_NUM;
        f->phase = b == '-' ? N_MINUS : b == '0' ? N_ZERO : N_INT;
        f->count = 1;
        f->aux = b != '-';
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

/* One byte into the top frame. May push/pop frames. */
static int step(const grammar *g, grammar_state *st, unsigned char b) {
    grammar_frame *f = &st->f[st->depth - 1];
    const gnode *n = &g->nodes[f->node];
    switch (f->kind) {
    case F_VALUE: {
        int r = start_value(g, st, f, b);
        if (r == R_REDISPATCH) return step(g, st, b); /* became an enum frame */
        return r;
    }
    case F_LIT: {
        const char *lit = (g->python ? LIT_PY : LIT_JSON)[f->aux];
        if ((unsigned char)lit[f->pos] != b) return R_REJECT;
        if (!lit[++f->pos]) st->depth--;
        return R_OK;
    }
    case F_ENUM: {
        uint64_t c = narrow(n->enums, f->cand, f->pos, b);
        if (!c) return exact(n->enums, f->cand, f->pos) >= 0 ? R_REDISPATCH : R_REJECT;
        f->cand = c;
        f->pos++;
        if (exact(n->enums, c, f->pos) >= 0 && !longer(n->enums, c, f->pos)) st->depth--;
        return R_OK;
    }
    case F_STR:
        switch (f->phase) {
        case S_CHAR:
            if (b == '"') {
                if (n->min_len > 0 && (int)f->count < n->min_len) return R_REJECT;
                st->depth--;
                return R_OK;
            }
            if (b < 0x20 || b == 0x7f) return R_REJECT;
            if (n->max_len >= 0 && (int)f->count >= n->max_len) return R_REJECT;
            if (b == '\\') { f->phase = S_ESC; return R_OK; }
            if (b < 0x80) { f->count++; return R_OK; }
            if (b >= 0xc2 && b <= 0xdf) f->aux = 1;
            else if (b >= 0xe0 && b <= 0xef) f->aux = 2;
            else if (b >= 0xf0 && b <= 0xf4) f->aux = 3;
            else return R_REJECT;
            f->phase = S_UTF8;
            return R_OK;
        case S_UTF8:
            if ((b & 0xc0) != 0x80) return R_REJECT;
            if (--f->aux == 0) { f->phase = S_CHAR; f->count++; }
            return R_OK;
        case S_ESC:
            if (b == 'u') { f->phase = S_HEX; f->aux = 4; return R_OK; }
            if (!strchr(g->python ? "\"\\bfnrt" : "\"\\/bfnrt", b) || !b) return R_REJECT;
            f->phase = S_CHAR;
            f->count++;
            return R_OK;
        case S_HEX:
            if (!is_digit(b) && !((b | 0x20) >= 'a' && (b | 0x20) <= 'f')) return R_REJECT;
            if (--f->aux == 0) { f->phase = S_CHAR; f->count++; }
            return R_OK;
        }
        return R_REJECT;
    case F_NUM: {
        bool integer = !(n->types & T_NUM);
        if (f->count >= MAX_NUM_BYTES && (is_digit(b) || b == '.' || b == 'e' || b == 'E' || b == '+' || b == '-'))
            return R_REJECT;
        int ph = f->phase, np = -1;
        if (ph == N_MINUS) np = b == '0' ? N_ZERO : is_digit(b) ? N_INT : -1;
        else if (ph == N_ZERO || ph == N_INT) {
            if (ph == N_INT && is_digit(b)) np = N_INT;
            else if (b == '.' && !integer) np = N_DOT;
            else if ((b == 'e' || b == 'E') && !integer) np = N_E;
        } else if (ph == N_DOT) np = is_digit(b) ? N_FRAC : -1;
        else if (ph == N_FRAC) np = is_digit(b) ? N_FRAC : (b == 'e' || b == 'E') ? N_E : -1;
        else if (ph == N_E) np = is_digit(b) ? N_EXP : (b == '+' || b == '-') ? N_ESIGN : -1;
        else if (ph == N_ESIGN || ph == N_EXP) np = is_digit(b) ? N_EXP : -1;
        if (np >= 0) {
            /* digits per part are bounded so every number fits a double: 15 / 15 / 2 */
            bool digit = is_digit(b) && np != N_ESIGN;
            int part_max = np == N_EXP ? 2 : 15;
            if (digit && np != ph && !(ph == N_MINUS || ph == N_ESIGN)) f->aux = 0;
            if (digit && ++f->aux > part_max) return R_REJECT;
            if (!digit) f->aux = 0;
            f->phase = (uint8_t)np;
            f->count++;
            return R_OK;
        }
        bool done = ph == N_ZERO || ph == N_INT || ph == N_FRAC || ph == N_EXP;
        return done ? R_REDISPATCH : R_REJECT;
    }
    case F_OBJ:
        switch (f->phase) {
        case O_FIRST:
        case O_NEXT:
            if (f->sp && b == ' ') { f->sp = 0; return R_OK; }
            if (b == '}' && f->phase == O_FIRST) {
                if (n->required & ~f->seen) return R_REJECT;
                st->depth--;
                return R_OK;
            }
            if (b != '"') return R_REJECT;
            f->cand = all_bits(n->n_props) & ~f->seen;
            if (!f->cand && n->additional < 0) return R_REJECT;
            f->phase = O_KEY;
            f->pos = 0;
            f->sp = 0;
            return R_OK;
        case O_KEY:
            if (b == '"') {
                int k = exact(n->keys, f->cand, f->pos);
                if (k < 0 && n->additional < 0) return R_REJECT;
                f->cur = (int16_t)k;
                f->phase = O_COLON;
                return R_OK;
            }
            if (b < 0x20 || b == '\\' || b == 0x7f) {
                /* escapes only as part of a declared (escaped) name */
                uint64_t c = narrow(n->keys, f->cand, f->pos, b);
                if (!c) return R_REJECT;
                f->cand = c;
                f->pos++;
                return R_OK;
            }
            f->cand = narrow(n->keys, f->cand, f->pos, b);
            if (!f->cand && n->additional < 0) return R_REJECT;
            if (f->pos < 0xffff) f->pos++;
            return R_OK;
        case O_COLON: {
            if (b != ':') return R_REJECT;
            int child = f->cur >= 0 ? n->prop_node[f->cur] : n->additional;
            if (f->cur >= 0) f->seen |= 1ull << f->cur;
            f->phase = O_AFTER;
            return push(st, F_VALUE, child, 1) ? R_OK : R_REJECT;
        }
        case O_AFTER:
            if (b == '}') {
                if (n->required & ~f->seen) return R_REJECT;
                st->depth--;
                return R_OK;
            }
            if (b == ',') {
                if (!(all_bits(n->n_props) & ~f->seen) && n->additional < 0) return R_REJECT;
                f->phase = O_NEXT;
                f->sp = 1;
                return R_OK;
            }
            return R_REJECT;
        }
        return R_REJECT;
    case F_ARR:
        switch (f->phase) {
        case A_FIRST:
        case A_NEXT:
            if (f->sp && b == ' ') { f->sp = 0; return R_OK; }
            if (b == ']' && f->phase == A_FIRST) {
                if (n->min_items > 0 && (int)f->count < n->min_items) return R_REJECT;
                st->depth--;
                return R_OK;
            }
            if (n->max_items >= 0 && (int)f->count >= n->max_items) return R_REJECT;
            f->count++;
            f->phase = A_AFTER;
            f->sp = 0;
            if (!push(st, F_VALUE, n->items, 0)) return R_REJECT;
            return step(g, st, b);
        case A_AFTER:
            if (b == ']') {
                if (n->min_items > 0 && (int)f->count < n->min_items) return R_REJECT;
                st->depth--;
                return R_OK;
            }
            if (b == ',') {
                if (n->max_items >= 0 && (int)f->count >= n->max_items) return R_REJECT;
                f->phase = A_NEXT;
                f->sp = 1;
                return R_OK;
            }
            return R_REJECT;
        }
        return R_REJECT;
    case F_CALLS: {
        const gnode *pn = f->cur >= 0 ? &g->nodes[g->func_node[f->cur]] : NULL;
        switch (f->phase) {
        case C_OPEN:
            if (b != '[') return R_REJECT;
            f->phase = C_NEXTCALL;
            return R_OK;
        case C_NEXTCALL:
            if (f->sp && b == ' ') { f->sp = 0; return R_OK; }
            f->sp = 0;
            f->phase = C_NAME;
            f->cand = all_bits(g->n_funcs);
            f->pos = 0;
            /* fall through */
        case C_NAME: {
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
        case C_ARGFIRST:
        case C_ARGNEXT:
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
            /* fall through */
        case C_KEY: {
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
        case C_ARGAFTER:
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
        case C_CALLAFTER:
            if (b == ']') { st->depth--; return R_OK; }
            if (b == ',' && g->parallel) { f->phase = C_NEXTCALL; f->sp = 1; f->cur = -1; return R_OK; }
            return R_REJECT;
        }
        return R_REJECT;
    }
    }
    return R_REJECT;
}

static bool accept_byte(const grammar *g, grammar_state *st, unsigned char b) {
    for (;;) {
        if (st->depth == 0) return false; /* nothing may follow a complete value */
        int r = step(g, st, b);
        if (r == R_OK) return true;
        if (r == R_REJECT) return false;
        st->depth--; /* a number/enum ended before b: b belongs to the parent */
    }
}

static void state_copy(grammar_state *dst, const grammar_state *src) {
    dst->depth = src->depth;
    dst->dead = src->dead;
    memcpy(dst->f, src->f, (size_t)src->depth * sizeof src->f[0]);
}

bool grammar_accept(const grammar *g, grammar_state *st, const char *bytes, size_t n) {
    grammar_state tmp;
    state_copy(&tmp, st);
    for (size_t i = 0; i < n; i++)
        if (!accept_byte(g, &tmp, (unsigned char)bytes[i])) return false;
    state_copy(st, &tmp);
    return true;
}

/* Can the top frame end here without another byte (a number or enum awaiting its delimiter)? */
static bool frame_can_end(const grammar *g, const grammar_frame *f) {
    if (f->kind == F_NUM) return f->phase == N_ZERO || f->phase == N_INT || f->phase == N_FRAC || f->phase == N_EXP;
    if (f->kind == F_ENUM) return exact(g->nodes[f->node].enums, f->cand, f->pos) >= 0;
    return false;
}

bool grammar_complete(const grammar *g, const grammar_state *st) {
    if (st->dead) return false;
    for (int d = st->depth; d > 0; d--)
        if (!frame_can_end(g, &st->f[d - 1])) return false;
    return true;
}

/* ---- completion ------------------------------------------------------------------------ */

static int first_byte_of_min_value(const grammar *g, int node) {
    const gnode *n = &g->nodes[node];
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

/* The byte that moves the state towards completion fastest; -1: pop the top frame. */
static int closing_byte(const grammar *g, const grammar_state *st) {
    const grammar_frame *f = &st->f[st->depth - 1];
    const gnode *n = &g->nodes[f->node];
    switch (f->kind) {
    case F_VALUE: return first_byte_of_min_value(g, f->node);
    case F_LIT: return (unsigned char)(g->python ? LIT_PY : LIT_JSON)[f->aux][f->pos];
    case F_ENUM: {
        if (exact(n->enums, f->cand, f->pos) >= 0) return -1;
        int k = pick(f->cand, 0);
        return (unsigned char)n->enums[k].s[f->pos];
    }
    case F_NUM: return frame_can_end(g, f) ? -1 : '0';
    case F_STR:
        if (f->phase == S_ESC) return 'n';
        if (f->phase == S_HEX) return '0';
        if (f->phase == S_UTF8) return 0x80;
        return n->min_len > 0 && (int)f->count < n->min_len ? 'a' : '"';
    case F_OBJ: {
        uint64_t missing = n->required & ~f->seen;
        switch (f->phase) {
        case O_FIRST: return missing ? '"' : '}';
        case O_NEXT: return '"';
        case O_KEY: {
            if (exact(n->keys, f->cand, f->pos) >= 0 || !f->cand) return '"';
            int k = pick(f->cand, n->required);
            return (unsigned char)n->keys[k].s[f->pos];
        }
        case O_COLON: return ':';
        default: return missing ? ',' : '}';
        }
    }
    case F_ARR: {
        bool need = n->min_items > 0 && (int)f->count < n->min_items;
        if (f->phase == A_FIRST) return need ? first_byte_of_min_value(g, n->items) : ']';
        if (f->phase == A_NEXT) return first_byte_of_min_value(g, n->items);
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

int grammar_completion(const grammar *g, const grammar_state *st0, char *out, int cap) {
    grammar_state st;
    state_copy(&st, st0);
    int n = 0;
    for (int guard = 0; st.depth > 0 && guard < 1 << 20; guard++) {
        int b = closing_byte(g, &st);
        if (b < 0) { st.depth--; continue; }
        if (!accept_byte(g, &st, (unsigned char)b)) return -1; /* cannot happen: a bug */
        if (n + 1 >= cap) return -1;
        out[n++] = (char)b;
    }
    if (st.depth > 0) return -1;
    if (n < cap) out[n] = 0;
    return n;
}

/* ---- token trie and mask ------------------------------------------------------------------- */

typedef struct tnode {
    int first_child, next_sibling;
    int tok_first;           /* tokens ending here: a chain through tok_next */
    unsigned char byte;
} tnode;

struct grammar_vocab {
    tnode *nodes;
    int n_nodes, cap;
    int *tok_next;
    int n_tokens;
    int max_len;
};

static int trie_child(grammar_vocab *v, int parent, unsigned char b) {
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

grammar_vocab *grammar_vocab_new(const char *const *bytes, const int *lens, int n_tokens) {
    grammar_vocab *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->cap = 1024;
    v->nodes = malloc((size_t)v->cap * sizeof *v->nodes);
    v->tok_next = malloc((size_t)(n_tokens > 0 ? n_tokens : 1) * sizeof(int));
    if (!v->nodes || !v->tok_next) { grammar_vocab_free(v); return NULL; }
    v->nodes[0] = (tnode){-1, -1, -1, 0};
    v->n_nodes = 1;
    v->n_tokens = n_tokens;
    for (int t = 0; t < n_tokens; t++) {
        v->tok_next[t] = -1;
        if (lens[t] <= 0) continue; /* special tokens: never allowed by bytes */
        int node = 0;
        for (int i = 0; i < lens[t] && node >= 0; i++) node = trie_child(v, node, (unsigned char)bytes[t][i]);
        if (node < 0) { grammar_vocab_free(v); return NULL; }
        v->tok_next[t] = v->nodes[node].tok_first;
        v->nodes[node].tok_first = t;
        if (lens[t] > v->max_len) v->max_len = lens[t];
    }
    return v;
}

void grammar_vocab_free(grammar_vocab *v) {
    if (!v) return;
    free(v->nodes);
    free(v->tok_next);
    free(v);
}

typedef struct walker {
    const grammar *g;
    const grammar_vocab *v;
    bool *allowed;
    int n_allowed;
    grammar_state *stack; /* one state per trie depth */
} walker;

static void walk(walker *w, int node, int depth) {
    const grammar_vocab *v = w->v;
    for (int c = v->nodes[node].first_child; c >= 0; c = v->nodes[c].next_sibling) {
        grammar_state *st = &w->stack[depth + 1];
        state_copy(st, &w->stack[depth]);
        if (!accept_byte(w->g, st, v->nodes[c].byte)) continue;
        for (int t = v->nodes[c].tok_first; t >= 0; t = v->tok_next[t]) {
            w->allowed[t] = true;
            w->n_allowed++;
        }
        walk(w, c, depth + 1);
    }
}

int grammar_allowed(const grammar *g, const grammar_state *st, const grammar_vocab *v,
                    const int32_t *end_tokens, int n_end, bool *allowed) {
    memset(allowed, 0, (size_t)v->n_tokens * sizeof *allowed);
    walker w = {g, v, allowed, 0, malloc((size_t)(v->max_len + 2) * sizeof(grammar_state))};
    if (!w.stack) return 0;
    if (!st->dead) {
        state_copy(&w.stack[0], st);
        walk(&w, 0, 0);
    }
    free(w.stack);
    if (grammar_complete(g, st))
        for (int i = 0; i < n_end; i++)
            if (end_tokens[i] >= 0 && end_tokens[i] < v->n_tokens && !allowed[end_tokens[i]]) {
                allowed[end_tokens[i]] = true;
                w.n_allowed++;
            }
    return w.n_allowed;
}
