/* grammar_automaton.c — the automaton that runs a compiled grammar one byte at a time: a small
 * set of frame stacks (one frame per open value: object, array, string, number, literal, enum,
 * tool calls), anyOf forking a stack per alternative at the value's first byte and dead stacks
 * dropped; whether a state is complete, and the shortest completion of a state. */
#include "chat/grammar_internal.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the automaton ------------------------------------------------------------------------- */


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
    push(&st->alt[0], g->calls ? F_CALLS : g->raw ? F_RAW : F_VALUE, g->root, 0);
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
static const double POW10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

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
        if (frac) {
            a = (double)M / POW10[f];
            b = (double)(M + 1) / POW10[f];
        } else {
            a = (double)M * POW10[j];
            b = (double)(M + 1) * POW10[j];
        }
        if (left == 0) {
            if (num_in(n, neg ? -a : a)) return true;
            continue;
        }
        if (!neg) {
            if ((n->hi_ex ? a < n->hi : a <= n->hi) && b > n->lo) return true;
        } else if ((n->lo_ex ? -a > n->lo : -a >= n->lo) && -b < n->hi) return true;
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
    } else if (np == N_DOT &&
               ((int)f->cand >= num_digits(n) || !num_viable(n, f->cur, f->seen, 0, true, (int)f->cand))) {
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
        int t = regex_dfa_next(n->rx, (int)f->seen, cp);
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
    const regex_dfa *d = n->rx;
    if (n->max_len < 0) return regex_dfa_any(d, (int)f->seen, lo, hi);
    for (int e = d->first[f->seen]; e < d->first[f->seen + 1]; e++)
        if (d->edges[e].hi >= lo && d->edges[e].lo <= hi && (long)f->count + 1 + d->dist[d->edges[e].to] <= n->max_len)
            return true;
    return false;
}

/* A UTF-8 lead byte b (>= 0x80) in a string or raw-text frame: the code point range it opens is
 * checked against the pattern, the bytes still to come go to f->aux (phase S_UTF8). */
static int utf8_lead(const gnode *n, grammar_frame *f, unsigned char b) {
    uint32_t lo, hi;
    int more;
    unsigned nlo = 0x80, nhi = 0xBF;
    if (b >= 0xc2 && b <= 0xdf) {
        more = 1;
        lo = (uint32_t)(b & 0x1f) << 6;
        hi = lo | 0x3f;
    } else if (b >= 0xe0 && b <= 0xef) {
        more = 2;
        lo = (uint32_t)(b & 0x0f) << 12;
        hi = lo | 0xfff;
        if (b == 0xe0) {
            nlo = 0xa0;
            lo = 0x800;
        }
        if (b == 0xed) {
            nhi = 0x9f;
            hi = 0xd7ff;
        }
    } else if (b >= 0xf0 && b <= 0xf4) {
        more = 3;
        lo = (uint32_t)(b & 0x07) << 18;
        hi = lo | 0x3ffff;
        if (b == 0xf0) {
            nlo = 0x90;
            lo = 0x10000;
        }
        if (b == 0xf4) {
            nhi = 0x8f;
            hi = 0x10ffff;
        }
    } else return R_REJECT;
    if (n->rx && !rx_can_take(n, f, lo, hi)) return R_REJECT;
    f->phase = S_UTF8;
    f->aux = (uint8_t)more;
    f->cand = b & (more == 1 ? 0x1f : more == 2 ? 0x0f : 0x07);
    f->pos = (uint16_t)(nlo | nhi << 8);
    return R_OK;
}

