/* test_multipart.c — multipart/form-data bodies cut in place (src/serve/multipart.c): the boundary
 * of a Content-Type (quoted, unquoted, among other parameters, any case; missing, empty, too long,
 * a character RFC 2046 does not allow, a trailing space; another type), then forms as the OpenAI
 * SDKs, curl and browsers send them (a preamble, transport padding, a file's bytes holding CR LF
 * and "--", an empty part, repeated names, a quoted name with an escaped quote, an epilogue), and
 * the refusals: no delimiter, no close delimiter, a part without Content-Disposition: form-data or
 * without a name, headers over the bound or not ended, too many header lines or parts, a folded
 * header, a Content-Transfer-Encoding that is not binary, a name longer than its field, a body cut
 * anywhere (every prefix of a good form is refused or parsed within it). */
#include "serve/multipart.h"
#include "test.h"

#include <stdbool.h>
#include <string.h>

static char msg[200];

static int parse(const char *body, size_t n, const char *b, mp_form *f) {
    msg[0] = 0;
    return mp_parse((const uint8_t *)body, n, b, f, msg, sizeof msg);
}

static void test_boundary(void) {
    char b[MP_MAX_BOUNDARY + 1];
    CHECK(mp_boundary("multipart/form-data; boundary=abc", b, sizeof b, msg, sizeof msg) == 0 && !strcmp(b, "abc"),
          "plain: %s", b);
    CHECK(mp_boundary("Multipart/Form-Data;charset=utf-8; BOUNDARY=\"a b'()+_,-./:=?\"", b, sizeof b, msg,
                      sizeof msg) == 0 &&
              !strcmp(b, "a b'()+_,-./:=?"),
          "quoted, other parameters, any case: %s", b);
    CHECK(mp_boundary("multipart/form-data; x=\"a;b\"; boundary=----WebKitFormBoundaryXyZ", b, sizeof b, msg,
                      sizeof msg) == 0 &&
              !strcmp(b, "----WebKitFormBoundaryXyZ"),
          "a quoted ';' in another parameter");
    CHECK(mp_boundary("application/json", b, sizeof b, msg, sizeof msg) == 1, "another type");
    CHECK(mp_boundary("multipart/form-datax; boundary=a", b, sizeof b, msg, sizeof msg) == 1, "a longer type name");
    CHECK(mp_boundary(NULL, b, sizeof b, msg, sizeof msg) == 1, "no type");
    CHECK(mp_boundary("multipart/form-data", b, sizeof b, msg, sizeof msg) == -1 && strstr(msg, "no boundary"),
          "no boundary: %s", msg);
    CHECK(mp_boundary("multipart/form-data; boundary=", b, sizeof b, msg, sizeof msg) == -1, "empty boundary");
    CHECK(mp_boundary("multipart/form-data; boundary=\"a b \"", b, sizeof b, msg, sizeof msg) == -1,
          "a trailing space");
    CHECK(mp_boundary("multipart/form-data; boundary=a<b", b, sizeof b, msg, sizeof msg) == -1, "'<' is not a bchar");
    CHECK(mp_boundary("multipart/form-data; boundary=\"abc", b, sizeof b, msg, sizeof msg) == -1, "unended quote");
    CHECK(mp_boundary("multipart/form-data; boundary=a; boundary=b", b, sizeof b, msg, sizeof msg) == -1, "twice");
    char ct[200], longb[80];
    memset(longb, 'x', 71);
    longb[71] = 0;
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%s", longb);
    CHECK(mp_boundary(ct, b, sizeof b, msg, sizeof msg) == -1, "71 characters");
    longb[70] = 0;
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%s", longb);
    CHECK(mp_boundary(ct, b, sizeof b, msg, sizeof msg) == 0 && strlen(b) == 70, "70 characters");
}

/* A form as the SDKs send one: a file holding CR LF and "--" runs, and text fields. */
static const char FORM[] = "preamble to skip\r\n"
                           "--XYZ  \r\n" /* transport padding after the delimiter */
                           "Content-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
                           "Content-Type: audio/wav\r\n"
                           "\r\n"
                           "RIFF\r\n--XY\r\n-XYZ--\r\n"
                           "\r\n--XYZ\r\n"
                           "content-disposition: form-data; name=model\r\n"
                           "\r\n"
                           "whisper-1"
                           "\r\n--XYZ\r\n"
                           "Content-Disposition: form-data; name=\"a\\\"b\"\r\n"
                           "\r\n"
                           "\r\n--XYZ\r\n"
                           "Content-Disposition: form-data; name=\"include[]\"\r\n\r\nlogprobs"
                           "\r\n--XYZ\r\n"
                           "Content-Disposition: form-data; name=\"include[]\"\r\n\r\nx"
                           "\r\n--XYZ--\r\nepilogue";

