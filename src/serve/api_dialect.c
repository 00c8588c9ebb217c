/* api_dialect.c — helpers shared by the API dialects (api_dialect.h): which deltas a JSON
 * string can carry, token texts and logprob entries (OpenAI's chat shape, which the Responses API
 * shares), writing SSE events and NDJSON lines, ids, times, text of content parts, and the
 * bounded in-memory store behind the Responses API's previous_response_id. */
#include "serve/api_dialect.h"
#include "base/buf.h"
#include "text/unicode.h"
#include "base/os.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dl_fail(dl_err *e, int status, const char *param, const char *fmt, ...) {
    e->status = status;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int dl_charge(const dl_server *s, size_t bytes, dl_err *e) {
    http_err he;
    if (!s->q || http_charge(s->q, bytes, &he)) return 0;
    return dl_fail(e, he.status, NULL, "%s", he.msg);
}

/* The sizes jansson's values take (measured as http.c's json_cost: an object ~224 B, an array
 * ~142 B, a member or item ~50-130 B, a string its bytes + ~90 B). */
size_t dl_json_bytes(json_t *v) {
    size_t n = 0, i;
    const char *k;
    json_t *x;
    if (json_is_object(v)) {
        n = 224;
        json_object_foreach(v, k, x) n += 112 + strlen(k) + dl_json_bytes(x);
    } else if (json_is_array(v)) {
        n = 142;
        json_array_foreach(v, i, x) n += 16 + dl_json_bytes(x);
    } else {
        n = json_is_string(v) ? 90 + json_string_length(v) : 64;
    }
    return n;
}

const dialect *dialect_for_url(const char *url) {
    if (!strcmp(url, "/v1/responses") || !strncmp(url, "/v1/responses/", 14) || !strcmp(url, "/responses"))
        return &dialect_responses;
    if (!strcmp(url, "/v1/messages") || !strncmp(url, "/v1/messages/", 13)) return &dialect_anthropic;
    if (!strcmp(url, "/api/generate")) return &dialect_ollama_generate;
    if (!strncmp(url, "/api/", 5)) return &dialect_ollama;
    return NULL;
}

bool dl_text_ok(const char *s, size_t n) {
    json_t *t = n ? json_stringn(s, n) : NULL; /* what jansson takes is what a delta may carry */
    json_decref(t);
    return t != NULL;
}

/* A token's bytes are valid UTF-8 on their own (a piece of a multi-byte character is not). */
static bool utf8_whole(const char *b, int n) {
    for (int i = 0; i < n;) {
        int k = utf8_valid_prefix((const uint8_t *)b + i, (size_t)(n - i));
        if (k <= 0 || (k == 1 && b[i] == 0)) return false;
        int len;
        uint32_t cp = utf8_decode_lenient((const uint8_t *)b + i, (size_t)k, &len);
        if (cp >= 0xD800 && cp <= 0xDFFF) return false; /* JSON text cannot carry a lone surrogate */
        i += k;
    }
    return true;
}

/* The text itself when its bytes are valid UTF-8, else "bytes:" and each byte as \xNN, the form
 * OpenAI uses; the exact bytes are always in the entry's "bytes" array. */
int dl_token_text(lfm2c_model *m, int32_t tok, char *b, int cap, char *text, size_t text_cap) {
    int n = lfm2c_token_to_bytes(m, tok, true, b, cap);
    n = n < 0 ? 0 : n > cap ? cap : n;
    if (utf8_whole(b, n)) {
        size_t k = (size_t)n < text_cap - 1 ? (size_t)n : text_cap - 1;
        memcpy(text, b, k);
        text[k] = 0;
    } else {
        size_t o = (size_t)snprintf(text, text_cap, "bytes:");
        for (int i = 0; i < n && o + 5 <= text_cap; i++)
            o += (size_t)snprintf(text + o, text_cap - o, "\\x%02x", (unsigned char)b[i]);
    }
    return n;
}

static json_t *token_json(lfm2c_model *m, int32_t tok, float lp) {
    char b[512], text[4 * 512 + 8];
    int n = dl_token_text(m, tok, b, (int)sizeof b, text, sizeof text);
    json_t *bytes = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(bytes, json_integer((unsigned char)b[i]));
    json_t *o = json_object();
    json_object_set_new(o, "token", json_string(text));
    json_object_set_new(o, "logprob", json_real(lp));
    json_object_set_new(o, "bytes", bytes);
    return o;
}

json_t *dl_logprobs_json(lfm2c_model *m, const sched_logprob *lp, int n) {
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        json_t *o = token_json(m, lp[i].token, lp[i].logprob);
        json_t *top = json_array();
        for (int k = 0; k < lp[i].n_top; k++)
            json_array_append_new(top, token_json(m, lp[i].top_token[k], lp[i].top_logprob[k]));
        json_object_set_new(o, "top_logprobs", top);
        json_array_append_new(arr, o);
    }
    return arr;
}