/* A continuation byte of a UTF-8 sequence (phase S_UTF8); the last one completes the code point. */
static int utf8_cont(const gnode *n, grammar_frame *f, unsigned char b) {
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
        return utf8_lead(n, f, b);
    case S_UTF8: return utf8_cont(n, f, b);
    case S_ESC: {
        if (b == 'u' && !n->rx) {
            f->phase = S_HEX;
            f->aux = 4;
            f->cand = 0;
            return R_OK;
        }
        uint32_t cp = esc_cp(b, g->python);
        if (cp == 0xFFFFFFFF || !str_char(n, f, cp)) return R_REJECT;
        f->phase = S_CHAR;
        return R_OK;
    }
    case S_HEX: {
        int h = regex_hexval(b);
        if (h < 0) return R_REJECT;
        f->cand = f->cand << 4 | (uint64_t)h;
        /* no surrogates: every escape is one whole code point */
        if (f->aux == 3 && (f->cand >> 4) == 0xd && h >= 8) return R_REJECT;
        if (--f->aux == 0) {
            f->phase = S_CHAR;
            f->count++;
        }
        return R_OK;
    }
    }
    return R_REJECT;
}

/* Raw text (grammar_from_regex): every code point through the pattern's DFA. The text may stop
 * wherever the DFA accepts (frame_can_end); at a match no code point extends, the frame ends
 * (depth 0: complete, nothing may follow, as after a JSON value). */
static int step_raw(grammar_stack *st, grammar_frame *f, const gnode *n, unsigned char b) {
    const int r = f->phase == S_UTF8 ? utf8_cont(n, f, b)
                  : b < 0x80         ? (str_char(n, f, b) ? R_OK : R_REJECT)
                                     : utf8_lead(n, f, b);
    const regex_dfa *d = n->rx;
    if (r == R_OK && f->phase == S_CHAR && d->accept[f->seen] && d->first[f->seen] == d->first[f->seen + 1])
        st->depth--;
    return r;
}

/* ---- values, objects, arrays, calls ---- */

/* The first byte of a value of node n starts frame f (an F_VALUE, not a union) as its kind. */
static int start_value(const grammar *g, const grammar_stack *st, grammar_frame *f, unsigned char b) {
    const gnode *n = &g->nodes[f->node];
    if (f->sp && b == ' ') {
        f->sp = 0;
        return R_OK;
    }
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
    if (b == '{' && (n->types & T_OBJ) && grammar_part_depth(g, n, T_OBJ) <= room) {
        f->kind = F_OBJ;
        f->phase = O_FIRST;
        f->seen = 0;
        return R_OK;
    }
    if (b == '[' && (n->types & T_ARR) && grammar_part_depth(g, n, T_ARR) <= room) {
        f->kind = F_ARR;
        f->phase = A_FIRST;
        f->count = 0;
        f->cand = 0;
        return R_OK;
    }
    if (b == '"' && (n->types & T_STR)) {
        f->kind = F_STR;
        f->phase = S_CHAR;
        f->count = 0;
        f->seen = 0;
        return R_OK;
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
    return it >= 0 && st->depth + grammar_mind_of(g, it) <= GRAMMAR_MAX_DEPTH;
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
        if (st->depth + grammar_mind_of(g, n->prop_node[p]) > GRAMMAR_MAX_DEPTH) left &= ~(1ull << p);
    }
    if (n->max_props >= 0 && __builtin_popcountll(f->seen) + __builtin_popcountll(missing) >= n->max_props)
        left &= missing;
    return left;
}

static bool obj_free_ok(const grammar *g, const grammar_stack *st, const gnode *n) {
    return n->additional >= 0 && st->depth + grammar_mind_of(g, n->additional) <= GRAMMAR_MAX_DEPTH;
}

static bool obj_can_close(const grammar_frame *f, const gnode *n) {
    return !(n->required & ~f->seen) && (n->min_props < 0 || __builtin_popcountll(f->seen) >= n->min_props);
}

/* After '{' (O_FIRST) or ',' (O_NEXT): an optional space, '}' (only right after '{') or the
 * opening quote of a key that may still come. */