static void test_forms(void) {
    mp_form f;
    CHECK(parse(FORM, sizeof FORM - 1, "XYZ", &f) == 0 && f.n == 5, "the form: %s (%d parts)", msg, f.n);
    const mp_part *p = mp_find(&f, "file");
    CHECK(p && p->n == 20 && !memcmp(p->data, "RIFF\r\n--XY\r\n-XYZ--\r\n", 20) && !strcmp(p->filename, "a.wav") &&
              p->has_filename && !strcmp(p->type, "audio/wav"),
          "the file's bytes, name and type");
    p = mp_find(&f, "model");
    CHECK(p && p->n == 9 && !memcmp(p->data, "whisper-1", 9) && !p->has_filename && !p->type[0], "a token name");
    p = mp_find(&f, "a\"b");
    CHECK(p && p->n == 0, "an escaped quote in a name, an empty value");
    CHECK(mp_find(&f, "include[]") == &f.part[3] && f.part[4].n == 1, "a repeated name: the first found, both kept");
    CHECK(!mp_find(&f, "nope"), "absent");
    static const char START[] = "--b\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n--b--";
    CHECK(parse(START, sizeof START - 1, "b", &f) == 0 && f.n == 1 && f.part[0].n == 1, "the delimiter first");
    static const char NOHEAD[] = "--b\r\n\r\n1\r\n--b--";
    CHECK(parse(NOHEAD, sizeof NOHEAD - 1, "b", &f) == -1 && strstr(msg, "no Content-Disposition"), "no headers");
    static const char EMPTY[] = "--b--\r\n";
    CHECK(parse(EMPTY, sizeof EMPTY - 1, "b", &f) == 0 && f.n == 0, "no parts");
}

static void test_refusals(void) {
    mp_form f;
    static const struct {
        const char *body, *why;
    } bad[] = {
        {"no delimiter at all", "no multipart boundary"},
        {"--b\r\nContent-Disposition: form-data; name=x\r\n\r\n1", "not ended by a boundary"},
        {"--b\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n--c--", "not ended by a boundary"},
        {"--b\r\nContent-Disposition: attachment; name=x\r\n\r\n1\r\n--b--", "not form-data"},
        {"--b\r\nContent-Disposition: form-data\r\n\r\n1\r\n--b--", "no Content-Disposition"},
        {"--b\r\nContent-Type: text/plain\r\n\r\n1\r\n--b--", "no Content-Disposition"},
        {"--b\r\nContent-Disposition: form-data; name=x\r\n x: folded\r\n\r\n1\r\n--b--", "folded"},
        {"--b\r\nContent-Disposition: form-data; name=x\r\nnocolon\r\n\r\n1\r\n--b--", "without a name"},
        {"--b\r\nContent-Disposition: form-data; name=x\r\nContent-Transfer-Encoding: base64\r\n\r\n1\r\n--b--",
         "Content-Transfer-Encoding"},
        {"--b\r\nContent-Disposition: form-data; name=\"x\r\n\r\n1\r\n--b--", "malformed"},
        {"--bx\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n--b--", "not ended by CRLF"},
        {"--b\nContent-Disposition: form-data; name=x\n\n1\n--b--", "not ended by CRLF"},
        {"--b\r\nContent-Disposition: form-data; name=x", "headers are longer"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(parse(bad[i].body, strlen(bad[i].body), "b", &f) == -1 && strstr(msg, bad[i].why), "bad %zu: %s", i, msg);
    /* bounds: a name over its field, too many header lines, headers over the bound, too many parts */
    static char big[200000];
    char name[MP_NAME_CAP + 8];
    memset(name, 'n', MP_NAME_CAP);
    name[MP_NAME_CAP] = 0;
    int n = snprintf(big, sizeof big, "--b\r\nContent-Disposition: form-data; name=%s\r\n\r\n1\r\n--b--", name);
    CHECK(parse(big, (size_t)n, "b", &f) == -1 && strstr(msg, "too long"), "a long name: %s", msg);
    n = snprintf(big, sizeof big, "--b\r\nContent-Disposition: form-data; name=x\r\n");
    for (int k = 0; k < MP_MAX_HEADER_LINES; k++) n += snprintf(big + n, sizeof big - (size_t)n, "X-A: 1\r\n");
    n += snprintf(big + n, sizeof big - (size_t)n, "\r\n1\r\n--b--");
    CHECK(parse(big, (size_t)n, "b", &f) == -1 && strstr(msg, "header lines"), "header lines: %s", msg);
    n = snprintf(big, sizeof big, "--b\r\nContent-Disposition: form-data; name=x\r\nX-A: ");
    memset(big + n, 'a', MP_MAX_HEADER), n += MP_MAX_HEADER;
    n += snprintf(big + n, sizeof big - (size_t)n, "\r\n\r\n1\r\n--b--");
    CHECK(parse(big, (size_t)n, "b", &f) == -1 && strstr(msg, "longer than"), "long headers: %s", msg);
    n = 0;
    for (int k = 0; k <= MP_MAX_PARTS; k++)
        n += snprintf(big + n, sizeof big - (size_t)n, "--b\r\nContent-Disposition: form-data; name=p%d\r\n\r\n%d\r\n",
                      k, k);
    n += snprintf(big + n, sizeof big - (size_t)n, "--b--");
    CHECK(parse(big, (size_t)n, "b", &f) == -1 && strstr(msg, "more than"), "too many parts: %s", msg);
    /* every prefix of the good form: refused, or parts within the prefix */
    bool within = true;
    for (size_t len = 0; len < sizeof FORM - 1; len++) {
        char *cut = malloc(len ? len : 1);
        memcpy(cut, FORM, len);
        if (parse(cut, len, "XYZ", &f) == 0)
            for (int k = 0; k < f.n; k++)
                within &=
                    f.part[k].data >= (const uint8_t *)cut && f.part[k].data + f.part[k].n <= (uint8_t *)cut + len;
        free(cut);
    }
    CHECK(within, "every prefix: parts within it");
}

int main(void) {
    test_boundary();
    test_forms();
    test_refusals();
    TEST_MAIN_END();
}