void dl_sse(dl_write w, void *wctx, const char *event, json_t *data) {
    char *s = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    if (!s) return;
    if (event) {
        w(wctx, "event: ", 7);
        w(wctx, event, strlen(event));
        w(wctx, "\n", 1);
    }
    w(wctx, "data: ", 6);
    w(wctx, s, strlen(s));
    w(wctx, "\n\n", 2);
    free(s);
}

void dl_ndjson(dl_write w, void *wctx, json_t *data) {
    char *s = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    if (!s) return;
    w(wctx, s, strlen(s));
    w(wctx, "\n", 1);
    free(s);
}

/* n bytes from the system's CSPRNG (base/os.h: getrandom or /dev/urandom, BCryptGenRandom);
 * false if none answers. */
static bool random_bytes(void *buf, size_t n) { return os_random(buf, n); }

void dl_random_id(pthread_mutex_t *mu, uint64_t *counter, time_t started, const char *prefix, char *out, size_t cap) {
    uint64_t x[2];
    if (!random_bytes(x, sizeof x)) { /* no random source: unique, not secret (never seen on Linux) */
        pthread_mutex_lock(mu);
        x[0] = ++*counter * 0x9E3779B97F4A7C15ull ^ (uint64_t)started * 0xBF58476D1CE4E5B9ull;
        pthread_mutex_unlock(mu);
        x[1] = x[0] * 0x94D049BB133111EBull;
    }
    snprintf(out, cap, "%s%016llx%016llx", prefix, (unsigned long long)x[0], (unsigned long long)x[1]);
}

void dl_make_id(const dl_server *s, const char *prefix, char *out, size_t cap) {
    dl_random_id(s->id_mu, s->id_counter, s->started, prefix, out, cap);
}

void dl_copy_text(char *out, size_t cap, const char *s) {
    size_t n = strlen(s);
    if (n >= cap)
        for (n = cap - 1; n && ((unsigned char)s[n] & 0xC0) == 0x80;) n--; /* s[n], the first left out, starts one */
    memcpy(out, s, n);
    out[n] = 0;
}

/* One Go duration unit ("h", "m", "s", "ms", "us", "µs", "ns") -> its seconds; 0 when none. */
static double unit_seconds(const char **s) {
    static const struct {
        const char *name;
        double sec;
    } units[] = {{"ns", 1e-9}, {"us", 1e-6}, {"\xc2\xb5s", 1e-6}, {"ms", 1e-3}, {"h", 3600}, {"m", 60}, {"s", 1}};
    for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
        size_t n = strlen(units[i].name);
        if (!strncmp(*s, units[i].name, n)) {
            *s += n;
            return units[i].sec;
        }
    }
    return 0;
}

bool dl_parse_duration(const char *s, double *seconds) {
    if (!s || !*s) return false;
    const char *p = s;
    bool neg = *p == '-';
    if (*p == '-' || *p == '+') p++;
    if (!isdigit((unsigned char)*p) && *p != '.') return false;
    char *end;
    double plain = strtod(p, &end);
    if (end != p && !*end && isfinite(plain)) { /* a bare number: seconds */
        *seconds = neg ? -1 : plain;
        return true;
    }
    double total = 0;
    while (*p) {
        double v = strtod(p, &end);
        if (end == p || !isfinite(v) || v < 0) return false;
        p = end;
        double u = unit_seconds(&p);
        if (u == 0) return false;
        total += v * u;
    }
    *seconds = neg && total > 0 ? -1 : total;
    return true;
}

