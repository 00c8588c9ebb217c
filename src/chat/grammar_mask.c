/* grammar_mask.c — the token mask: the vocabulary as tries of token byte strings, walked with
 * a copy of the automaton's state, cutting a subtree at the first refused prefix; plain string
 * tokens under a pattern are cached per grammar, vocabulary and DFA state. Over the same tries:
 * the fewest tokens of a whole answer (grammar_min_tokens). */
#include "chat/grammar_internal.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- token trie and mask ------------------------------------------------------------------- */

typedef struct tnode {
    int first_child, next_sibling;
    int tok_first; /* tokens ending here: a chain through tok_next */
    unsigned char byte;
} tnode;

typedef struct trie {
    tnode *nodes;
    int n_nodes, cap;
} trie;

struct grammar_vocab {
    trie all, rest, plaint; /* every token; those that are not plain string text; the plain ones */
    int *tok_next_all, *tok_next_rest, *tok_next_plain;
    int n_tokens;
    int max_len;
    int n_plain;
    int *plain; /* plain string-text tokens (no quote, backslash, control byte; whole
                                UTF-8 characters), by code point count */
    int *plain_cps;
    int n_ascii;
    int *ascii; /* the plain tokens that are ASCII only (free object keys) */
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
        int more = b < 0x80                 ? 0
                   : b >= 0xc2 && b <= 0xdf ? 1
                   : b >= 0xe0 && b <= 0xef ? 2
                   : b >= 0xf0 && b <= 0xf4 ? 3
                                            : -1;
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
    if (!cps || !v->ascii || !v->tok_next_all || !v->tok_next_rest || !v->tok_next_plain || !v->plain ||
        !v->plain_cps || trie_init(&v->all) || trie_init(&v->rest) || trie_init(&v->plaint)) {
        free(cps);
        grammar_vocab_free(v);
        return NULL;
    }
    v->n_tokens = n_tokens;
    for (int t = 0; t < n_tokens; t++) {
        v->tok_next_all[t] = v->tok_next_rest[t] = v->tok_next_plain[t] = -1;
        cps[t] = -1;
        if (lens[t] <= 0) continue; /* special tokens: never allowed by bytes */
        if (trie_add(&v->all, v->tok_next_all, t, bytes[t], lens[t])) {
            free(cps);
            grammar_vocab_free(v);
            return NULL;
        }
        cps[t] = plain_cps((const unsigned char *)bytes[t], lens[t]);
        if (cps[t] == lens[t]) v->ascii[v->n_ascii++] = t;
        if (cps[t] >= 0) {
            v->plain[v->n_plain++] = t;
            if (trie_add(&v->plaint, v->tok_next_plain, t, bytes[t], lens[t])) {
                free(cps);
                grammar_vocab_free(v);
                return NULL;
            }
        } else if (trie_add(&v->rest, v->tok_next_rest, t, bytes[t], lens[t])) {
            free(cps);
            grammar_vocab_free(v);
            return NULL;
        }
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
static void rx_walk(const grammar_vocab *v, int node, const regex_dfa *d, int s, uint32_t cp, int rem, int *toks,
                    int *n) {
    const trie *t = &v->plaint;
    for (int c = t->nodes[node].first_child; c >= 0; c = t->nodes[c].next_sibling) {
        unsigned b = t->nodes[c].byte;
        uint32_t ncp;
        int nrem, ns = s;
        if (rem == 0) {
            if (b < 0x80) {
                ncp = b;
                nrem = 0;
            } else if (b >= 0xc2 && b <= 0xf4) {
                nrem = b < 0xe0 ? 1 : b < 0xf0 ? 2 : 3;
                ncp = b & (nrem == 1 ? 0x1f : nrem == 2 ? 0x0f : 0x07);
            } else continue;
        } else {
            if ((b & 0xc0) != 0x80) continue;
            ncp = cp << 6 | (b & 0x3f);
            nrem = rem - 1;
        }
        if (nrem == 0) {
            if ((ns = regex_dfa_next(d, s, ncp)) < 0) continue;
            for (int k = t->nodes[c].tok_first; k >= 0; k = v->tok_next_plain[k]) toks[(*n)++] = k;
        } else {
            uint32_t lo = ncp << (6 * nrem), hi = lo | ((1u << (6 * nrem)) - 1);
            if (!regex_dfa_any(d, s, lo, hi)) continue;
        }
        rx_walk(v, c, d, ns, ncp, nrem, toks, n);
    }
}

/* Is the length limit far enough that it cannot refuse a plain token here? */
static bool rx_room(const gnode *n, const grammar_frame *f, const grammar_vocab *v) {
    if (n->max_len < 0) return true;
    int maxd = 0;
    for (int i = 0; i < n->rx->n; i++)
        if (n->rx->dist[i] > maxd) maxd = n->rx->dist[i];
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
        if (ncache) {
            g->cache = ncache;
            g->cap_cache = nc;
        }
    }
    if (!e && g->cache_bytes < (64u << 20) && g->n_cache < g->cap_cache) {
        const regex_dfa *d = g->nodes[node].rx;
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
        if (!grammar_accept_byte(w->g, &w->stack[depth], &w->stack[depth + 1], v->nodes[c].byte)) continue;
        for (int t = v->nodes[c].tok_first; t >= 0; t = w->tok_next[t]) {
            w->allowed[t] = true;
            w->n_allowed++;
        }
        walk(w, c, depth + 1);
    }
}

int grammar_allowed(const grammar *g, const grammar_state *st, const grammar_vocab *v, const int32_t *end_tokens,
                    int n_end, bool *allowed) {
    memset(allowed, 0, (size_t)v->n_tokens * sizeof *allowed);
    /* one state per trie depth (only the frames in use are ever written) */
    grammar_state *scratch = malloc((size_t)(v->max_len + 2) * sizeof *scratch);
    if (!scratch) return 0;
    walker w = {g, &v->all, v->tok_next_all, allowed, 0, scratch};
    if (!st->dead) {
        grammar_state_copy(&w.stack[0], st);
        const grammar_frame *f = st->n_alt == 1 && st->alt[0].depth ? &st->alt[0].f[st->alt[0].depth - 1] : NULL;
        const gnode *n = f ? &g->nodes[f->node] : NULL;
        if (f && f->kind == F_STR && f->phase == S_CHAR && !n->rx) {
            /* plain text inside a string: every plain token that fits the length limit */
            long room = n->max_len >= 0 ? (long)n->max_len - (long)f->count : 0x7fffffff;
            for (int i = 0; i < v->n_plain && v->plain_cps[i] <= room; i++) allowed[v->plain[i]] = true, w.n_allowed++;
            w.t = &v->rest;
            w.tok_next = v->tok_next_rest;
        } else if (f && (f->kind == F_STR || f->kind == F_RAW) && f->phase == S_CHAR && rx_room(n, f, v)) {
            /* a pattern string's, or raw text's, plain tokens from the DFA state (cached) */
            int k = rx_cached(g, v, f->node, (int)f->seen, allowed);
            if (k >= 0) {
                w.n_allowed += k;
                w.t = &v->rest;
                w.tok_next = v->tok_next_rest;
            }
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
typedef struct mt_set {
    grammar_state *st;
    int n;
    int slot[MT_SLOTS];
} mt_set;

static uint64_t mt_hash(const grammar_state *s) {
    uint64_t h = 1469598103934665603ull;
#define MT_MIX(x) (h = (h ^ (uint64_t)(x)) * 1099511628211ull)
    MT_MIX(s->n_alt);
    for (int i = 0; i < s->n_alt; i++) {
        const grammar_stack *a = &s->alt[i];
        MT_MIX(a->depth);
        for (int d = 0; d < a->depth; d++) {
            const grammar_frame *f = &a->f[d];
            MT_MIX(f->seen);
            MT_MIX(f->cand);
            MT_MIX(f->count);
            MT_MIX(f->node);
            MT_MIX(f->pos);
            MT_MIX((uint16_t)f->cur);
            MT_MIX(f->kind);
            MT_MIX(f->phase);
            MT_MIX(f->aux);
            MT_MIX(f->sp);
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
    grammar_state_copy(&s->st[s->n], st);
    s->slot[h] = s->n++;
    return true;
}

typedef struct mt_walker {
    const grammar *g;
    grammar_state *stack; /* one state per trie depth */
    long *budget;         /* bytes fed, left */
    mt_set *out;
    bool stop; /* out of budget or the level is full */
} mt_walker;

/* Every token of the trie below node that the automaton takes from stack[depth]: its state to out. */
static void mt_walk(mt_walker *w, const trie *t, int node, int depth) {
    for (int c = t->nodes[node].first_child; c >= 0 && !w->stop; c = t->nodes[c].next_sibling) {
        if (--*w->budget < 0) {
            w->stop = true;
            return;
        }
        if (!grammar_accept_byte(w->g, &w->stack[depth], &w->stack[depth + 1], t->nodes[c].byte)) continue;
        if (t->nodes[c].tok_first >= 0 && !mt_add(w->out, &w->stack[depth + 1])) {
            w->stop = true;
            return;
        }
        mt_walk(w, t, c, depth + 1);
    }
}

/* The states one token after st (the tokens grammar_allowed offers). Plain text inside a string
 * without a pattern only counts code points, so one state per count stands for all its tokens. */
static void mt_expand(mt_walker *w, const grammar_vocab *v, const grammar_state *st) {
    const grammar *g = w->g;
    grammar_state_copy(&w->stack[0], st);
    const grammar_frame *f = st->n_alt == 1 && st->alt[0].depth ? &st->alt[0].f[st->alt[0].depth - 1] : NULL;
    const gnode *n = f ? &g->nodes[f->node] : NULL;
    if (!(f && f->kind == F_STR && f->phase == S_CHAR && !n->rx)) {
        mt_walk(w, &v->all, 0, 0);
        return;
    }
    long room = n->max_len >= 0 ? (long)n->max_len - (long)f->count : 0x7fffffff;
    for (int i = 0; i < v->n_plain && v->plain_cps[i] <= room && !w->stop; i++) {
        if (i && v->plain_cps[i] == v->plain_cps[i - 1]) continue;
        grammar_state_copy(&w->stack[1], st);
        for (int k = 0; k < v->plain_cps[i]; k++) {
            if (--*w->budget < 0) {
                w->stop = true;
                return;
            }
            if (!grammar_accept_byte(g, &w->stack[1 + (k & 1)], &w->stack[2 - (k & 1)], 'a'))
                return; /* cannot happen: plain text */
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
    if (!s || (n = grammar_completion(g, st, s, cap)) < 0 || !grammar_accept(g, st, s, (size_t)n)) {
        free(s);
        return INT_MAX;
    }
    for (int i = 0; i < n; toks++) {
        int node = 0, best = 0;
        for (int k = i; k < n; k++) {
            int c = v->all.nodes[node].first_child;
            while (c >= 0 && v->all.nodes[c].byte != (unsigned char)s[k]) c = v->all.nodes[c].next_sibling;
            if (c < 0) break;
            node = c;
            if (v->all.nodes[c].tok_first >= 0) best = k - i + 1;
        }
        if (!best) {
            free(s);
            return INT_MAX;
        }
        i += best;
    }
    free(s);
    if (st->depth > 0) return can_end ? toks + 1 : INT_MAX;
    return toks;
}

int grammar_min_tokens(const grammar *g, const grammar_vocab *v, bool can_end, int limit, long budget) {
    mt_set *set = calloc(2, sizeof *set);
    grammar_state *mem = malloc((size_t)(2 * MT_STATES + v->max_len + 3) * sizeof *mem);
    if (!set || !mem) {
        free(set);
        free(mem);
        return -1;
    }
    set[0].st = mem;
    set[1].st = mem + MT_STATES;
    mt_walker w = {g, mem + 2 * MT_STATES, &budget, NULL, false};
    mt_clear(&set[0]);
    grammar_state_init(g, &set[0].st[0]);
    set[0].n = 1;
    grammar_state_init(g, &w.stack[0]);
    int upper = mt_upper(g, v, can_end, &w.stack[0]), r = -1;
    if (upper <= limit) {
        r = upper;
        goto done;
    }
    /* breadth first over the distinct states after 0, 1, 2, ... tokens */
    for (int level = 0;; level++) {
        mt_set *cur = &set[level & 1], *nx = &set[(level + 1) & 1];
        bool ends = false;
        for (int i = 0; i < cur->n; i++) {
            if (cur->st[i].depth == 0) {
                r = level;
                goto done;
            }
            ends = ends || (can_end && grammar_complete(g, &cur->st[i]));
        }
        if (ends) {
            r = level + 1;
            goto done;
        } /* an end token after one of them */
        if (level + 1 >= upper) {
            r = upper;
            goto done;
        }
        if (cur->n == 0) {
            r = upper < INT_MAX ? upper : limit + 1;
            goto done;
        } /* no answer at all */
        mt_clear(nx);
        w.out = nx;
        for (int i = 0; i < cur->n && !w.stop; i++) mt_expand(&w, v, &cur->st[i]);
        if (w.stop) {
            r = level + 1 > limit ? level + 1 : -1;
            goto done;
        } /* none within level tokens */
    }
done:
    free(mem);
    free(set);
    return r;
}
