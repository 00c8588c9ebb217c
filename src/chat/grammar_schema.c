/* grammar_schema.c — JSON-schema constrained decoding as a byte-level pushdown automaton: the
 * compiler from a schema (or a tool list, or a raw-text regex / choice: one node and its DFA) to
 * the grammar's nodes, and the grammar's life.
 * (The regex: text/regex.c; the automaton that runs the nodes: grammar_automaton.c; the
 * token mask: grammar_mask.c.)
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
 * compiled to a DFA over code points (text/regex.c); strings carry the DFA state. */
#include "chat/grammar_internal.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- schema compilation ------------------------------------------------------------------ */

typedef struct refent {
    char *ptr;
    int node;
} refent;
typedef struct compiler {
    grammar *g;
    lfm2c_error *err;
    int cap;
    json_t *root; /* document $ref pointers resolve in */
    refent refs[MAX_REFS];
    int n_refs;
    bool unsat;       /* the failure being returned is "no value satisfies this part" */
    bool not_dropped; /* a part whose 'not' could not be enforced is never generated */
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
    regex_einval(c->err, fmt, ap);
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
    if (r.s) {
        memcpy(r.s, s, (size_t)n);
        r.s[n] = 0;
    }
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

static const char *ANNOTATIONS[] = {"title",
                                    "description",
                                    "default",
                                    "examples",
                                    "$schema",
                                    "$id",
                                    "id",
                                    "$comment",
                                    "deprecated",
                                    "readOnly",
                                    "writeOnly",
                                    "$anchor",
                                    "$defs",
                                    "definitions",
                                    "discriminator",
                                    "example",
                                    "externalDocs",
                                    "xml",
                                    "$dynamicAnchor",
                                    "contentEncoding",
                                    "contentMediaType",
                                    "strict",
                                    NULL};

static bool is_annotation(const char *k) {
    if (!strncmp(k, "x-", 2)) return true;
    for (int i = 0; ANNOTATIONS[i]; i++)
        if (!strcmp(k, ANNOTATIONS[i])) return true;
    return false;
}

/* A local JSON pointer ("#", "#/$defs/Name", "#/definitions/a~1b"). NULL + error. */
static json_t *resolve_ref(compiler *c, const char *ref) {
    if (ref[0] != '#') {
        fail(c, "$ref '%s' is not a local reference ('#/...')", ref);
        return NULL;
    }
    json_t *cur = c->root;
    const char *p = ref + 1;
    while (*p) {
        if (*p != '/') {
            fail(c, "$ref '%s' is not a JSON pointer", ref);
            return NULL;
        }
        p++;
        char tok[256];
        int n = 0;
        while (*p && *p != '/' && n < 255) {
            char ch = *p++;
            if (ch == '~' && (*p == '0' || *p == '1')) ch = *p++ == '0' ? '~' : '/';
            else if (ch == '%' && regex_hexval(p[0]) >= 0 && regex_hexval(p[1]) >= 0) {
                ch = (char)(regex_hexval(p[0]) * 16 + regex_hexval(p[1]));
                p += 2;
            }
            tok[n++] = ch;
        }
        tok[n] = 0;
        if (json_is_object(cur)) cur = json_object_get(cur, tok);
        else if (json_is_array(cur)) cur = json_array_get(cur, (size_t)atoi(tok));
        else cur = NULL;
        if (!cur) {
            fail(c, "$ref '%s' points nowhere", ref);
            return NULL;
        }
    }
    return cur;
}

static bool only_annotations(json_t *s, const char *except) {
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v) if (strcmp(k, except) && !is_annotation(k)) return false;
    return true;
}

