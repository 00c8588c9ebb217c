/* regex.h — private to the engine: the budgeted regular-expression engine, a floor below core/
 * and chat/ (the grammar, src/chat/grammar_*.c, for JSON Schema's pattern and format and the
 * raw-text regex constraint; core/lora_peft.c for PEFT's pattern keys). Patterns compile to DFAs
 * over code points under a work budget (regex.c); the operations here are the few the schema
 * compiler, the automaton, the token mask and the PEFT loader use on them. */
#ifndef LFM2C_TEXT_REGEX_H
#define LFM2C_TEXT_REGEX_H
#include "base/error.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct regex_edge {
    uint32_t lo, hi;
    int to;
} regex_edge;

/* Work units (NFA states visited, product pairs probed) left for the patterns of one request; a
 * set cancel flag empties it. Past zero a pattern fails with "too costly to compile". */
enum { REGEX_BUDGET = 60000000 };
typedef struct regex_budget {
    long left;
    const volatile bool *cancel;
} regex_budget;

typedef struct regex_dfa {
    int n;      /* states; 0 is the start */
    int *first; /* edges of state s: edges[first[s] .. first[s+1]) sorted by lo */
    regex_edge *edges;
    unsigned char *accept;
    int *dist;         /* code points to the nearest accepting state */
    uint32_t *next_cp; /* a code point on such a shortest path */
} regex_dfa;

/* An EINVAL with a formatted message (the compile errors of patterns and schemas). */
void regex_einval(lfm2c_error *err, const char *fmt, va_list ap);
/* The value of a hex digit, -1 for another character. */
int regex_hexval(int ch);
void regex_dfa_free(regex_dfa *d);
/* A pattern (JSON Schema's "contains a match" unless anchored; leading lookaheads become
 * intersections), or NULL with err set. */
regex_dfa *regex_compile(const char *pat, size_t len, lfm2c_error *err, regex_budget *budget);
/* Intersection of two DFAs (a pattern and a format); NULL when empty or over the budget. */
regex_dfa *regex_dfa_product(const regex_dfa *a, const regex_dfa *b, regex_budget *budget);
/* The complement of a DFA over all strings; NULL when empty or over the budget. */
regex_dfa *regex_dfa_complement(const regex_dfa *a, regex_budget *budget);
/* The state after code point cp from state s, -1 when refused. */
int regex_dfa_next(const regex_dfa *d, int s, uint32_t cp);
/* Does state s take some code point in [a, b]? */
bool regex_dfa_any(const regex_dfa *d, int s, uint32_t a, uint32_t b);
/* The pattern of a JSON Schema format, NULL for a format we do not know. */
const char *regex_format_pattern(const char *f);
#endif
