/* multipart.c — multipart/form-data bodies cut into parts in place (multipart.h): the boundary
 * read from the Content-Type, then each part's delimiter line, its headers (Content-Disposition's
 * form-data name and filename, Content-Type, Content-Transfer-Encoding) and its bytes up to the
 * next delimiter. Nothing is copied but the short names; every length is checked before it is
 * used; the close delimiter must come. */
#include "serve/multipart.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include "base/os.h"

static int fail(char *msg, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *msg, size_t cap, const char *fmt, ...) {
    if (msg && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, cap, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* RFC 2046's bchars (a space only inside). */
static bool bchar(unsigned char c) { return isalnum(c) || (c && strchr("'()+_,-./:=? ", c)); }

/* A parameter value at *s (a quoted string with backslash escapes, or a token up to ';' or
 * white space) into out: its length, or -1 when it does not fit or is not ended. */
static int param_value(const char **s, char *out, size_t cap) {
    const char *p = *s;
    size_t o = 0;
    if (*p == '"') {
        for (p++; *p && *p != '"'; p++) {
            if (*p == '\\' && p[1]) p++;
            if (o + 1 >= cap || (unsigned char)*p < 0x20) return -1;
            out[o++] = *p;
        }
        if (*p != '"') return -1;
        p++;
    } else {
        for (; *p && *p != ';' && *p != ' ' && *p != '\t'; p++) {
            if (o + 1 >= cap || (unsigned char)*p < 0x20) return -1;
            out[o++] = *p;
        }
    }
    out[o] = 0;
    *s = p;
    return (int)o;
}

/* Calls fn(attr, attr_len, value) for each "; attr=value" of s; -1 on a malformed one or when fn
 * refuses. */
typedef int (*param_fn)(void *ud, const char *attr, size_t n, const char *value);
static int each_param(const char *s, param_fn fn, void *ud) {
    char value[MP_FILENAME_CAP];
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == ';') s++;
        if (!*s) return 0;
        const char *a = s;
        while (*s && *s != '=' && *s != ';' && *s != ' ' && *s != '\t') s++;
        const size_t an = (size_t)(s - a);
        while (*s == ' ' || *s == '\t') s++;
        if (*s != '=' || !an) return -1;
        s++;
        while (*s == ' ' || *s == '\t') s++;
        if (param_value(&s, value, sizeof value) < 0 || fn(ud, a, an, value)) return -1;
    }
}

static bool attr_is(const char *a, size_t n, const char *want) { return n == strlen(want) && !strncasecmp(a, want, n); }

typedef struct boundary_ud {
    char *out;
    size_t cap;
    int found;
} boundary_ud;

static int boundary_param(void *ud, const char *a, size_t n, const char *v) {
    boundary_ud *b = ud;
    if (!attr_is(a, n, "boundary")) return 0;
    if (b->found++ || strlen(v) >= b->cap) return -1;
    strcpy(b->out, v);
    return 0;
}

int mp_boundary(const char *ct, char *out, size_t cap, char *msg, size_t msg_cap) {
    static const char T[] = "multipart/form-data";
    if (!ct) return 1;
    while (*ct == ' ' || *ct == '\t') ct++;
    if (strncasecmp(ct, T, sizeof T - 1) || (ct[sizeof T - 1] && !strchr("; \t", ct[sizeof T - 1]))) return 1;
    boundary_ud b = {out, cap < MP_MAX_BOUNDARY + 1 ? cap : MP_MAX_BOUNDARY + 1, 0};
    if (!cap) return fail(msg, msg_cap, "no room for the boundary");
    out[0] = 0;
    if (each_param(ct + sizeof T - 1, boundary_param, &b) || !b.found)
        return fail(msg, msg_cap,
                    "the multipart/form-data Content-Type has %s boundary parameter (at most %d characters)",
                    b.found ? "a malformed or too long" : "no", MP_MAX_BOUNDARY);
    const size_t n = strlen(out);
    bool ok = n >= 1 && n <= MP_MAX_BOUNDARY && out[n - 1] != ' ';
    for (size_t i = 0; ok && i < n; i++) ok = bchar((unsigned char)out[i]);
    if (!ok)
        return fail(msg, msg_cap, "the multipart boundary is not 1 to %d of RFC 2046's characters", MP_MAX_BOUNDARY);
    return 0;
}

typedef struct disposition_ud {
    mp_part *p;
    int bad;
} disposition_ud;

static int disposition_param(void *ud, const char *a, size_t n, const char *v) {
    disposition_ud *d = ud;
    if (attr_is(a, n, "name")) {
        if (strlen(v) >= sizeof d->p->name) return -1;
        strcpy(d->p->name, v);
    } else if (attr_is(a, n, "filename")) {
        if (strlen(v) >= sizeof d->p->filename) return -1;
        strcpy(d->p->filename, v);
        d->p->has_filename = 1;
    }
    return 0;
}

