/* multipart.h — a multipart/form-data body (RFC 7578 over RFC 2046's multipart syntax) cut into
 * its parts where it lies: the transport has read the whole body within --max-body and charged
 * it to the request's memory (http.c, HTTP_MULTIPART routes), so a part is a slice of it, never
 * a copy. What a hostile body can make it do is bounded: at most MP_MAX_PARTS parts, each part's
 * headers at most MP_MAX_HEADER bytes in MP_MAX_HEADER_LINES lines, names and file names of
 * fixed sizes (longer: refused), one pass over the body per delimiter search (memmem). Every
 * refusal says what was wrong. Internal to the server (the audio routes, api_audio.c); its
 * fuzzer is tests/fuzz/fuzz_multipart.c. */
#ifndef LFM2C_MULTIPART_H
#define LFM2C_MULTIPART_H
#include <stddef.h>
#include <stdint.h>

enum {
    MP_MAX_PARTS = 64,
    MP_MAX_HEADER = 8192,     /* bytes of one part's headers */
    MP_MAX_HEADER_LINES = 16, /* header lines of one part */
    MP_MAX_BOUNDARY = 70,     /* RFC 2046 */
    MP_NAME_CAP = 128,        /* a field's name, with its NUL */
    MP_FILENAME_CAP = 256,    /* a file's name, with its NUL */
    MP_TYPE_CAP = 128         /* a part's Content-Type, with its NUL */
};

typedef struct mp_part {
    char name[MP_NAME_CAP];         /* Content-Disposition: form-data; name="..." */
    char filename[MP_FILENAME_CAP]; /* its filename="..." ("" when it has none) */
    char type[MP_TYPE_CAP];         /* its Content-Type ("" when it has none) */
    int has_filename;               /* a filename parameter was there (even an empty one) */
    const uint8_t *data;            /* the part's bytes, inside the body */
    size_t n;
} mp_part;

typedef struct mp_form {
    mp_part part[MP_MAX_PARTS];
    int n;
} mp_form;

/* The boundary of a Content-Type value "multipart/form-data; boundary=B" (B quoted or not, 1..70
 * of RFC 2046's characters, parameters in any order, names without case) into out (cap >
 * MP_MAX_BOUNDARY): 0; 1 when the type is not multipart/form-data at all; -1 when it is but its
 * boundary is missing or malformed (msg says which). */
int mp_boundary(const char *content_type, char *out, size_t cap, char *msg, size_t msg_cap);
/* body[0..n) cut at its delimiters ("--B" at the start or after CRLF; the close delimiter
 * "--B--" ends it; a preamble before the first and an epilogue after the last are skipped): 0
 * with form filled, or -1 with msg (no delimiter, no close delimiter, a part without
 * Content-Disposition: form-data and a name, headers too long or not ended, too many parts, a
 * Content-Transfer-Encoding other than 7bit / 8bit / binary). */
int mp_parse(const uint8_t *body, size_t n, const char *boundary, mp_form *form, char *msg, size_t msg_cap);
/* The first part named name, or NULL. */
const mp_part *mp_find(const mp_form *f, const char *name);
#endif
