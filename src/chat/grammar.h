/* grammar.h — constrained decoding: a byte-level pushdown automaton that accepts exactly the JSON
 * texts valid against a JSON-schema subset (or LFM2 Pythonic tool-call lists, or raw text matching
 * a regular expression or one of a list of strings as a whole), and a token mask
 * that lets the sampler pick only tokens whose bytes keep the automaton alive.
 *
 * Schema subset (see grammar_schema.c for the full list): type (one or a list), properties, required,
 * additionalProperties, items, prefixItems, enum, const, anyOf/oneOf, allOf (merged), $ref into
 * $defs/definitions (recursion included), integer/number bounds and multipleOf, minLength/
 * maxLength (code points), pattern and the common formats (own regex -> DFA), minItems/maxItems;
 * annotations are ignored. A keyword it cannot enforce is rejected with an error naming it,
 * never silently ignored. Output is compact JSON (at most one space after ':' and ','),
 * properties in any order, enum/const values in their compact canonical form.
 *
 * anyOf makes the automaton nondeterministic: a state is a small set of frame stacks (at most
 * GRAMMAR_MAX_ALTS live at once; identical ones merge, dead ones drop, extra ones are dropped:
 * the output stays valid, only rarer alternatives may become unreachable). */
#ifndef LFM2C_GRAMMAR_H
#define LFM2C_GRAMMAR_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct grammar grammar; /* compiled, immutable: share it between requests */

/* A JSON schema (text). NULL + message in err on an unsupported or malformed schema.
 * (The two compilers hand their message back in the caller's buffer, the last place in src/chat
 * outside base/error.h's convention: inside, the compiler uses an lfm2c_error; these signatures
 * move to `lfm2c_error *err` together with their caller in src/serve/server.c.) */
grammar *grammar_from_schema(const char *schema_json, char *err, size_t errcap);
/* The same, given up ("too costly to compile") as soon as *cancel becomes true (the request is
 * gone). Pattern compilation has a work budget per call either way (see REGEX_BUDGET). */
grammar *grammar_from_schema_cancel(const char *schema_json, const volatile bool *cancel, char *err, size_t errcap);
/* Any JSON object (response_format json_object). */
grammar *grammar_any_object(void);
/* LFM2 tool calls: `[name(arg=value, ...), ...]` with Python literals, names and arguments from
 * an OpenAI tools array (each {"type":"function","function":{name, parameters}}). only_name:
 * restrict to that function (tool_choice named), else any of them; parallel: allow several. */
grammar *grammar_tool_calls(const char *tools_json, const char *only_name, bool parallel, char *err, size_t errcap);
/* Raw text (not JSON) matching a regular expression as a whole: the pattern syntax of JSON
 * Schema's "pattern" (text/regex.c), anchored at both ends (vLLM's structured outputs
 * "regex"). Given up ("too costly to compile") as soon as *cancel becomes true (NULL: never).
 * NULL + message in err when the pattern is refused or matches no text. */
grammar *grammar_from_regex(const char *pattern, size_t len, const volatile bool *cancel, char *err, size_t errcap);
/* Raw text equal to one of n strings (vLLM's "choice"), lens[i] bytes each (valid UTF-8). */
grammar *grammar_from_choices(const char *const *choices, const size_t *lens, int n, const volatile bool *cancel,
                              char *err, size_t errcap);
/* Does g read raw text (grammar_from_regex / _choices) rather than a JSON value? */
bool grammar_is_raw(const grammar *g);
void grammar_free(grammar *g);
/* JSON text whose integers past 18 digits are written as reals (jansson refuses integers beyond
 * int64: "too big integer"); a malloc'd NUL-terminated copy, NULL when out of memory. */
char *grammar_json_widen_big_ints(const char *text, size_t n);

#define GRAMMAR_MAX_DEPTH 32

typedef struct grammar_frame {
    uint64_t seen;  /* object / call: properties given so far */
    uint64_t cand;  /* key, enum or name candidates still matching */
    uint32_t count; /* array items / string characters */
    uint16_t node;  /* schema node */
    uint16_t pos;   /* bytes matched of a key / literal / enum / name */
    int16_t cur;    /* object: property being filled (-1: additional); calls: function */
    uint8_t kind, phase, aux, sp;
} grammar_frame;

#define GRAMMAR_MAX_ALTS 8

typedef struct grammar_stack {
    int depth; /* frames in use; 0 = a complete value was read */
    grammar_frame f[GRAMMAR_MAX_DEPTH];
} grammar_stack;

/* The parse position: a plain value, copy it freely. */
typedef struct grammar_state {
    int depth; /* deepest alternative; 0 = a complete value was read, nothing may follow */
    bool dead; /* a byte was rejected */
    int n_alt; /* live alternatives */
    grammar_stack alt[GRAMMAR_MAX_ALTS];
} grammar_state;

void grammar_state_init(const grammar *g, grammar_state *st);
/* Feeds bytes; false (and the state unchanged) if any is not allowed. */
bool grammar_accept(const grammar *g, grammar_state *st, const char *bytes, size_t n);
/* True when the bytes so far form a complete value (generation may stop here). */
bool grammar_complete(const grammar *g, const grammar_state *st);
/* The shortest-ish bytes that complete the value from st (minimal values for what is still
 * required). Returns the length (NUL-terminated in out when it fits), -1 if cap is too small. */
int grammar_completion(const grammar *g, const grammar_state *st, char *out, int cap);

/* Token byte strings of a vocabulary in a trie, built once per model. */
typedef struct grammar_vocab grammar_vocab;
grammar_vocab *grammar_vocab_new(const char *const *bytes, const int *lens, int n_tokens);
/* The token byte strings of a model (lfm2c_token_to_bytes, specials empty) as a vocabulary
 * (constraint.c); NULL when out of memory. */
struct lfm2c_model;
grammar_vocab *grammar_vocab_of_model(const struct lfm2c_model *model);
void grammar_vocab_free(grammar_vocab *v);
/* Marks allowed[i] for every token whose bytes the automaton accepts from st (tokens with no
 * bytes never), plus the end tokens when st is complete. Returns how many are allowed. */
int grammar_allowed(const grammar *g, const grammar_state *st, const grammar_vocab *v, const int32_t *end_tokens,
                    int n_end, bool *allowed);
/* The fewest tokens of v that take the automaton from its start to the end of an answer: a
 * state with nothing left open (depth 0), or, when can_end, a complete value plus one end token.
 * Answers only what a caller with `limit` tokens of room needs to know, as cheaply as it can:
 *  - <= limit: an answer of that many tokens exists (the automaton's own completion cut greedily
 *    into tokens; not always the fewest);
 *  - > limit: no answer fits in limit tokens; the value is the fewest tokens an answer takes, or
 *    a lower bound of it when the search ran out of budget;
 *  - -1: undecided (the search ran out of budget before limit tokens, or out of memory).
 * The search is breadth first over the distinct states after 0, 1, 2, ... tokens (the tokens
 * grammar_allowed offers); budget bounds the bytes it feeds (about 10 ns each). */
int grammar_min_tokens(const grammar *g, const grammar_vocab *v, bool can_end, int limit, long budget);
#endif
