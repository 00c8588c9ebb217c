/* fuzz_regex.c — the pattern compiler alone (src/text/regex.c): compile the input (up to
 * a NUL) as a JSON Schema pattern under a small work budget, then walk the DFA with the bytes
 * after the NUL (each byte a code point, bytes >= 0x80 spread over the BMP and beyond), asking
 * regex_dfa_any over ranges on the way; complement the DFA and intersect it with itself and with a
 * format's DFA, the operations lookaheads and formats use. */
#include "fuzz_common.h"
#include "text/regex.h"

#include <string.h>

static uint32_t cp_of(uint8_t b) { return b < 0x80 ? b : (uint32_t)b * 4099u % 0x110000u; }

static void walk(const regex_dfa *d, const uint8_t *t, size_t n) {
    int s = 0;
    for (size_t i = 0; i < n && i < 512 && s >= 0; i++) {
        uint32_t c = cp_of(t[i]);
        (void)regex_dfa_any(d, s, c > 16 ? c - 16 : 0, c);
        s = regex_dfa_next(d, s, c);
        if (s >= d->n) abort(); /* a state out of range */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t n = nul ? (size_t)(nul - data) : size;
    const uint8_t *text = nul ? nul + 1 : data + size;
    size_t n_text = nul ? size - n - 1 : 0;
    regex_budget budget = {.left = 2000000, .cancel = NULL};
    lfm2c_error err = {0};
    regex_dfa *d = regex_compile((const char *)data, n, &err, &budget);
    if (!d) {
        if (!err.msg[0]) abort(); /* a refused pattern says why */
        return 0;
    }
    walk(d, text, n_text);
    regex_dfa *c = regex_dfa_complement(d, &budget);
    if (c) {
        walk(c, text, n_text);
        regex_dfa *p = regex_dfa_product(d, c, &budget);
        if (p) {
            walk(p, text, n_text);
            regex_dfa_free(p);
        }
        regex_dfa_free(c);
    }
    const char *fp = regex_format_pattern(n_text && text[0] % 2 ? "date" : "uuid");
    lfm2c_error ferr = {0};
    regex_dfa *f = fp ? regex_compile(fp, strlen(fp), &ferr, &budget) : NULL;
    if (f) {
        regex_dfa *p = regex_dfa_product(d, f, &budget);
        if (p) {
            walk(p, text, n_text);
            regex_dfa_free(p);
        }
        regex_dfa_free(f);
    }
    regex_dfa_free(d);
    return 0;
}
