/* fuzz_multipart.c — the multipart/form-data parser of the server's upload routes
 * (src/serve/multipart.c): an input holding a NUL byte is a Content-Type value (before it) and a
 * body (after it); one without is a body under "multipart/form-data; boundary=XYZ". The boundary is
 * read, the body cut, every part's slice checked to lie inside the body and each name to be a
 * NUL-terminated string of its field; the seeds are forms as the SDKs and browsers send them. */
#include "fuzz_common.h"
#include "serve/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    char ct[512] = "multipart/form-data; boundary=XYZ", b[MP_MAX_BOUNDARY + 1], msg[200];
    const uint8_t *body = data;
    size_t n = size;
    if (nul) {
        size_t k = (size_t)(nul - data) < sizeof ct - 1 ? (size_t)(nul - data) : sizeof ct - 1;
        memcpy(ct, data, k);
        ct[k] = 0;
        body = nul + 1;
        n = size - (size_t)(nul - data) - 1;
    }
    if (mp_boundary(ct, b, sizeof b, msg, sizeof msg)) return 0;
    static mp_form f;
    /* a copy of just the body's size: reading past it is an overflow ASan sees */
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy) return 0;
    memcpy(copy, body, n);
    if (mp_parse(copy, n, b, &f, msg, sizeof msg) == 0) {
        if (f.n < 0 || f.n > MP_MAX_PARTS) abort();
        for (int i = 0; i < f.n; i++) {
            const mp_part *p = &f.part[i];
            if (p->data < copy || p->data + p->n > copy + n) abort();
            if (!memchr(p->name, 0, sizeof p->name) || !memchr(p->filename, 0, sizeof p->filename) ||
                !memchr(p->type, 0, sizeof p->type) || !p->name[0])
                abort();
            if (mp_find(&f, p->name) > p) abort();
        }
    }
    free(copy);
    return 0;
}