/* One header line h[0..n) of part k into p; -1 with msg. */
static int header_line(const char *h, size_t n, mp_part *p, int k, char *msg, size_t cap) {
    char line[MP_MAX_HEADER + 1];
    memcpy(line, h, n);
    line[n] = 0;
    if (strlen(line) != n) return fail(msg, cap, "part %d: a header holds a NUL byte", k + 1);
    if (line[0] == ' ' || line[0] == '\t') return fail(msg, cap, "part %d: a folded header line", k + 1);
    char *colon = strchr(line, ':');
    if (!colon || colon == line) return fail(msg, cap, "part %d: a header line without a name and ':'", k + 1);
    *colon = 0;
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t') v++;
    size_t vn = strlen(v);
    while (vn && (v[vn - 1] == ' ' || v[vn - 1] == '\t')) v[--vn] = 0;
    if (!strcasecmp(line, "Content-Disposition")) {
        static const char FD[] = "form-data";
        if (strncasecmp(v, FD, sizeof FD - 1) || (v[sizeof FD - 1] && !strchr("; \t", v[sizeof FD - 1])))
            return fail(msg, cap, "part %d: its Content-Disposition is not form-data", k + 1);
        disposition_ud d = {p, 0};
        if (each_param(v + sizeof FD - 1, disposition_param, &d))
            return fail(msg, cap, "part %d: a malformed or too long Content-Disposition parameter", k + 1);
    } else if (!strcasecmp(line, "Content-Type")) {
        if (vn >= sizeof p->type) return fail(msg, cap, "part %d: its Content-Type is too long", k + 1);
        memcpy(p->type, v, vn + 1);
    } else if (!strcasecmp(line, "Content-Transfer-Encoding")) {
        if (strcasecmp(v, "binary") && strcasecmp(v, "8bit") && strcasecmp(v, "7bit"))
            return fail(msg, cap, "part %d: Content-Transfer-Encoding '%.40s' is not taken (binary, 8bit, 7bit)", k + 1,
                        v);
    }
    return 0;
}

/* The headers h[0..n) of part k (lines ended by CRLF, the last one's CRLF excluded). */
static int headers(const char *h, size_t n, mp_part *p, int k, char *msg, size_t cap) {
    int lines = 0;
    for (size_t at = 0; at < n;) {
        const char *e = memmem(h + at, n - at, "\r\n", 2);
        const size_t len = e ? (size_t)(e - (h + at)) : n - at;
        if (++lines > MP_MAX_HEADER_LINES)
            return fail(msg, cap, "part %d: more than %d header lines", k + 1, lines - 1);
        if (header_line(h + at, len, p, k, msg, cap)) return -1;
        at += len + 2;
    }
    if (!p->name[0]) return fail(msg, cap, "part %d has no Content-Disposition: form-data with a name", k + 1);
    return 0;
}

int mp_parse(const uint8_t *body, size_t n, const char *boundary, mp_form *form, char *msg, size_t cap) {
    char delim[MP_MAX_BOUNDARY + 5] = "\r\n--";
    const size_t bl = boundary ? strlen(boundary) : 0;
    form->n = 0;
    if (!bl || bl > MP_MAX_BOUNDARY) return fail(msg, cap, "no multipart boundary");
    memcpy(delim + 4, boundary, bl);
    const size_t dl = bl + 4; /* CRLF "--" boundary */
    const char *b = (const char *)body;
    size_t pos; /* where "--boundary" starts */
    if (n >= dl - 2 && !memcmp(b, delim + 2, dl - 2)) pos = 0;
    else {
        const char *f = n ? memmem(b, n, delim, dl) : NULL;
        if (!f) return fail(msg, cap, "the body holds no multipart boundary line");
        pos = (size_t)(f - b) + 2;
    }
    for (;;) {
        size_t p = pos + dl - 2;
        if (p + 2 <= n && b[p] == '-' && b[p + 1] == '-') return 0; /* the close delimiter */
        for (int pad = 0; p < n && (b[p] == ' ' || b[p] == '\t') && pad < 64; pad++) p++;
        if (p + 2 > n || b[p] != '\r' || b[p + 1] != '\n')
            return fail(msg, cap, "a multipart boundary line is not ended by CRLF (or the body ends there)");
        if (form->n == MP_MAX_PARTS) return fail(msg, cap, "more than %d parts", MP_MAX_PARTS);
        const size_t h = p + 2;
        size_t hn, d;
        if (h + 2 <= n && b[h] == '\r' && b[h + 1] == '\n') hn = 0, d = h + 2;
        else {
            const size_t lim = n - h < MP_MAX_HEADER + 4 ? n - h : MP_MAX_HEADER + 4;
            const char *e = memmem(b + h, lim, "\r\n\r\n", 4);
            if (!e)
                return fail(msg, cap, "part %d: its headers are longer than %d bytes or not ended", form->n + 1,
                            MP_MAX_HEADER);
            hn = (size_t)(e - (b + h)), d = hn + h + 4;
        }
        mp_part *part = &form->part[form->n];
        memset(part, 0, sizeof *part);
        if (headers(b + h, hn, part, form->n, msg, cap)) return -1;
        const char *end = d <= n ? memmem(b + d, n - d, delim, dl) : NULL;
        if (!end) return fail(msg, cap, "part %d ('%.60s') is not ended by a boundary line", form->n + 1, part->name);
        part->data = body + d;
        part->n = (size_t)(end - (b + d));
        form->n++;
        pos = (size_t)(end - b) + 2;
    }
}

const mp_part *mp_find(const mp_form *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->part[i].name, name)) return &f->part[i];
    return NULL;
}