/* A copy of s without `key` and the annotations. */
static json_t *without(json_t *s, const char *key) {
    json_t *r = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v) if (strcmp(k, key) && !is_annotation(k)) json_object_set(r, k, v);
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
        json_t *t = resolve_ref(
            c, json_string_value(json_object_get(src, "$ref")) ? json_string_value(json_object_get(src, "$ref")) : "");
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
    for (int i = 0; i < 2; i++) {
        json_decref(side_props[i]);
        json_decref(side_add[i]);
    }
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
        if (!d) {
            json_object_set(dst, k, v);
            continue;
        }
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
                for (size_t j = 0; j < json_array_size(nr); j++)
                    if (json_equal(json_array_get(nr, j), r)) have = true;
                if (!have) json_array_append(nr, r);
            }
            json_object_set_new(dst, k, nr);
        } else if (!strcmp(k, "type")) {
            int a = 0, b = 0;
            json_t *arr[2] = {d, v};
            int *bits[2] = {&a, &b};
            for (int i = 0; i < 2; i++) {
                if (json_is_string(arr[i])) *bits[i] = type_bit(json_string_value(arr[i]));
                else {
                    size_t j;
                    json_t *t;
                    json_array_foreach(arr[i], j, t) * bits[i] |=
                        json_is_string(t) ? type_bit(json_string_value(t)) : 0;
                }
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
            if (json_is_number(d) && json_is_number(v)) {
                if (json_number_value(v) > json_number_value(d)) json_object_set(dst, k, v);
            } else return fail(c, "allOf: cannot merge '%s'", k);
        } else if (!strcmp(k, "maximum") || !strcmp(k, "exclusiveMaximum") || !strcmp(k, "maxLength") ||
                   !strcmp(k, "maxItems")) {
            if (json_is_number(d) && json_is_number(v)) {
                if (json_number_value(v) < json_number_value(d)) json_object_set(dst, k, v);
            } else return fail(c, "allOf: cannot merge '%s'", k);
        } else if (!strcmp(k, "items") || !strcmp(k, "additionalProperties")) {
            if (json_is_false(d) || json_is_false(v)) json_object_set_new(dst, k, json_false());
            else json_object_set_new(dst, k, json_pack("{s:[O,O]}", "allOf", d, v));
        } else if (!strcmp(k, "enum") && json_is_array(d) && json_is_array(v)) {
            json_t *ne = json_array();
            size_t i;
            json_t *e;
            json_array_foreach(d, i, e) for (size_t j = 0; j < json_array_size(v);
                                             j++) if (json_equal(e, json_array_get(v, j))) {
                json_array_append(ne, e);
                break;
            }
            if (!json_array_size(ne)) {
                json_decref(ne);
                return unsat(c, "allOf: the enums do not intersect");
            }
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

/* compile_numeric's bounds as the schema's keywords and formats narrow them. */
typedef struct nbounds {
    double lo, hi;
    bool lo_ex, hi_ex;
} nbounds;

/* minimum, maximum, exclusiveMinimum and exclusiveMaximum (a boolean: draft 4's form). */
static int numeric_bounds(compiler *c, json_t *s, nbounds *b) {
    json_t *v;
    if ((v = json_object_get(s, "minimum"))) {
        if (!json_is_number(v)) return fail(c, "'minimum' must be a number");
        b->lo = json_number_value(v);
    }
    if ((v = json_object_get(s, "maximum"))) {
        if (!json_is_number(v)) return fail(c, "'maximum' must be a number");
        b->hi = json_number_value(v);
    }
    if ((v = json_object_get(s, "exclusiveMinimum"))) {
        if (json_is_boolean(v)) b->lo_ex = json_is_true(v);
        else if (!json_is_number(v)) return fail(c, "'exclusiveMinimum' must be a number");
        else if (json_number_value(v) >= b->lo) {
            b->lo = json_number_value(v);
            b->lo_ex = true;
        }
    }
    if ((v = json_object_get(s, "exclusiveMaximum"))) {
        if (json_is_boolean(v)) b->hi_ex = json_is_true(v);
        else if (!json_is_number(v)) return fail(c, "'exclusiveMaximum' must be a number");
        else if (json_number_value(v) <= b->hi) {
            b->hi = json_number_value(v);
            b->hi_ex = true;
        }
    }
    return 0;
}

/* multipleOf as K / 10^d (*K stays 0 without one). */
static int numeric_multiple(compiler *c, json_t *s, int id, int64_t *K, int *d) {
#define N (c->g->nodes[id])
    json_t *v = json_object_get(s, "multipleOf");
    if (!v) return 0;
    double m = json_number_value(v);
    if (!json_is_number(v) || !(m > 0)) return fail(c, "'multipleOf' must be a positive number");
    double p = 1;
    for (*d = 0; *d <= 9; (*d)++, p *= 10) {
        double k = m * p;
        if (fabs(k - nearbyint(k)) <= 1e-9 * k) break;
    }
    if (*d > 9 || m * p > 1e15) return fail(c, "'multipleOf' %g is not supported (at most 9 decimals)", m);
    *K = (int64_t)nearbyint(m * p);
    if (N.types & T_NUM) {
        if (*d == 0) N.types &= ~T_NUM;
        else if (*K == 1) N.frac_max = *d;
        else return fail(c, "'multipleOf' %g on a number is supported only as an integer or 10^-n", m);
    }
    return 0;
#undef N
}

/* numeric formats (OpenAPI's, as ajv-formats checks them): the integer ones make the value
 * an integer within their range; float/double are any number; others are annotations */
static void numeric_format(compiler *c, json_t *s, int id, nbounds *b) {
#define N (c->g->nodes[id])
    json_t *fmt = json_object_get(s, "format");
    if (!json_is_string(fmt)) return;
    static const struct {
        const char *name;
        double lo, hi;
    } F[] = {{"int8", -128, 127},
             {"int16", -32768, 32767},
             {"int32", -2147483648.0, 2147483647.0},
             {"int64", -9223372036854775808.0, 9223372036854775807.0},
             {"uint8", 0, 255},
             {"uint16", 0, 65535},
             {"uint32", 0, 4294967295.0},
             {"uint64", 0, 18446744073709551615.0}};
    for (size_t i = 0; i < sizeof F / sizeof *F; i++) {
        if (strcmp(json_string_value(fmt), F[i].name)) continue;
        N.types &= ~T_NUM;
        if (F[i].lo > b->lo || (F[i].lo == b->lo && b->lo_ex)) {
            b->lo = F[i].lo;
            b->lo_ex = false;
        }
        if (F[i].hi < b->hi || (F[i].hi == b->hi && b->hi_ex)) {
            b->hi = F[i].hi;
            b->hi_ex = false;
        }
    }
#undef N
}

/* The node's integer bounds and multiple, its number bounds, and whether any value is left. */
static int numeric_store(compiler *c, int id, nbounds b, int64_t K, int d) {
#define N (c->g->nodes[id])
    double lo = b.lo, hi = b.hi;
    bool lo_ex = b.lo_ex, hi_ex = b.hi_ex;
    /* integers (bounds beyond what 16 digits can write clamp to the limit; none left: an error
     * below) */
    double ilo = lo_ex ? floor(lo) + 1 : ceil(lo), ihi = hi_ex ? ceil(hi) - 1 : floor(hi);
    double lim = (fabs(lo) >= 1e15 && isfinite(lo)) || (fabs(hi) >= 1e15 && isfinite(hi)) ? (double)I_LIMIT16
                                                                                          : (double)I_LIMIT15;
    N.ilo = ilo < -lim ? -(int64_t)lim : ilo > lim ? (int64_t)lim + 1 : (int64_t)ilo;
    N.ihi = ihi > lim ? (int64_t)lim : ihi < -lim ? -(int64_t)lim - 1 : (int64_t)ihi;
    if (K) {
        int64_t p10 = 1;
        for (int i = 0; i < d; i++) p10 *= 10;
        int64_t a = K, r = p10;
        while (r) {
            int64_t t = a % r;
            a = r;
            r = t;
        }
        N.imult = K / a;
    }
    N.lo = lo;
    N.hi = hi;
    N.lo_ex = lo_ex;
    N.hi_ex = hi_ex;
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

/* Bounds and multipleOf of integers and numbers: numeric_bounds, numeric_multiple, numeric_format,
 * numeric_store. */
static int compile_numeric(compiler *c, json_t *s, int id) {
    nbounds b = {-INFINITY, INFINITY, false, false};
    int64_t K = 0;
    int d = 0;
    if (numeric_bounds(c, s, &b) || numeric_multiple(c, s, id, &K, &d)) return -1;
    numeric_format(c, s, id, &b);
    return numeric_store(c, id, b, K, d);
}

static int compile_string(compiler *c, json_t *s, int id) {
#define N (c->g->nodes[id])
    if (get_count(c, s, "minLength", &N.min_len) || get_count(c, s, "maxLength", &N.max_len)) return -1;
    if (N.max_len >= 0 && N.min_len > N.max_len) return unsat(c, "minLength > maxLength");
    json_t *pat = json_object_get(s, "pattern"), *fmt = json_object_get(s, "format");
    if (pat && !json_is_string(pat)) return fail(c, "'pattern' must be a string");
    if (fmt && !json_is_string(fmt)) return fail(c, "'format' must be a string");
    const char *frx = fmt ? regex_format_pattern(json_string_value(fmt)) : NULL;
    if (frx && !*frx) frx = NULL, fmt = NULL; /* an annotation */
    if (fmt && !frx) return fail(c, "schema 'format' \"%s\" is not supported", json_string_value(fmt));
    if (fmt && !strcmp(json_string_value(fmt), "hostname") && (N.max_len < 0 || N.max_len > 253)) N.max_len = 253;
    lfm2c_error rerr = {0}; /* the pattern's message, cut to 199 bytes inside the schema's */
    regex_dfa *a = NULL, *b = NULL;
    if (pat) {
        a = regex_compile(json_string_value(pat), json_string_length(pat), &rerr, &c->g->budget);
        if (!a) return fail(c, "schema 'pattern' %s: %.199s", json_string_value(pat), rerr.msg);
    }
    if (frx) {
        b = regex_compile(frx, strlen(frx), &rerr, &c->g->budget);
        if (!b) {
            regex_dfa_free(a);
            return fail(c, "format %s: %.199s", json_string_value(fmt), rerr.msg);
        }
    }
    if (a && b) {
        N.rx = regex_dfa_product(a, b, &c->g->budget);
        regex_dfa_free(a);
        regex_dfa_free(b);
        if (!N.rx && c->g->budget.left < 0)
            return fail(c, "schema 'pattern' %s: too costly to compile (DFA construction over its budget)",
                        json_string_value(pat));
        if (!N.rx)
            return unsat(c, "schema 'pattern' and 'format' \"%s\" admit no common string", json_string_value(fmt));
    } else N.rx = a ? a : b;
    N.rx_exact = N.rx && !b;
    N.srx = N.rx_exact ? N.rx : NULL;
    return 0;
#undef N
}

static int prop_index(const gnode *n, const gstr *key);

/* Does the pattern DFA match the whole UTF-8 text (JSON Schema's "contains" rule is built in)? */
static bool rx_matches(const regex_dfa *d, const char *t) {
    const unsigned char *p = (const unsigned char *)t;
    int st = 0;
    while (*p) {
        uint32_t cp;
        int n = p[0] < 0x80 ? 1 : p[0] < 0xE0 ? 2 : p[0] < 0xF0 ? 3 : 4;
        cp = n == 1 ? p[0] : n == 2 ? p[0] & 0x1F : n == 3 ? p[0] & 0x0F : p[0] & 0x07;
        for (int i = 1; i < n; i++) {
            if (!p[i]) return false;
            cp = cp << 6 | (p[i] & 0x3F);
        }
        p += n;
        if ((st = regex_dfa_next(d, st, cp)) < 0) return false;
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
static json_t *prop_schema(compiler *c, json_t *own, const char *key, json_t *pp, regex_dfa **pdfa, json_t *add,
                           bool *err) {
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
    if (json_array_size(all) == 1) {
        json_t *one = json_incref(json_array_get(all, 0));
        json_decref(all);
        return one;
    }
    json_t *r = json_pack("{s:o}", "allOf", all);
    return r;
}

/* The names an object must have: 'required', plus what a required property's dependencies
 * (deps: dependentRequired, dependencies, dependentSchemas) require. NULL after fail. */
static json_t *object_required(compiler *c, json_t *req, json_t *const deps[3], const char *const dep_names[3]) {
    json_t *reqs = json_array();
    size_t i;
    json_t *r;
    if (req) json_array_foreach(req, i, r) {
            if (!json_is_string(r)) {
                json_decref(reqs);
                fail(c, "schema 'required' must list strings");
                return NULL;
            }
            if (!in_array(reqs, json_string_value(r))) json_array_append(reqs, r);
        }
    for (size_t at = 0; at < json_array_size(reqs); at++) {
        const char *key = json_string_value(json_array_get(reqs, at));
        for (int k = 0; k < 3; k++) {
            json_t *d = deps[k] ? json_object_get(deps[k], key) : NULL;
            if (!d) continue;
            if (json_is_array(d)) {
                json_array_foreach(d, i, r) if (json_is_string(r) && !in_array(reqs, json_string_value(r)))
                    json_array_append(reqs, r);
            } else if (!json_is_true(d) && !(json_is_object(d) && only_annotations(d, ""))) {
                json_decref(reqs);
                fail(c, "schema keyword '%s' is supported only for optional properties or as a list of names",
                     dep_names[k]);
                return NULL;
            }
        }
    }
    return reqs;
}

/* The patternProperties' patterns compiled into pdfa[] (in the object's order). */
static int object_patterns(compiler *c, json_t *pp, regex_dfa **pdfa) {
    const char *pk;
    json_t *ps;
    int k = 0;
    if (pp) json_object_foreach(pp, pk, ps) {
            lfm2c_error rerr = {0};
            if (!(pdfa[k++] = regex_compile(pk, strlen(pk), &rerr, &c->g->budget)))
                return fail(c, "schema 'patternProperties' pattern %s: %.199s", pk, rerr.msg);
        }
    return 0;
}

/* The properties written, into names: every required one, then optional ones up to MAX_PROPS
 * (*cut when some were left out), then named ones for a minProperties past the declared names
 * where other keys are allowed. */
static int object_names(compiler *c, json_t *s, json_t *props, json_t *add, json_t *reqs, json_t *names, bool *cut) {
    if (json_array_size(reqs) > MAX_PROPS) return fail(c, "more than %d required properties in one object", MAX_PROPS);
    json_array_extend(names, reqs);
    const char *key;
    json_t *sub;
    if (props) json_object_foreach(props, key, sub) {
            if (in_array(names, key)) continue;
            if (json_array_size(names) >= MAX_PROPS) {
                *cut = true;
                break;
            }
            json_array_append_new(names, json_string(key));
        }
    json_t *minp = json_object_get(s, "minProperties");
    if (json_is_number(minp) && !(add && json_is_false(add)) && !json_object_get(s, "propertyNames"))
        for (int k = 1; k <= MAX_PROPS && (double)json_array_size(names) < json_number_value(minp) &&
                        json_array_size(names) < MAX_PROPS;
             k++) {
            char name[32];
            snprintf(name, sizeof name, "property%d", k);
            if (!in_array(names, name) && !(props && json_object_get(props, name)))
                json_array_append_new(names, json_string(name));
        }
    return 0;
}

#define N (c->g->nodes[id]) /* the node being compiled (compile may move the node array) */

/* Node id's properties: each name's escaped key and compiled schema, the required bits. */
static int object_props(compiler *c, int id, int depth, json_t *names, json_t *props, json_t *pp, regex_dfa **pdfa,
                        json_t *add, json_t *reqs) {
    int n = (int)json_array_size(names);
    N.keys = calloc((size_t)n + 1, sizeof(gstr));
    N.prop_node = calloc((size_t)n + 1, sizeof(int));
    if (!N.keys || !N.prop_node) return oom(c);
    for (int k = 0; k < n; k++) {
        const char *key = json_string_value(json_array_get(names, (size_t)k));
        bool perr;
        json_t *sub = prop_schema(c, props ? json_object_get(props, key) : NULL, key, pp, pdfa, add, &perr);
        if (!sub) return unsat(c, "required property '%s' is forbidden by 'additionalProperties': false", key);
        if (escaped_key(c, key, &N.keys[k])) {
            json_decref(sub);
            return -1;
        }
        N.n_props++;
        int child = compile(c, sub, depth + 1);
        json_decref(sub);
        if (child < 0) return -1;
        N.prop_node[k] = child;
        if (in_array(reqs, key)) N.required |= 1ull << k;
    }
    return 0;
}

/* The declared properties of node id: the patterns, the names written, their schemas. */
static int object_declared(compiler *c, json_t *s, int id, int depth, json_t *props, json_t *pp, json_t *add,
                           json_t *reqs, bool *cut) {
    int n_pp = pp ? (int)json_object_size(pp) : 0, rc = 0;
    regex_dfa **pdfa = n_pp ? calloc((size_t)n_pp, sizeof *pdfa) : NULL;
    if (n_pp && !pdfa) return oom(c);
    json_t *names = json_array();
    rc = object_patterns(c, pp, pdfa);
    if (!rc) rc = object_names(c, s, props, add, reqs, names, cut);
    if (!rc) rc = object_props(c, id, depth, names, props, pp, pdfa, add, reqs);
    N.sreq = N.required;
    for (int k = 0; k < n_pp; k++) regex_dfa_free(pdfa[k]);
    free(pdfa);
    json_decref(names);
    return rc ? -1 : 0;
}

/* Keys outside the declared ones (additionalProperties, the counts), and the optional
 * properties with dependencies, which are never written. */
static int object_others(compiler *c, json_t *s, int id, int depth, json_t *props, json_t *pp, json_t *add,
                         json_t *reqs, json_t *const deps[3], bool cut) {
    N.add_false = add && json_is_false(add) && !pp;
    if (get_count(c, s, "minProperties", &N.min_props) || get_count(c, s, "maxProperties", &N.max_props)) return -1;
    if (add && json_is_false(add)) {
        N.additional = -1;
    } else if (pp || cut || N.max_props >= 0 || (!add && props) || (!add && json_array_size(reqs))) {
        N.additional = -1; /* declared properties only (the output stays valid) */
    } else if (add && !json_is_true(add)) {
        int child = compile(c, add, depth + 1);
        if (child < 0) return -1;
        N.additional = child;
    }
    for (int k = 0; k < 3; k++) {
        const char *key;
        json_t *d;
        if (deps[k]) json_object_foreach(deps[k], key, d) {
                if (in_array(reqs, key)) continue;
                gstr ek;
                if (escaped_key(c, key, &ek)) return -1;
                int p = prop_index(&N, &ek);
                free(ek.s);
                if (p >= 0) N.banned |= 1ull << p;
                else N.additional = -1;
            }
    }
    return 0;
}

/* The counts against what can be written, and propertyNames: declared names that fail it are
 * never written, and no others. */
static int object_limits(compiler *c, json_t *s, int id, int depth) {
    int n_req = __builtin_popcountll(N.required), n_free = N.n_props - __builtin_popcountll(N.banned & ~N.required);
    if (N.max_props >= 0 && n_req > N.max_props) return fail(c, "'maxProperties' is less than the required properties");
    if (N.min_props > n_free)
        return fail(c, "'minProperties' %d is more than the declared properties that can be written", N.min_props);
    if (N.max_props >= 0 && N.min_props > N.max_props) return fail(c, "'minProperties' > 'maxProperties'");
    json_t *pn = json_object_get(s, "propertyNames"), *pnt = json_is_object(pn) ? json_object_get(pn, "type") : NULL;
    if (pn && json_is_object(pn) && (!pnt || (json_is_string(pnt) && !strcmp(json_string_value(pnt), "string"))) &&
        only_annotations(pn, "type"))
        pn = NULL; /* every key is a string */
    if (!pn || json_is_true(pn)) return 0;
    int check = compile(c, pn, depth + 1);
    if (check < 0) return -1;
    for (int k = 0; k < N.n_props; k++) {
        char *q = malloc((size_t)N.keys[k].n + 3);
        if (!q) return oom(c);
        q[0] = '"';
        memcpy(q + 1, N.keys[k].s, (size_t)N.keys[k].n);
        q[N.keys[k].n + 1] = '"';
        q[N.keys[k].n + 2] = 0;
        bool ok = grammar_node_accepts(c->g, check, q, (size_t)N.keys[k].n + 2);
        free(q);
        if (ok) continue;
        if (N.required >> k & 1)
            return fail(c, "required property '%.*s' fails 'propertyNames'", N.keys[k].n, N.keys[k].s);
        N.banned |= 1ull << k;
    }
    N.additional = -1;
    return 0;
}
#undef N

/* An object: its keywords checked, the required names, the declared properties, the others,
 * the limits. */
static int compile_object(compiler *c, json_t *s, int id, int depth) {
    json_t *props = json_object_get(s, "properties"), *pp = json_object_get(s, "patternProperties");
    json_t *add = json_object_get(s, "additionalProperties"), *req = json_object_get(s, "required");
    if (props && !json_is_object(props)) return fail(c, "schema 'properties' must be an object");
    if (pp && !json_is_object(pp)) return fail(c, "schema 'patternProperties' must be an object");
    if (req && !json_is_array(req)) return fail(c, "schema 'required' must be an array");
    if (pp && !json_object_size(pp)) pp = NULL;
    json_t *deps[3] = {json_object_get(s, "dependentRequired"), json_object_get(s, "dependencies"),
                       json_object_get(s, "dependentSchemas")};
    static const char *const DEP_NAMES[3] = {"dependentRequired", "dependencies", "dependentSchemas"};
    for (int k = 0; k < 3; k++)
        if (deps[k] && !json_is_object(deps[k])) return fail(c, "schema '%s' must be an object", DEP_NAMES[k]);
    json_t *reqs = object_required(c, req, deps, DEP_NAMES);
    if (!reqs) return -1;
    bool cut = false;
    int rc = object_declared(c, s, id, depth, props, pp, add, reqs, &cut);
    if (!rc) rc = object_others(c, s, id, depth, props, pp, add, reqs, deps, cut);
    json_decref(reqs);
    return rc ? -1 : object_limits(c, s, id, depth);
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
        if (N.n_prefix && N.min_items > 1)
            return fail(c, "schema keyword 'uniqueItems' is not supported with 'prefixItems'");
        if (N.n_prefix) {
            N.cut_items = 1;
            return 0;
        }
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
                return fail(c, "schema keyword 'uniqueItems' is enforced only for arrays of enum, const or boolean "
                               "items (or of at most one item)");
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
        if (a < 0) {
            free(alts);
            return -1;
        }
        gnode *A = &c->g->nodes[a];
        int m = n - k * MAX_ENUM < MAX_ENUM ? n - k * MAX_ENUM : MAX_ENUM;
        A->types = types;
        A->stypes = types;
        if (!(A->enums = calloc((size_t)m, sizeof(gstr)))) {
            free(alts);
            return oom(c);
        }
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
        int vt = json_is_null(v)      ? T_NULL
                 : json_is_boolean(v) ? T_BOOL
                 : json_is_integer(v) ? T_INT
                 : json_is_real(v)    ? (json_real_value(v) == floor(json_real_value(v)) ? T_INT : T_NUM)
                 : json_is_string(v)  ? T_STR
                 : json_is_array(v)   ? T_ARR
                                      : T_OBJ;
        if (!(vt & types)) continue;
        gstr t;
        if (canonical(c, v, &t)) return -1;
        bool dup = false;
        for (int k = 0; k < c->g->nodes[id].n_enum && !dup; k++)
            dup = c->g->nodes[id].enums[k].n == t.n && !memcmp(c->g->nodes[id].enums[k].s, t.s, (size_t)t.n);
        if (dup || (check >= 0 && !grammar_node_accepts(c->g, check, t.s, (size_t)t.n))) {
            free(t.s);
            continue;
        }
        c->g->nodes[id].enums[c->g->nodes[id].n_enum++] = t;
    }
    if (!c->g->nodes[id].n_enum)
        return unsat(c, "no '%s' value satisfies the schema's other keywords", cn ? "const" : "enum");
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

/* if / then / else: the values written take one branch, 'if' and 'then' merged in, else
 * 'not if' and 'else'; node id is the choice of those that admit a value. */
static int compile_if(compiler *c, json_t *s, json_t *cif, int id, int depth) {
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

/* $ref and allOf: everything merged into one schema, compiled into node id. */
static int compile_merged(compiler *c, json_t *s, json_t *ref, json_t *all, int id, int depth) {
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

/* anyOf / oneOf (any) and nullable: node id is the choice of the alternatives, each merged with
 * the schema's other keywords; nullable adds null. */
static int compile_alternatives(compiler *c, json_t *s, json_t *any, json_t *nullable, int id, int depth) {
    if (any && (!json_is_array(any) || json_array_size(any) == 0 || json_array_size(any) > 64))
        return fail(c, "'anyOf'/'oneOf' must be an array of 1..64 schemas");
    json_t *rest = without(s, any == json_object_get(s, "anyOf") ? "anyOf" : "oneOf");
    json_object_del(rest, "nullable");
    if (!any) {
        any = json_pack("[O]", rest);
        json_decref(rest);
        rest = json_object();
    } else json_incref(any);
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
    if (r) {
        free(alts);
        return -1;
    }
    c->g->nodes[id].any = alts;
    c->g->nodes[id].n_any = n;
    c->g->nodes[id].one_of = json_object_get(s, "oneOf") != NULL;
    return id;
}

/* The types a schema admits (T_* bits): its 'type', else what its keywords imply. */
static int schema_types(compiler *c, json_t *s, int *types) {
    json_t *type = json_object_get(s, "type");
    *types = 0;
    if (json_is_string(type)) {
        if (!(*types = type_bit(json_string_value(type))))
            return fail(c, "unknown schema type '%s'", json_string_value(type));
    } else if (json_is_array(type)) {
        size_t i;
        json_t *t;
        json_array_foreach(type, i, t) {
            int b = json_is_string(t) ? type_bit(json_string_value(t)) : 0;
            if (!b) return fail(c, "schema 'type' lists an unknown type");
            *types |= b;
        }
        if (!*types) return fail(c, "schema 'type' is empty");
    } else if (type) {
        return fail(c, "schema 'type' must be a string or an array");
    } else if (json_object_get(s, "properties") || json_object_get(s, "additionalProperties")) {
        *types = T_OBJ;
    } else if (json_object_get(s, "items") || json_object_get(s, "prefixItems")) {
        *types = T_ARR;
    } else if (json_object_get(s, "pattern") || json_object_get(s, "format") || json_object_get(s, "minLength") ||
               json_object_get(s, "maxLength")) {
        *types = T_STR;
    } else if (json_object_get(s, "minimum") || json_object_get(s, "maximum") || json_object_get(s, "multipleOf") ||
               json_object_get(s, "exclusiveMinimum") || json_object_get(s, "exclusiveMaximum")) {
        *types = T_NUM;
    } else {
        *types = T_ALL;
    }
    if (*types & T_NUM) *types |= T_INT;
    return 0;
}

/* A schema of its types' keywords (no combinator left): enum / const, or each type's part. */
static int compile_typed(compiler *c, json_t *s, int id, int depth) {
    int types;
    if (schema_types(c, s, &types)) return -1;
    c->g->nodes[id].types = types;
    c->g->nodes[id].stypes = json_object_get(s, "type") ? types : T_ALL;
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
    return id;
}

/* One schema into node id: the trivial ones, then if, the unsupported keywords, $ref / allOf,
 * not, anyOf with oneOf, anyOf / oneOf / nullable, and the typed rest, in that order. */
static int compile_into_inner(compiler *c, json_t *s, int id, int depth) {
    if (depth > MAX_SCHEMA_DEPTH) return fail(c, "schema nested deeper than %d", MAX_SCHEMA_DEPTH);
    if (json_is_true(s) || (json_is_object(s) && only_annotations(s, ""))) return id; /* any value */
    if (json_is_false(s)) return unsat(c, "schema 'false' admits no value");
    if (!json_is_object(s)) return fail(c, "schema must be an object");
    json_t *cif = json_object_get(s, "if");
    if (cif) return compile_if(c, s, cif, id, depth);
    static const char *unsupported[] = {
        "minContains",   "maxContains", "unevaluatedProperties", "unevaluatedItems", "$dynamicRef",
        "$recursiveRef", NULL};
    for (int i = 0; unsupported[i]; i++)
        if (json_object_get(s, unsupported[i])) return fail(c, "schema keyword '%s' is not supported", unsupported[i]);
    json_t *ref = json_object_get(s, "$ref"), *all = json_object_get(s, "allOf");
    if (ref || all) return compile_merged(c, s, ref, all, id, depth);
    json_t *nt = json_object_get(s, "not");
    if (nt) { /* enforced after compilation (check_not) */
        int x = compile(c, nt, depth + 1);
        if (x < 0) return -1;
        c->g->nodes[id].not_node = x;
    }
    json_t *any = json_object_get(s, "anyOf");
    if (!any) any = json_object_get(s, "oneOf");
    if (any && json_object_get(s, "anyOf") &&
        json_object_get(s, "oneOf")) { /* anyOf A, oneOf B: A distributed over B */
        json_t *m = without(s, "anyOf");
        json_object_del(m, "oneOf");
        json_object_set_new(m, "anyOf", distribute(json_object_get(s, "anyOf"), "oneOf", json_object_get(s, "oneOf")));
        int r = compile_into(c, m, id, depth + 1);
        json_decref(m);
        return r;
    }
    json_t *nullable = json_object_get(s, "nullable");
    if (any || json_is_true(nullable)) return compile_alternatives(c, s, any, nullable, id, depth);
    return compile_typed(c, s, id, depth);
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
    case 'n':
    case 'N': return T_NULL;
    case 't':
    case 'f':
    case 'T':
    case 'F': return T_BOOL;
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
        for (int i = 0; i < n->n_any; i++)
            if (!(n->dropped >> i & 1)) k |= gen_kinds(g, n->any[i], depth + 1);
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
            if (text_kind(&A->enums[i]) == k && grammar_node_accepts(g, b, A->enums[i].s, (size_t)A->enums[i].n))
                return false;
        return true;
    }
    if (B->n_enum) { /* a generates none of b's values of kind k */
        if (k == T_OBJ || k == T_ARR) return false;
        for (int i = 0; i < B->n_enum; i++)
            if (text_kind(&B->enums[i]) == k && grammar_node_accepts(g, a, B->enums[i].s, (size_t)B->enums[i].n))
                return false;
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
            regex_budget *bud = (regex_budget *)&g->budget; /* compile time only */
            regex_dfa *p = regex_dfa_product(A->rx, B->srx, bud);
            if (!p) return bud->left >= 0;
            regex_dfa_free(p);
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
            if (ka >= 0 && (A->required >> ka & 1) && excl(g, A->prop_node[ka], B->prop_node[r], depth + 1))
                return true;
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
        for (int i = 0; i < A->n_any; i++)
            if (!(A->dropped >> i & 1) && !excl(g, A->any[i], b, depth + 1)) return false;
        return true;
    }
    if (B->n_any) {
        for (int i = 0; i < B->n_any; i++)
            if (!excl(g, a, B->any[i], depth + 1)) return false;
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
            regex_dfa *nb = regex_dfa_complement(B->srx, &g->budget), *r = NULL;
            if (nb) r = A->rx ? regex_dfa_product(A->rx, nb, &g->budget) : nb;
            if (nb && r != nb) regex_dfa_free(nb); /* r failed (budget), or r is the product */
            if (r) {
                if (A->rx != A->srx) regex_dfa_free(A->rx);
                A->rx = r;
                A->rx_exact = false;
                A->narrowed = true;
                continue;
            }
        }
        if (A->types & ~bits) {
            A->types &= ~bits;
            A->narrowed = true;
        }
    }
    if (!(A->types & T_OBJ) || excl_kind(g, a, b, T_OBJ, 0)) return;
    for (int r = 0; r < B->n_props && A->additional < 0; r++) { /* never write a key b requires */
        int ka = (B->sreq >> r & 1) ? prop_index(A, &B->keys[r]) : -1;
        if (ka >= 0 && !(A->required >> ka & 1)) {
            A->banned |= 1ull << ka;
            A->narrowed = true;
            return;
        }
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
    case T_STR: return !(n->rx && n->max_len >= 0 && n->rx->dist[0] > n->max_len);
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
        for (int i = 0; i < n->n_any; i++)
            if (!(n->dropped >> i & 1) && g->finite[n->any[i]]) return true;
        return false;
    }
    for (int t = 1; t < T_ALL; t <<= 1)
        if ((n->types & t) && part_finite(g, n, t)) return true;
    return false;
}

/* The fewest frames a value of a node needs (1 while the table is not computed yet). */
int grammar_mind_of(const grammar *g, int node) { return g->mind ? g->mind[node] : 1; }

/* The fewest frames a value of type part t of node n needs (objects and arrays: their own frame
 * and their deepest required member), from the current g->mind. */
int grammar_part_depth(const grammar *g, const gnode *n, int t) {
    int d = 0;
    if (t == T_OBJ) {
        int opt = 255;
        for (int p = 0; p < n->n_props; p++) {
            int m = grammar_mind_of(g, n->prop_node[p]);
            if ((n->required >> p & 1) && m > d) d = m;
            if (!((n->required | n->banned) >> p & 1) && m < opt) opt = m;
        }
        if (n->min_props > __builtin_popcountll(n->required) && opt > d) d = opt; /* roughly: one more key */
    } else if (t == T_ARR) {
        for (int i = 0; i < n->min_items; i++) {
            int it = item_node_of(n, i);
            if (it >= 0 && grammar_mind_of(g, it) > d) d = grammar_mind_of(g, it);
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
            if (!(n->dropped >> i & 1) && grammar_mind_of(g, n->any[i]) < best) best = grammar_mind_of(g, n->any[i]);
        return best;
    }
    for (int t = 1; t < T_ALL; t <<= 1)
        if (n->types & t) {
            int d = grammar_part_depth(g, n, t);
            if (d < best) best = d;
        }
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
            if (d < g->mind[i]) {
                g->mind[i] = (unsigned char)d;
                changed = true;
            }
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
            if (!g->finite[i] && node_finite(g, &g->nodes[i])) {
                g->finite[i] = 1;
                changed = true;
            }
    }
    if (root >= 0 && !g->finite[root] && c->not_dropped)
        return fail(c, "schema keyword 'not' cannot be enforced (the values written might match it)");
    if (root >= 0 && !g->finite[root])
        return fail(c, "the schema admits no finite value (a recursion through required properties, 'minItems' or "
                       "'anyOf' never ends)");
    for (int i = 0; i < g->n_nodes; i++) {
        gnode *n = &g->nodes[i];
        if (!g->finite[i]) continue;
        for (int a = 0; a < n->n_any; a++)
            if (!g->finite[n->any[a]]) n->dropped |= 1ull << a;
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
            if (it >= 0 && !g->finite[it]) {
                if (n->cut_items < 0 || k < n->cut_items) n->cut_items = k;
                break;
            }
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
    g->budget.left = REGEX_BUDGET;
    if (new_node(c) != 0) {
        free(g);
        return NULL;
    } /* node 0: any value */
    return g;
}

static void refs_clear(compiler *c) {
    for (int i = 0; i < c->n_refs; i++) free(c->refs[i].ptr);
    c->n_refs = 0;
}

/* The compiler state is large: keep it off small stacks. */
static compiler *compiler_new(lfm2c_error *err) {
    compiler *c = calloc(1, sizeof *c);
    if (!c) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return NULL;
    }
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
        if (ch == '"') {
            str = true;
            out[o++] = ch;
            i++;
            continue;
        }
        if (ch == '-' || (ch >= '0' && ch <= '9')) {
            size_t j = i + (ch == '-'), digits = 0;
            while (j < n && t[j] >= '0' && t[j] <= '9') j++, digits++;
            memcpy(out + o, t + i, j - i);
            o += j - i;
            bool integer = j >= n || (t[j] != '.' && t[j] != 'e' && t[j] != 'E');
            if (integer && digits > 18) {
                out[o++] = '.';
                out[o++] = '0';
            } /* 2 more per 19+ bytes */
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
        if (g->root >= 0 &&
            (prune_infinite(c, g->root) || check_one_of(c) || check_not(c, g->root) || prune_infinite(c, g->root)))
            g->root = -1;
        if (g->root < 0) {
            grammar_free(g);
            g = NULL;
        }
    }
    json_decref(s);
    refs_clear(c);
    free(c);
    return g;
}

/* Raw text matching pat (len bytes) as a whole; the error says `what` (regex or choice). */
static grammar *raw_grammar(const char *pat, size_t len, const volatile bool *cancel, const char *what,
                            lfm2c_error *err) {
    compiler *c = compiler_new(err);
    if (!c) return NULL;
    grammar *g = grammar_alloc(c);
    char *full = malloc(len + 8);
    if (!g || !full) {
        oom(c);
        free(full);
        grammar_free(g);
        free(c);
        return NULL;
    }
    /* anchored at both ends: the whole text matches, not some part of it */
    memcpy(full, "^(?:", 4);
    memcpy(full + 4, pat, len);
    memcpy(full + 4 + len, ")$", 3);
    g->budget.cancel = cancel;
    g->raw = true;
    g->root = new_node(c);
    if (g->root >= 0) {
        gnode *n = &g->nodes[g->root];
        n->types = T_STR;
        n->min_len = n->max_len = -1;
        n->rx = regex_compile(full, len + 6, err, &g->budget);
        if (!n->rx) {
            if (!err->code) {
                if (g->budget.left < 0 || (cancel && *cancel)) fail(c, "%s: too costly to compile", what);
                else fail(c, "%s: matches no text", what);
            }
            g->root = -1;
        }
    }
    free(full);
    if (g->root < 0) {
        grammar_free(g);
        g = NULL;
    }
    free(c);
    return g;
}

grammar *grammar_from_regex(const char *pattern, size_t len, const volatile bool *cancel, char *err, size_t errcap) {
    lfm2c_error e = {0};
    grammar *g = raw_grammar(pattern, len, cancel, "regex", &e);
    message_to_buffer(&e, err, errcap);
    return g;
}

/* The choices as one alternation of literals: every ASCII punctuation character escaped,
 * control characters as \uHHHH, the rest as they are. */
grammar *grammar_from_choices(const char *const *choices, const size_t *lens, int n, const volatile bool *cancel,
                              char *err, size_t errcap) {
    lfm2c_error e = {0};
    size_t cap = 1;
    for (int i = 0; i < n; i++) cap += 6 * lens[i] + 1;
    char *pat = n > 0 ? malloc(cap) : NULL, *o = pat;
    grammar *g = NULL;
    if (n <= 0) lfm2c_set_error(&e, LFM2C_EINVAL, "choice: the list is empty");
    else if (!pat) lfm2c_set_error(&e, LFM2C_ENOMEM, "out of memory");
    else {
        for (int i = 0; i < n; i++) {
            if (i) *o++ = '|';
            for (size_t k = 0; k < lens[i]; k++) {
                const unsigned char ch = (unsigned char)choices[i][k];
                if (ch < 0x20 || ch == 0x7f) o += sprintf(o, "\\u%04x", ch);
                else {
                    if (ch < 0x80 && ispunct(ch)) *o++ = '\\';
                    *o++ = (char)ch;
                }
            }
        }
        g = raw_grammar(pat, (size_t)(o - pat), cancel, "choice", &e);
    }
    free(pat);
    message_to_buffer(&e, err, errcap);
    return g;
}

bool grammar_is_raw(const grammar *g) { return g && g->raw; }

grammar *grammar_any_object(void) {
    compiler c = {0};
    grammar *g = grammar_alloc(&c);
    if (!g) return NULL;
    g->root = new_node(&c);
    if (g->root < 0) {
        grammar_free(g);
        return NULL;
    }
    g->nodes[g->root].types = T_OBJ;
    if (prune_infinite(&c, g->root)) {
        grammar_free(g);
        return NULL;
    }
    return g;
}

static grammar *tool_calls_grammar(const char *tools_json, const char *only_name, bool parallel, lfm2c_error *err) {
    compiler *c = compiler_new(err);
    if (!c) return NULL;
    json_error_t je;
    json_t *tools = json_loads(tools_json, 0, &je);
    grammar *g = NULL;
    if (!tools || !json_is_array(tools) || json_array_size(tools) == 0 || json_array_size(tools) > MAX_PROPS) {
        fail(c, "'tools' must be an array of 1..%d functions", MAX_PROPS);
        goto bad;
    }
    if (!(g = grammar_alloc(c))) {
        oom(c);
        goto bad;
    }
    g->python = g->calls = true;
    g->parallel = parallel;
    g->func_names = calloc(json_array_size(tools), sizeof(gstr));
    g->func_node = calloc(json_array_size(tools), sizeof(int));
    if (!g->func_names || !g->func_node) {
        oom(c);
        goto bad;
    }
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *fn = json_object_get(t, "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (!name || !*name) {
            fail(c, "tools[%zu].function.name is missing", i);
            goto bad;
        }
        if (only_name && strcmp(name, only_name)) continue;
        json_t *params = json_object_get(fn, "parameters");
        int node;
        refs_clear(c);
        c->root = params;
        if (params) {
            if ((node = compile(c, params, 1)) < 0) {
                char tmp[256]; /* the schema's message, with the tool named in front */
                snprintf(tmp, sizeof tmp, "%.255s", err ? err->msg : "");
                fail(c, "tool '%s': %s", name, tmp);
                goto bad;
            }
            const gnode *pn = &g->nodes[node];
            if (pn->n_any || pn->n_enum || !(pn->types & T_OBJ)) {
                fail(c, "tool '%s': parameters must be an object schema", name);
                goto bad;
            }
        } else if ((node = new_node(c)) >= 0) {
            g->nodes[node].types = T_OBJ;
            g->nodes[node].additional = -1;
        } else {
            goto bad;
        }
        g->func_names[g->n_funcs] = dup_str(name, (int)strlen(name));
        g->func_node[g->n_funcs++] = node;
    }
    if (!g->n_funcs) {
        fail(c, "no function named '%s' in 'tools'", only_name ? only_name : "");
        goto bad;
    }
    if (prune_infinite(c, -1) || check_one_of(c) || check_not(c, -1) || prune_infinite(c, -1)) goto bad;
    for (int f = 0; f < g->n_funcs; f++)
        if (!g->finite[g->func_node[f]]) {
            fail(c, "tool '%s': the parameters admit no finite value", g->func_names[f].s);
            goto bad;
        }
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
        if (n->srx != n->rx) regex_dfa_free(n->srx);
        regex_dfa_free(n->rx);
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
