/* grammar_internal.h — private to src/chat/grammar_*.c: the compiled grammar (nodes, the
 * struct behind grammar.h's handle) and the frame kinds of the automaton, shared by the schema
 * compiler (grammar_schema.c), the automaton (grammar_automaton.c) and the token mask
 * (grammar_mask.c). */
#ifndef LFM2C_CHAT_GRAMMAR_INTERNAL_H
#define LFM2C_CHAT_GRAMMAR_INTERNAL_H
#include "chat/grammar.h"
#include "text/regex.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

enum { T_NULL = 1, T_BOOL = 2, T_INT = 4, T_NUM = 8, T_STR = 16, T_ARR = 32, T_OBJ = 64, T_ALL = 127 };
enum {
    MAX_NODES = 8192,
    MAX_PROPS = 64,
    MAX_ENUM = 64,
    MAX_NUM_BYTES = 40,
    MAX_SCHEMA_DEPTH = 48,
    MAX_PREFIX = 16,
    MAX_REFS = 512,
    MAX_ENUM_VALUES = 4096
};

typedef struct gstr {
    char *s;
    int n;
} gstr;

typedef struct gnode {
    int types;
    int n_enum;
    gstr *enums; /* canonical compact JSON of each allowed value */
    int n_props;
    gstr *keys; /* property names, JSON-escaped, without quotes */
    int *prop_node;
    uint64_t required;
    int additional; /* node for other keys, -1: none allowed */
    int items;      /* node of array items after the prefix, -1: none */
    int n_prefix;
    int *prefix;                                /* prefixItems nodes */
    bool unique;                                /* uniqueItems over enum items */
    bool one_of;                                /* a union from oneOf: its alternatives are made mutually exclusive */
    bool add_false;                             /* the schema forbids keys outside 'properties' */
    bool rx_exact;                              /* rx is exactly the schema's pattern (no format narrowing it) */
    regex_dfa *srx;                             /* the schema's own pattern automaton (exact), or NULL; may be rx */
    int stypes;                                 /* the types the schema itself admits (T_ALL without 'type') */
    uint64_t banned;                            /* declared properties never generated (oneOf exclusion) */
    uint64_t sreq;                              /* the schema's own 'required' (required may grow by narrowing) */
    uint64_t dropped;                           /* union: alternatives never generated (oneOf exclusion) */
    bool narrowed;                              /* generates less than its schema admits (oneOf exclusion) */
    int cut_items;                              /* arrays: at most this many items are generated (-1: no cut) */
    int min_props, max_props;                   /* declared properties written (-1: unbounded) */
    int not_node;                               /* 'not': a node no generated value may validate against (-1: none) */
    int min_items, max_items, min_len, max_len; /* -1: unbounded */
    int n_any;
    int *any;                /* anyOf alternatives (a union node has nothing else) */
    int64_t ilo, ihi, imult; /* integers: inclusive bounds, multipleOf (0: none) */
    bool nbound;             /* numbers: bounds or frac_max apply */
    double lo, hi;
    bool lo_ex, hi_ex;
    int frac_max;  /* at most this many decimals, -1: any */
    regex_dfa *rx; /* strings: pattern/format automaton */
} gnode;

typedef struct rxcache {
    int node, state, n;
    int *toks;
} rxcache;

struct grammar {
    gnode *nodes;
    int n_nodes;
    int root;
    bool python; /* literals True/False/None (tool-call arguments) */
    bool raw;    /* the root is raw text under its node's rx (grammar_from_regex), not JSON */
    bool calls;  /* root is a tool-call list */
    bool parallel;
    int n_funcs;
    gstr *func_names;
    int *func_node;        /* parameters object node */
    unsigned char *finite; /* per node: some finite value can be generated from it */
    unsigned char *mind;   /* per node: the fewest frames a value of it needs (255: more) */
    regex_budget budget;   /* while compiling: the patterns' work budget */
    /* mask cache: the plain-text tokens a pattern string accepts from each DFA state */
    pthread_mutex_t cache_mu;
    const struct grammar_vocab *cache_vocab;
    struct rxcache *cache;
    int n_cache, cap_cache;
    size_t cache_bytes;
};

#define I_LIMIT15 999999999999999LL
#define I_LIMIT16 9999999999999999LL

/* ---- the automaton's frames ---- */
/* R_POP: the frame ended before this byte, feed it to the parent; R_AGAIN: feed it to the
 * (new) top frame. */
enum { R_REJECT, R_OK, R_POP, R_AGAIN };

/* Frame kinds and phases. */
enum { F_VALUE, F_OBJ, F_ARR, F_STR, F_NUM, F_LIT, F_ENUM, F_CALLS, F_RAW };
enum { O_FIRST, O_KEY, O_COLON, O_AFTER, O_NEXT };
enum { A_FIRST, A_AFTER, A_NEXT };
enum { S_CHAR, S_ESC, S_HEX, S_UTF8 };
enum { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };
enum { C_OPEN, C_NAME, C_ARGFIRST, C_KEY, C_ARGAFTER, C_ARGNEXT, C_CALLAFTER, C_NEXTCALL };

/* The fewest frames a value of a node needs (1 while the table is not computed yet). */
int grammar_mind_of(const grammar *g, int node);
/* The fewest frames a value of type part t of node n needs (grammar_schema.c). */
int grammar_part_depth(const grammar *g, const gnode *n, int t);
/* Does the automaton started at node accept text as one complete value? (grammar_automaton.c) */
bool grammar_node_accepts(const grammar *g, int node, const char *text, size_t len);
/* One byte from the state in to the state out; false when every stack refuses it. */
bool grammar_accept_byte(const grammar *g, const grammar_state *in, grammar_state *out, unsigned char b);
void grammar_state_copy(grammar_state *dst, const grammar_state *src);
#endif
