/* fuzz_grammar.c — schema → grammar: compile the input (up to a NUL) as a JSON schema, as an
 * OpenAI tools array when it starts with '[', as a raw-text regex after a leading '~' and as
 * '|'-separated choices after a leading '!'; then walk the automaton with the bytes after the
 * NUL, ask for the mask over a small vocabulary and for a completion at each step. */
#include "fuzz_common.h"
#include "chat/grammar.h"

#include <stdbool.h>
#include <string.h>

static grammar_vocab *vocab;
static const char *pieces[] = {"{",    "}",           "[",       "]",         "\"",       ":",    ",", " ",    "a",
                               "ab",   "\"a\"",       "1",       "-",         ".",        "e",    "0", "true", "false",
                               "null", "\\",          "\\u00e9", "é",         "\xe6\x9d", "\xb1", "(", ")",    "=",
                               "x",    "get_weather", "city",    "\"city\":", "9",        "12",   "T", "@",    "\n"};
#define N_PIECES ((int)(sizeof pieces / sizeof *pieces))

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    int lens[N_PIECES];
    for (int i = 0; i < N_PIECES; i++) lens[i] = (int)strlen(pieces[i]);
    vocab = grammar_vocab_new(pieces, lens, N_PIECES);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t n = nul ? (size_t)(nul - data) : size;
    char *src = malloc(n + 1);
    memcpy(src, data, n);
    src[n] = 0;
    char err[256];
    grammar *g;
    if (n && src[0] == '[') g = grammar_tool_calls(src, NULL, true, err, sizeof err);
    else if (n && src[0] == '~') g = grammar_from_regex(src + 1, n - 1, NULL, err, sizeof err);
    else if (n && src[0] == '!') { /* choices: the rest cut at '|' (at most 16) */ const char *c[16];
        size_t len[16];
        int k = 0;
        for (char *p = src + 1; k < 16;) {
            char *bar = strchr(p, '|');
            c[k] = p, len[k++] = bar ? (size_t)(bar - p) : strlen(p);
            if (!bar) break;
            p = bar + 1;
        }
        g = grammar_from_choices(c, len, k, NULL, err, sizeof err);
    } else g = grammar_from_schema(src, err, sizeof err);
    free(src);
    if (!g) return 0;
    grammar_state *st = malloc(sizeof *st);
    grammar_state_init(g, st);
    bool allowed[N_PIECES];
    int32_t end = N_PIECES - 1;
    const uint8_t *walk = nul ? nul + 1 : data + size;
    size_t n_walk = nul ? size - n - 1 : 0;
    char comp[512];
    for (size_t i = 0; i < n_walk && i < 256; i++) {
        grammar_allowed(g, st, vocab, &end, 1, allowed);
        grammar_completion(g, st, comp, sizeof comp);
        const char *p = pieces[walk[i] % N_PIECES];
        grammar_accept(g, st, p, strlen(p)); /* refused bytes leave the state as it was */
        grammar_complete(g, st);
    }
    free(st);
    grammar_free(g);
    return 0;
}
