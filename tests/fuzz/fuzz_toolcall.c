/* fuzz_toolcall.c — the LFM2 tool-call parser, one-shot and streaming (the input fed in pieces
 * whose size comes from its first byte). */
#include "fuzz_common.h"
#include "chat/toolcall.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t step = (size_t)(data[0] % 17) + 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    toolcall_result a = {0}, b = {0};
    bool ok_a = toolcall_parse(text, len, &a);
    if (ok_a) {
        char *j = toolcall_result_to_json(&a);
        free(j);
    }
    toolcall_stream *s = toolcall_stream_new();
    if (!s) return 0;
    for (size_t off = 0; off < len; off += step) {
        size_t n = 0;
        toolcall_stream_feed(s, text + off, len - off < step ? len - off : step, &n);
    }
    const char *tail = NULL;
    size_t tail_len = 0;
    bool ok_b = toolcall_stream_finish(s, &b, &tail, &tail_len);
    (void)ok_b;
    toolcall_result_free(&a);
    toolcall_result_free(&b);
    toolcall_stream_free(s);
    return 0;
}
