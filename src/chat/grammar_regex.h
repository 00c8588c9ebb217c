/* grammar_regex.h — private to the engine (src/chat/grammar_*.c, and core/lora_peft.c for
 * PEFT's pattern keys): the regular expressions of patterns and formats, compiled to DFAs over
 * code points under a work budget (grammar_regex.c), and the few operations the schema
 * compiler, the automaton and the token mask use on them. */
#ifndef LFM2C_CHAT_GRAMMAR_REGEX_H
#define LFM2C_CHAT_GRAMMAR_REGEX_H
#include "base/error.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct redge {
    uint32_t lo, hi;
    int to;
} redge;

/* Work units (NFA states visited, product pairs probed) left for the patterns of one request; a
 * set cancel flag empties it. Past zero a pattern fails with "too costly to compile". */
enum { RX_BUDGET = 60000000 };
typedef struct rxbudget {
    long left;
    const volatile bool *cancel;
} rxbudget;

typedef struct rdfa {
    int n;      /* states; 0 is the start */
    int *first; /* edges of state s: edges[first[s] .. first[s+1]) sorted by lo */
    redge *edges;
    unsigned char *accept;
    int *dist;         /* code points to the nearest accepting state */
    uint32_t *next_cp; /* a code point on such a shortest path */
} rdfa;

/* An EINVAL with a formatted message (the compile errors of patterns and schemas). */
void grammar_einval(lfm2c_error *err, const char *fmt, va_list ap);
/* The value of a hex digit, -1 for another character. */
int rx_hexval(int ch);
void dfa_free(rdfa *d);
/* A pattern (JSON Schema's "contains a match" unless anchored; leading lookaheads become
 * intersections), or NULL with err set. */
rdfa *regex_compile(const char *pat, size_t len, lfm2c_error *err, rxbudget *budget);
/* Intersection of two DFAs (a pattern and a format); NULL when empty or over the budget. */
rdfa *dfa_product(const rdfa *a, const rdfa *b, rxbudget *budget);
/* The complement of a DFA over all strings; NULL when empty or over the budget. */
rdfa *dfa_complement(const rdfa *a, rxbudget *budget);
/* The state after code point cp from state s, -1 when refused. */
int dfa_next(const rdfa *d, int s, uint32_t cp);
/* Does state s take some code point in [a, b]? */
bool dfa_any(const rdfa *d, int s, uint32_t a, uint32_t b);
/* The pattern of a JSON Schema format, NULL for a format we do not know. */
const char *format_pattern(const char *f);
#endif
