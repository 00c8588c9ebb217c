/* fuzz_reasoning.c — the thinking / answer splitter (src/chat/reasoning.c): the input (after two
 * control bytes: the piece size and whether the prompt opened the block) fed in pieces must give
 * exactly what it gives fed whole, within the documented output room, and never more bytes than
 * it was given. */
#include "fuzz_common.h"
#include "lfm2c.h"

#include <stdbool.h>
#include <string.h>

typedef struct acc {
    char *think, *answer;
    size_t nt, na;
} acc;

static void run(const char *text, size_t len, size_t step, bool opened, acc *a) {
    lfm2c_think t;
    lfm2c_think_init(&t, opened);
    char *th = malloc(step + LFM2C_THINK_HOLD), *an = malloc(step + LFM2C_THINK_HOLD);
    if (!th || !an) abort();
    for (size_t off = 0;;) { /* the pieces, then at the end the flush */
        size_t n = 0, nt = 0, na = 0;
        bool end = off >= len;
        if (!end) {
            n = len - off < step ? len - off : step;
            lfm2c_think_push(&t, text + off, n, th, &nt, an, &na);
        } else {
            lfm2c_think_flush(&t, th, &nt, an, &na);
        }
        if (nt > n + LFM2C_THINK_HOLD || na > n + LFM2C_THINK_HOLD) abort();
        memcpy(a->think + a->nt, th, nt);
        a->nt += nt;
        memcpy(a->answer + a->na, an, na);
        a->na += na;
        if (a->nt + a->na > len) abort();
        if (end) break;
        off += n;
    }
    free(th);
    free(an);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t step = (size_t)(data[0] % 13) + 1;
    bool opened = data[1] & 1;
    const char *text = (const char *)data + 2;
    size_t len = size - 2;
    acc a = {malloc(len + 1), malloc(len + 1), 0, 0}, b = {malloc(len + 1), malloc(len + 1), 0, 0};
    if (!a.think || !a.answer || !b.think || !b.answer) abort();
    run(text, len, step, opened, &a);
    run(text, len, len ? len : 1, opened, &b);
    if (a.nt != b.nt || a.na != b.na || memcmp(a.think, b.think, a.nt) || memcmp(a.answer, b.answer, a.na)) abort();
    free(a.think), free(a.answer), free(b.think), free(b.answer);
    return 0;
}