static int obj_key_open(const grammar *g, grammar_stack *st, grammar_frame *f, const gnode *n, unsigned char b) {
    if (f->sp && b == ' ') {
        f->sp = 0;
        return R_OK;
    }
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
    if (!f->aux) {
        if (b == '\\') f->aux = 1;
    } else if (f->aux == 1) {
        if (b == 'u') f->aux = 5;
        else if (esc_cp(b, g->python) == 0xFFFFFFFF) return R_REJECT;
        else f->aux = 0;
    } else {
        if (regex_hexval(b) < 0) return R_REJECT;
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
    if (f->sp && b == ' ') {
        f->sp = 0;
        return R_OK;
    }
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
    if (f->sp && b == ' ') {
        f->sp = 0;
        return R_OK;
    }
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
    if (f->sp && b == ' ') {
        f->sp = 0;
        return R_OK;
    }
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
    if (b == ']') {
        st->depth--;
        return R_OK;
    }
    if (b == ',' && g->parallel) {
        f->phase = C_NEXTCALL;
        f->sp = 1;
        f->cur = -1;
        return R_OK;
    }
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
    case F_RAW: return step_raw(st, f, n, b);
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
            if (f->sp && b == ' ') {
                f->sp = 0;
                break;
            }
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

bool grammar_accept_byte(const grammar *g, const grammar_state *in, grammar_state *out, unsigned char b) {
    out->n_alt = 0;
    out->dead = false;
    for (int i = 0; i < in->n_alt; i++) run_alt(g, out, &in->alt[i], b, 0);
    int d = 0;
    for (int i = 0; i < out->n_alt; i++)
        if (out->alt[i].depth > d) d = out->alt[i].depth;
    out->depth = d;
    return out->n_alt > 0;
}

void grammar_state_copy(grammar_state *dst, const grammar_state *src) {
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
        if (!grammar_accept_byte(g, cur, nx, (unsigned char)bytes[i])) {
            free(a);
            return false;
        }
        cur = nx;
    }
    grammar_state_copy(st, cur);
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
    if (f->kind == F_RAW) return f->phase == S_CHAR && n->rx->accept[f->seen];
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
bool grammar_node_accepts(const grammar *g, int node, const char *text, size_t len) {
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
            if (pick < 0 || grammar_mind_of(g, n->any[i]) < grammar_mind_of(g, pick)) pick = n->any[i];
        }
        for (int i = 0; i < n->n_any; i++) {
            if (n->dropped >> i & 1) continue;
            const gnode *a = &g->nodes[n->any[i]];
            if (!a->n_any && !a->n_enum && (a->types & T_NULL)) {
                pick = n->any[i];
                break;
            }
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

/* closing_byte's phases, one per frame kind: the byte for the top frame f of st (node n); -1 pops it. */

/* The first byte of code point cp in UTF-8. */
static int lead_byte(uint32_t cp) {
    return cp < 0x80      ? (int)cp
           : cp < 0x800   ? (int)(0xc0 | cp >> 6)
           : cp < 0x10000 ? (int)(0xe0 | cp >> 12)
                          : (int)(0xf0 | cp >> 18);
}

static int closing_enum(const grammar *g, const grammar_stack *st, const grammar_frame *f, const gnode *n) {
    uint64_t used = 0; /* uniqueItems: values the array already holds */
    if (st->depth >= 2 && st->f[st->depth - 2].kind == F_ARR && g->nodes[st->f[st->depth - 2].node].unique)
        used = st->f[st->depth - 2].cand;
    int e = exact(n->enums, f->cand, f->pos);
    if (e >= 0 && !(used >> e & 1)) return -1;
    int k = pick(f->cand & ~used & ~(e >= 0 ? 1ull << e : 0), ~0ull);
    if (k < 0) return 1; /* no way on: a byte nothing accepts */
    return (unsigned char)n->enums[k].s[f->pos];
}

static int closing_str(const grammar *g, const grammar_frame *f, const gnode *n) {
    if (f->phase == S_ESC && n->rx) { /* the escape whose character gets closest to a match */
        static const char E[] = "nt\"\\/bfr";
        int best = 'n', bd = -1;
        for (int i = 0; E[i]; i++) {
            uint32_t cp = esc_cp((unsigned char)E[i], g->python);
            int t = cp == 0xFFFFFFFF ? -1 : regex_dfa_next(n->rx, (int)f->seen, cp);
            if (t >= 0 && (bd < 0 || n->rx->dist[t] < bd)) {
                bd = n->rx->dist[t];
                best = E[i];
            }
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
        return lead_byte(cp);
    }
    return n->min_len > 0 && (int)f->count < n->min_len ? 'a' : '"';
}

static int closing_obj(const grammar *g, const grammar_stack *st, const grammar_frame *f, const gnode *n) {
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

static int closing_arr(const grammar *g, const grammar_frame *f, const gnode *n) {
    bool need = !arr_can_close(n, f);
    if (n->unique && need && f->phase != A_AFTER) { /* a value the array does not hold yet */
        int k = pick(all_bits(g->nodes[n->items].n_enum) & ~f->cand, ~0ull);
        return k >= 0 ? (unsigned char)g->nodes[n->items].enums[k].s[0] : ']';
    }
    if (f->phase == A_FIRST) return need ? first_byte_of_min_value(g, item_node(n, (int)f->count), 0) : ']';
    if (f->phase == A_NEXT) return first_byte_of_min_value(g, item_node(n, (int)f->count), 0);
    return need ? ',' : ']';
}

static int closing_calls(const grammar *g, const grammar_frame *f) {
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

/* The byte that moves the stack towards completion fastest; -1: pop the top frame. */
static int closing_byte(const grammar *g, const grammar_stack *st) {
    const grammar_frame *f = &st->f[st->depth - 1];
    const gnode *n = &g->nodes[f->node];
    switch (f->kind) {
    case F_VALUE: return first_byte_of_min_value(g, f->node, 0);
    case F_LIT: return (unsigned char)(g->python ? LIT_PY : LIT_JSON)[f->aux][f->pos];
    case F_ENUM: return closing_enum(g, st, f, n);
    case F_NUM: return frame_can_end(g, f) ? -1 : '0';
    case F_STR: return closing_str(g, f, n);
    case F_RAW: /* the first code point on a shortest way to a match; -1 at a match */
        if (f->phase == S_UTF8) return f->pos & 0xff;
        if (n->rx->accept[f->seen]) return -1;
        return lead_byte(n->rx->next_cp[f->seen]);
    case F_OBJ: return closing_obj(g, st, f, n);
    case F_ARR: return closing_arr(g, f, n);
    case F_CALLS: return closing_calls(g, f);
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
        bool ok = grammar_accept_byte(g, st, tmp, (unsigned char)b);
        for (int i = 0; !ok && i < 256 + (int)sizeof PREF; i++) { /* the preferred byte is refused: any that fits */
            b = i < (int)sizeof PREF - 1 ? (unsigned char)PREF[i] : i - (int)sizeof PREF + 1;
            ok = b > 0 && grammar_accept_byte(g, st, tmp, (unsigned char)b);
        }
        if (!ok || n + 1 >= cap) return -1;
        out[n++] = (char)b;
        /* follow one stack: the one whose open value needs the fewest frames (a union's
         * recursive alternatives last) */
        int best = 0;
        for (int i = 1; i < tmp->n_alt; i++) {
            const grammar_stack *x = &tmp->alt[i], *y = &tmp->alt[best];
            if (x->depth && y->depth &&
                grammar_mind_of(g, x->f[x->depth - 1].node) < grammar_mind_of(g, y->f[y->depth - 1].node))
                best = i;
        }
        if (best) stack_copy(&tmp->alt[0], &tmp->alt[best]);
        tmp->n_alt = 1;
        tmp->depth = tmp->alt[0].depth;
        grammar_state_copy(st, tmp);
        if (grammar_complete(g, st) && st->alt[0].depth == 0) break;
    }
    if (!grammar_complete(g, st)) return -1;
    out[n] = 0;
    return n;
}

int grammar_completion(const grammar *g, const grammar_state *st0, char *out, int cap) {
    if (st0->dead || cap < 1) return -1;
    if (grammar_complete(g, st0)) {
        out[0] = 0;
        return 0;
    }
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