void dl_iso_time(time_t t, char *out, size_t cap) {
    struct tm tm;
    os_gmtime(t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void dl_buf_add(dl_buf *b, const char *s, size_t n) {
    char *p = lfm2c_grow(b->p, &b->cap, b->n, n + 1, 1, 256);
    if (!p) return;
    b->p = p;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static bool type_in(const char *type, const char *types) {
    if (!types) return true;
    if (!type) return false;
    size_t n = strlen(type);
    for (const char *p = types; *p;) {
        size_t m = strcspn(p, ",");
        if (m == n && !strncmp(p, type, n)) return true;
        p += m + (p[m] == ',');
    }
    return false;
}

int dl_text_of(json_t *v, const char *types, dl_buf *out) {
    dl_buf_add(out, "", 0);
    if (json_is_string(v)) {
        dl_buf_add(out, json_string_value(v), json_string_length(v));
        return 0;
    }
    if (!json_is_array(v)) return -1;
    size_t i;
    json_t *part;
    json_array_foreach(v, i, part) {
        json_t *t = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(t) ||
            !type_in(json_string_value(json_object_get(part, "type")), types))
            return -1;
        dl_buf_add(out, json_string_value(t), json_string_length(t));
    }
    return 0;
}

/* ---- the Responses store ---------------------------------------------------------------------- */

typedef struct resp_entry {
    char id[64], owner[DL_OWNER_LEN];
    json_t *messages;
    json_t *extra; /* a response's object and input items (NULL for an output item) */
    size_t bytes;
} resp_entry;

struct resp_store {
    pthread_mutex_t mu;
    resp_entry *e; /* oldest first */
    int n, max;
    size_t bytes, max_bytes;
};

resp_store *resp_store_new(int max_entries, size_t max_bytes) {
    resp_store *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    if (!(st->e = calloc((size_t)max_entries, sizeof *st->e))) {
        free(st);
        return NULL;
    }
    pthread_mutex_init(&st->mu, NULL);
    st->max = max_entries;
    st->max_bytes = max_bytes;
    return st;
}

void resp_store_free(resp_store *st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++) {
        json_decref(st->e[i].messages);
        json_decref(st->e[i].extra);
    }
    pthread_mutex_destroy(&st->mu);
    free(st->e);
    free(st);
}

static void drop_at(resp_store *st, int i) {
    st->bytes -= st->e[i].bytes;
    json_decref(st->e[i].messages);
    json_decref(st->e[i].extra);
    memmove(st->e + i, st->e + i + 1, (size_t)(st->n - i - 1) * sizeof *st->e);
    st->n--;
}

/* The size a value is counted for (its compact JSON text); 0 for none. */
static size_t json_bytes(json_t *v) {
    if (!v) return 0;
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    size_t n = s ? strlen(s) : 0;
    free(s);
    return n;
}

void resp_store_put_response(resp_store *st, const char *owner, const char *id, json_t *messages, json_t *extra) {
    if (!st) return;
    size_t bytes = json_bytes(messages), more = json_bytes(extra);
    if (!bytes || (extra && !more) || bytes + more > st->max_bytes) return;
    bytes += more;
    json_t *copy = json_deep_copy(messages), *ecopy = extra ? json_deep_copy(extra) : NULL;
    if (!copy || (extra && !ecopy)) {
        json_decref(copy);
        json_decref(ecopy);
        return;
    }
    pthread_mutex_lock(&st->mu);
    while (st->n && (st->n >= st->max || st->bytes + bytes > st->max_bytes)) drop_at(st, 0);
    resp_entry *e = &st->e[st->n++];
    snprintf(e->id, sizeof e->id, "%s", id);
    snprintf(e->owner, sizeof e->owner, "%s", owner ? owner : "");
    e->messages = copy;
    e->extra = ecopy;
    e->bytes = bytes;
    st->bytes += bytes;
    pthread_mutex_unlock(&st->mu);
}

void resp_store_put(resp_store *st, const char *owner, const char *id, json_t *messages) {
    resp_store_put_response(st, owner, id, messages, NULL);
}

/* The newest entry of id, where owner stored it (another key's is not found either); -1 none.
 * Called with the lock held. */
static int find_entry(resp_store *st, const char *owner, const char *id) {
    for (int i = st->n - 1; i >= 0; i--)
        if (!strcmp(st->e[i].id, id)) return strcmp(st->e[i].owner, owner ? owner : "") ? -1 : i;
    return -1;
}

json_t *resp_store_get(resp_store *st, const char *owner, const char *id) {
    if (!st) return NULL;
    pthread_mutex_lock(&st->mu);
    int i = find_entry(st, owner, id);
    json_t *out = i >= 0 ? json_deep_copy(st->e[i].messages) : NULL;
    pthread_mutex_unlock(&st->mu);
    return out;
}

json_t *resp_store_ref(resp_store *st, const char *owner, const char *id, bool *answer) {
    if (!st) return NULL;
    pthread_mutex_lock(&st->mu);
    int i = find_entry(st, owner, id);
    json_t *out = NULL, *m = i >= 0 ? st->e[i].messages : NULL;
    if (m) { /* one message is copied, never a whole conversation */
        *answer = json_is_array(m);
        out = json_deep_copy(*answer ? json_array_get(m, json_array_size(m) - 1) : m);
    }
    pthread_mutex_unlock(&st->mu);
    return out;
}

json_t *resp_store_get_extra(resp_store *st, const char *owner, const char *id) {
    if (!st) return NULL;
    pthread_mutex_lock(&st->mu);
    int i = find_entry(st, owner, id);
    json_t *out = i >= 0 && st->e[i].extra ? json_deep_copy(st->e[i].extra) : NULL;
    pthread_mutex_unlock(&st->mu);
    return out;
}

bool resp_store_del(resp_store *st, const char *owner, const char *id) {
    if (!st) return false;
    pthread_mutex_lock(&st->mu);
    int i = find_entry(st, owner, id);
    if (i >= 0) drop_at(st, i);
    pthread_mutex_unlock(&st->mu);
    return i >= 0;
}
