/* hub.c — `pull`: fetch GGUF files of a Hugging Face repository into the Hugging Face cache.
 *
 * The Hub's documented HTTP API: GET /api/models/{repo}/revision/{rev} gives the commit ("sha"),
 * GET /api/models/{repo}/tree/{commit}?recursive=true the files with their sizes and, for LFS
 * files, lfs.oid = the sha256 of the content; GET /{repo}/resolve/{commit}/{file} serves the file
 * (usually a redirect to a CDN). Files go to blobs/<sha256>.incomplete first (the name
 * huggingface_hub uses, so a partial download by either tool resumes with a Range request), are
 * verified against the sha256 and renamed to blobs/<sha256>; snapshots/<commit>/<file> is a
 * relative symlink to the blob and refs/<revision> holds the commit, as huggingface_hub does.
 * A sha256 mismatch deletes the partial file (its bytes cannot be trusted for a resume). */
#include "hub/hub.h"
#include "base/error.h"
#include "base/sha256.h"
#include "base/clock.h"
#include "base/os.h"

#include <curl/curl.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------- small helpers ---------- */

static int mkdirs(const char *path) {
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (os_mkdir(tmp) && errno != EEXIST) return -1;
        *p = '/';
    }
    if (os_mkdir(tmp) && errno != EEXIST) return -1;
    return 0;
}

static void sleep_ms(int ms) { os_sleep_s(ms / 1000.0); }

static bool env_true(const char *name) {
    const char *e = getenv(name);
    return e && (!strcmp(e, "1") || !strcasecmp(e, "true") || !strcasecmp(e, "yes") || !strcasecmp(e, "on"));
}

/* a repo name: ORG/NAME, each [A-Za-z0-9._-]+, no "..", no leading '.' or '-' */
static bool valid_repo(const char *r) {
    const char *slash = strchr(r, '/');
    if (!slash || slash == r || !slash[1] || strchr(slash + 1, '/') || strstr(r, "..")) return false;
    for (const char *q = r; *q; q++)
        if (!(isalnum((unsigned char)*q) || *q == '.' || *q == '_' || *q == '-' || *q == '/')) return false;
    return r[0] != '.' && r[0] != '-' && slash[1] != '.' && slash[1] != '-';
}

/* a file path inside the repo: no "..", no absolute path, printable without spaces */
static bool valid_file(const char *f) {
    if (!*f || f[0] == '/' || strlen(f) > 512) return false;
    for (const char *q = f; *q; q++)
        if ((unsigned char)*q <= ' ' || *q == '\\' || *q == '?' || *q == '#' || *q == '%') return false;
    for (const char *q = f; (q = strstr(q, "..")); q += 2)
        if ((q == f || q[-1] == '/') && (q[2] == 0 || q[2] == '/')) return false;
    return true;
}

/* split part: "...-00002-of-00003.gguf" -> part 2 of 3 (and the prefix length before it) */
static bool split_part(const char *name, int *part, int *count, size_t *prefix) {
    size_t n = strlen(name);
    if (n < 5 + 15 || strcasecmp(name + n - 5, ".gguf")) return false;
    const char *s = name + n - 5 - 15;
    int a, b;
    char tail[8];
    if (s[0] != '-' || sscanf(s, "-%5d-of-%5d%7s", &a, &b, tail) != 3 || strcasecmp(tail, ".gguf")) return false;
    if (!isdigit((unsigned char)s[1]) || !isdigit((unsigned char)s[11])) return false;
    *part = a;
    *count = b;
    *prefix = (size_t)(s - name);
    return a >= 1 && b >= 1 && a <= b;
}

/* ---------- HTTP ---------- */

typedef struct {
    char *data;
    size_t len, cap, limit;
} membuf;

static size_t mem_write(char *p, size_t sz, size_t nm, void *ud) {
    membuf *b = ud;
    size_t n = sz * nm;
    if (b->len + n > b->limit) return 0;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *nd = realloc(b->data, cap);
        if (!nd) return 0;
        b->data = nd;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return n;
}

/* Connect timeout (seconds). The first request (the revision's commit) gets a short one, and a
 * Hub that cannot be reached there (no name resolution, no connection) is not retried: without a
 * network the pull fails at once naming --offline, or, when the model is cached, the cached copy
 * is used at once (that check also gets no retries at all and a whole-request limit). */
#define HUB_CONNECT_S 30L
#define HUB_FIRST_CONNECT_S 3L
#define HUB_CACHED_TIMEOUT_S 10L

typedef struct {
    const lfm2c_hub_params *p;
    const char *endpoint, *token;
    int retries, backoff_ms;
    long connect_s, timeout_s; /* connect timeout; whole-request limit (0: none) */
    bool first;                /* the first request: an unreachable Hub is not retried */
    bool unreached;            /* set when a request failed that way */
} hub_ctx;

static struct curl_slist *auth_headers(const hub_ctx *h) {
    struct curl_slist *l = curl_slist_append(NULL, "User-Agent: lfm2c");
    if (h->token && *h->token) {
        char *a = hub_strdup_printf("Authorization: Bearer %s", h->token);
        if (a) l = curl_slist_append(l, a);
        free(a);
    }
    return l;
}

static int cancelled(const hub_ctx *h) { return h->p && h->p->cancel && *h->p->cancel; }

static int xfer_cancel(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
    return cancelled(ud) ? 1 : 0;
}

static void common_opts(CURL *c, const hub_ctx *h, struct curl_slist *hdr) {
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, h->connect_s > 0 ? h->connect_s : HUB_CONNECT_S);
    if (h->timeout_s > 0) curl_easy_setopt(c, CURLOPT_TIMEOUT, h->timeout_s);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L); /* a stalled transfer is a network error */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 0L);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, xfer_cancel);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)h);
}

static bool status_error(long code, const char *what, lfm2c_error *err, const hub_ctx *h) {
    if (code == 401 || code == 403) {
        lfm2c_set_error(err, LFM2C_HUB_E_AUTH,
                        "%s: HTTP %ld: %s (a gated or private repository, or one that does not exist: check the name; "
                        "for a gated one accept its terms on the Hub and set HF_TOKEN or --hf-token)",
                        what, code, h->token && *h->token ? "the token was refused" : "authentication required");
        return true;
    }
    if (code == 404) {
        lfm2c_set_error(err, LFM2C_HUB_E_NOT_FOUND, "%s: not found (HTTP 404)", what);
        return true;
    }
    if (code >= 400 && code < 500) {
        lfm2c_set_error(err, LFM2C_HUB_E_NET, "%s: HTTP %ld", what, code);
        return true;
    }
    return false;
}

/* Whether a transfer failed before reaching the Hub: no name resolution, no connection, or the
 * connect timeout (no response at all). */
static bool unreachable(CURLcode rc, long code) {
    return rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_RESOLVE_PROXY || rc == CURLE_COULDNT_CONNECT ||
           (rc == CURLE_OPERATION_TIMEDOUT && code == 0);
}

/* GET url into memory (JSON answers: at most 64 MiB), retrying network errors and 5xx (on the
 * first request, not a Hub that cannot be reached). */
static char *http_get(hub_ctx *h, const char *url, const char *what, lfm2c_error *err) {
    for (int attempt = 0;; attempt++) {
        CURL *c = curl_easy_init();
        if (!c) {
            lfm2c_set_error(err, LFM2C_HUB_E_NET, "cannot start libcurl");
            return NULL;
        }
        struct curl_slist *hdr = auth_headers(h);
        membuf b = {NULL, 0, 0, 64u << 20};
        common_opts(c, h, hdr);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        CURLcode rc = curl_easy_perform(c);
        long code = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        curl_slist_free_all(hdr);
        curl_easy_cleanup(c);
        if (rc == CURLE_ABORTED_BY_CALLBACK || cancelled(h)) {
            free(b.data);
            lfm2c_set_error(err, LFM2C_HUB_E_CANCEL, "%s: interrupted", what);
            return NULL;
        }
        if (rc == CURLE_OK && code >= 200 && code < 300) {
            if (!b.data) b.data = strdup("");
            return b.data;
        }
        free(b.data);
        if (rc == CURLE_OK && status_error(code, what, err, h)) return NULL;
        if (h->first && unreachable(rc, code)) {
            h->unreached = true;
            lfm2c_set_error(err, LFM2C_HUB_E_NET, "%s: the Hub cannot be reached: %s (%s)", what,
                            curl_easy_strerror(rc), url);
            return NULL;
        }
        if (attempt >= h->retries) {
            if (rc != CURLE_OK) lfm2c_set_error(err, LFM2C_HUB_E_NET, "%s: %s (%s)", what, curl_easy_strerror(rc), url);
            else lfm2c_set_error(err, LFM2C_HUB_E_NET, "%s: HTTP %ld (%s)", what, code, url);
            return NULL;
        }
        sleep_ms(h->backoff_ms << (attempt < 10 ? attempt : 10));
    }
}

/* ---------- the download of one file ---------- */

typedef struct {
    FILE *f;
    sha256_ctx sha;
    uint64_t done, total, resumed;
    const char *name;
    const hub_ctx *h;
    int write_errno;
    long status; /* status of the final response, known at its first body byte */
    CURL *curl;
    bool overflow; /* the body is longer than the size the API announced */
    double last;   /* lfm2c_now_s() at the last progress call */
} dl_state;

static size_t file_write(char *ptr, size_t sz, size_t nm, void *ud) {
    dl_state *d = ud;
    size_t n = sz * nm;
    long code = 0;
    curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200 && code != 206) return n;           /* an error body: ignored, status handled later */
    if (d->status == 0 && code == 200 && d->done > 0) { /* Range not honoured: start over */
        if (os_ftruncate(d->f, 0) || fseek(d->f, 0, SEEK_SET)) {
            d->write_errno = errno;
            return 0;
        }
        sha256_init(&d->sha);
        d->done = d->resumed = 0;
    }
    d->status = code;
    if (n > d->total - d->done) {
        d->overflow = true;
        return 0;
    } /* never write past the announced size */
    if (fwrite(ptr, 1, n, d->f) != n || fflush(d->f)) {
        d->write_errno = errno ? errno : EIO;
        return 0;
    }
    sha256_update(&d->sha, ptr, n);
    d->done += n;
    if (d->h->p && d->h->p->progress) {
        double now = lfm2c_now_s();
        if (now - d->last >= 0.1) {
            d->last = now;
            d->h->p->progress(d->h->p->progress_user, d->name, d->done, d->total, d->resumed, false);
        }
    }
    return n;
}

/* hashes the partial file already on disk (its bytes count as downloaded) */
static int hash_existing(FILE *f, dl_state *d) {
    if (fseek(f, 0, SEEK_SET)) return -1;
    char *buf = malloc(1 << 20);
    if (!buf) return -1;
    size_t r;
    while ((r = fread(buf, 1, 1 << 20, f)) > 0) {
        sha256_update(&d->sha, buf, r);
        d->done += r;
        if (cancelled(d->h)) break;
    }
    free(buf);
    int bad = ferror(f);
    return bad || fseek(f, 0, SEEK_END) ? -1 : 0;
}

enum { DL_DONE, DL_FAIL, DL_RETRY, DL_AGAIN }; /* published, given up, retry after a pause, try again now */

/* One transfer into part (appended: resuming after what it holds, whose bytes are hashed first):
 * the transfer's outcome in *cr / *code, or DL_FAIL / DL_AGAIN (part was longer than the file:
 * emptied) before any transfer. */
static int fetch_once(const hub_ctx *h, const char *url, const char *name, uint64_t size, const char *part, dl_state *d,
                      CURLcode *cr, long *code, lfm2c_error *err) {
    FILE *f = os_fopen(part, "a+b");
    if (!f) return lfm2c_set_error(err, LFM2C_HUB_E_IO, "cannot write '%s': %s", part, strerror(errno)), DL_FAIL;
    *d = (dl_state){.f = f, .total = size, .name = name, .h = h};
    sha256_init(&d->sha);
    d->last = lfm2c_now_s();
    int rc = DL_DONE;
    if (hash_existing(f, d))
        rc = DL_FAIL, lfm2c_set_error(err, LFM2C_HUB_E_IO, "cannot read '%s': %s", part, strerror(errno));
    else if (cancelled(h)) rc = DL_FAIL, lfm2c_set_error(err, LFM2C_HUB_E_CANCEL, "%s: interrupted", name);
    else if (d->done > size) { /* longer than the file: cannot be a prefix of it */
        rc = os_ftruncate(f, 0) == 0 ? DL_AGAIN : DL_FAIL;
        if (rc == DL_FAIL) lfm2c_set_error(err, LFM2C_HUB_E_IO, "cannot truncate '%s': %s", part, strerror(errno));
    }
    if (rc != DL_DONE) {
        fclose(f);
        return rc;
    }
    d->resumed = d->done;
    *cr = CURLE_OK, *code = 0;
    if (d->done < size) {
        CURL *c = curl_easy_init();
        struct curl_slist *hdr = auth_headers(h);
        d->curl = c;
        common_opts(c, h, hdr);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, file_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, d);
        if (d->done) curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)d->done);
        *cr = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, code);
        curl_slist_free_all(hdr);
        curl_easy_cleanup(c);
    }
    if (fflush(f) && !d->write_errno) d->write_errno = errno;
    if (fclose(f) && !d->write_errno) d->write_errno = errno;
    return DL_DONE;
}

/* A whole file in part: its sha256 checked, then published as blob. */
static int publish(const hub_ctx *h, dl_state *d, const char *name, const char *sha_expect, uint64_t size,
                   const char *part, const char *blob, lfm2c_error *err) {
    char hex[65];
    sha256_final_hex(&d->sha, hex);
    if (sha_expect && strcmp(hex, sha_expect)) {
        os_remove(part);
        lfm2c_set_error(err, LFM2C_HUB_E_VERIFY,
                        "%s: sha256 mismatch (expected %s, got %s); the download was deleted, nothing was published",
                        name, sha_expect, hex);
        return DL_FAIL;
    }
    if (os_rename(part, blob))
        return lfm2c_set_error(err, LFM2C_HUB_E_IO, "cannot rename '%s': %s", part, strerror(errno)), DL_FAIL;
    if (h->p && h->p->progress) h->p->progress(h->p->progress_user, name, d->done, size, d->resumed, true);
    return DL_DONE;
}

/* What a transfer's outcome means: published, given up (interrupted, too long, a write error,
 * an HTTP error), or to be retried (a network error or a short body). */
static int judge(const hub_ctx *h, dl_state *d, CURLcode cr, long code, const char *name, const char *sha_expect,
                 uint64_t size, const char *part, const char *blob, lfm2c_error *err) {
    if (cr == CURLE_ABORTED_BY_CALLBACK || cancelled(h))
        return lfm2c_set_error(err, LFM2C_HUB_E_CANCEL,
                               "%s: interrupted; %llu of %llu bytes kept in '%s', the next pull resumes", name,
                               (unsigned long long)d->done, (unsigned long long)size, part),
               DL_FAIL;
    if (d->overflow) {
        os_remove(part);
        lfm2c_set_error(err, LFM2C_HUB_E_VERIFY,
                        "%s: the server sent more than the %llu bytes the API announced; the download was deleted",
                        name, (unsigned long long)size);
        return DL_FAIL;
    }
    if (d->write_errno)
        return lfm2c_set_error(err, LFM2C_HUB_E_IO,
                               "cannot write '%s': %s (%llu of %llu bytes written; kept for resume)", part,
                               strerror(d->write_errno), (unsigned long long)d->done, (unsigned long long)size),
               DL_FAIL;
    if (cr == CURLE_OK && d->done < size && code != 0 && code != 200 && code != 206 && code != 416 &&
        status_error(code, name, err, h))
        return DL_FAIL;
    if (cr == CURLE_OK && d->done == size) return publish(h, d, name, sha_expect, size, part, blob, err);
    if (cr == CURLE_OK && code == 416 && os_truncate(part, 0)) /* the server thinks we are past the end: start over */
        return lfm2c_set_error(err, LFM2C_HUB_E_IO, "cannot truncate '%s': %s", part, strerror(errno)), DL_FAIL;
    return DL_RETRY;
}

/* url into blob through blob.incomplete (resumed where an earlier pull stopped), retried with a
 * doubling pause, verified against sha_expect: 0, or -1 with the error set. */
static int download_blob(const hub_ctx *h, const char *url, const char *name, const char *sha_expect, uint64_t size,
                         const char *blob, lfm2c_error *err) {
    char *part = hub_strdup_printf("%s.incomplete", blob);
    if (!part) {
        lfm2c_set_error(err, LFM2C_HUB_E_IO, "out of memory");
        return -1;
    }
    int rc = DL_FAIL;
    for (int attempt = 0;; attempt++) {
        dl_state d;
        CURLcode cr = CURLE_OK;
        long code = 0;
        rc = fetch_once(h, url, name, size, part, &d, &cr, &code, err);
        if (rc == DL_AGAIN) continue;
        if (rc == DL_DONE) rc = judge(h, &d, cr, code, name, sha_expect, size, part, blob, err);
        if (rc != DL_RETRY) break;
        const char *why = cr != CURLE_OK ? curl_easy_strerror(cr) : "short transfer";
        const int pause_ms = h->backoff_ms << (attempt < 10 ? attempt : 10);
        if (attempt < h->retries && h->p && h->p->notice) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s: %s after %llu of %llu bytes; retry %d of %d in %.2f s, resuming", name, why,
                     (unsigned long long)d.done, (unsigned long long)size, attempt + 1, h->retries, pause_ms / 1000.0);
            h->p->notice(h->p->progress_user, msg);
        }
        if (attempt >= h->retries) {
            lfm2c_set_error(err, LFM2C_HUB_E_NET,
                            "%s: %s after %d attempts (%llu of %llu bytes kept in '%s'; run the pull again to resume)",
                            name, why, attempt + 1, (unsigned long long)d.done, (unsigned long long)size, part);
            rc = DL_FAIL;
            break;
        }
        sleep_ms(pause_ms);
    }
    free(part);
    return rc == DL_DONE ? 0 : -1;
}

/* ---------- resolution ---------- */

typedef struct {
    char *path, *sha;
    uint64_t size;
} repo_file;

static const char *const QUANT_ORDER[] = {"Q4_K_M", "Q4_K_S", "Q4_K", "Q4_0",   "IQ4_XS", "IQ4_NL", "Q4_1",   "Q5_K_M",
                                          "Q5_K_S", "Q5_0",   "Q5_1", "Q3_K_L", "Q3_K_M", "Q6_K",   "Q3_K_S", "Q8_0",
                                          "IQ3_M",  "IQ3_XS", "Q2_K", "F16",    "BF16",   "F32",    NULL};

static int quant_rank(const char *q) {
    for (int i = 0; QUANT_ORDER[i]; i++)
        if (!strcmp(q, QUANT_ORDER[i])) return i;
    return 1000;
}

static bool is_model_gguf(const char *path) {
    size_t n = strlen(path);
    if (n < 5 || strcasecmp(path + n - 5, ".gguf")) return false;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    /* projectors and an audio model's speech-output files are not models */
    return strncasecmp(base, "mmproj", 6) != 0 && !lfm2c_hub_is_companion(base);
}

/* picks the files of the requested quant/file among the repo's GGUFs; fills idx[] (sorted parts) */
static int choose(repo_file *fs, int nf, const char *quant, const char *file, int *idx, const char *repo,
                  lfm2c_error *err) {
    int pick = -1;
    if (file) {
        for (int i = 0; i < nf; i++)
            if (!strcmp(fs[i].path, file)) pick = i;
        if (pick < 0) {
            lfm2c_set_error(err, LFM2C_HUB_E_NOT_FOUND, "%s has no file '%s'", repo, file);
            return -1;
        }
    } else {
        char want[32];
        snprintf(want, sizeof want, "%s", quant ? quant : "Q4_K_M");
        for (char *q = want; *q; q++) *q = (char)toupper((unsigned char)*q);
        int best = -1, best_rank = 1 << 30;
        for (int i = 0; i < nf; i++) {
            char q[32];
            if (!is_model_gguf(fs[i].path) || !lfm2c_hub_quant_of(fs[i].path, q, sizeof q)) continue;
            int part, cnt;
            size_t pre;
            if (split_part(fs[i].path, &part, &cnt, &pre) && part != 1) continue;
            if (!strcmp(q, want)) {
                pick = i;
                break;
            }
            int r = quant_rank(q);
            if (!quant && r < best_rank) {
                best = i;
                best_rank = r;
            }
        }
        if (pick < 0 && !quant) pick = best;
        if (pick < 0) {
            char list[1024] = "";
            size_t used = 0;
            for (int i = 0; i < nf; i++) {
                char q[32];
                int part, cnt;
                size_t pre;
                if (!is_model_gguf(fs[i].path) || !lfm2c_hub_quant_of(fs[i].path, q, sizeof q)) continue;
                if (split_part(fs[i].path, &part, &cnt, &pre) && part != 1) continue;
                if (used + strlen(q) + 3 < sizeof list)
                    used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "", q);
            }
            if (used) lfm2c_set_error(err, LFM2C_HUB_E_NOT_FOUND, "%s has no %s GGUF; it has: %s", repo, want, list);
            else lfm2c_set_error(err, LFM2C_HUB_E_NOT_FOUND, "%s has no GGUF model files", repo);
            return -1;
        }
    }
    int part, cnt;
    size_t pre;
    if (!split_part(fs[pick].path, &part, &cnt, &pre)) {
        idx[0] = pick;
        return 1;
    }
    if (cnt > 256) {
        lfm2c_set_error(err, LFM2C_HUB_E_ARG, "%s: %d split parts is too many", fs[pick].path, cnt);
        return -1;
    }
    for (int k = 1; k <= cnt; k++) {
        idx[k - 1] = -1;
        for (int i = 0; i < nf; i++) {
            int p2, c2;
            size_t pre2;
            if (split_part(fs[i].path, &p2, &c2, &pre2) && p2 == k && c2 == cnt && pre2 == pre &&
                !strncmp(fs[i].path, fs[pick].path, pre))
                idx[k - 1] = i;
        }
        if (idx[k - 1] < 0) {
            lfm2c_set_error(err, LFM2C_HUB_E_NOT_FOUND, "%s: part %d of %d of '%.*s' is missing", repo, k, cnt,
                            (int)pre, fs[pick].path);
            return -1;
        }
    }
    return cnt;
}

/* The repository's mmproj beside fs[model] (lfm2c_hub_mmproj_pick): its index, or -1. */
static int choose_mmproj(const repo_file *fs, int nf, int model) {
    const char **names = calloc(nf ? (size_t)nf : 1, sizeof *names);
    if (!names) return -1;
    for (int i = 0; i < nf; i++) names[i] = fs[i].path;
    const int k = lfm2c_hub_mmproj_pick(names, nf, fs[model].path);
    free(names);
    return k;
}

static void free_files(repo_file *fs, int nf) {
    for (int i = 0; i < nf; i++) {
        free(fs[i].path);
        free(fs[i].sha);
    }
    free(fs);
}

static bool is_hex64(const char *s) {
    if (!s || strlen(s) != 64) return false;
    for (; *s; s++)
        if (!isxdigit((unsigned char)*s)) return false;
    return true;
}

static bool is_commit(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n < 7 || n > 64) return false;
    for (; *s; s++)
        if (!isxdigit((unsigned char)*s)) return false;
    return true;
}

/* the tree of `commit` as repo_file[] (files only) */
static repo_file *list_tree(hub_ctx *h, const char *repo, const char *commit, int *nf, lfm2c_error *err) {
    char *url = hub_strdup_printf("%s/api/models/%s/tree/%s?recursive=true", h->endpoint, repo, commit);
    char *body = url ? http_get(h, url, repo, err) : NULL;
    free(url);
    if (!body) return NULL;
    json_error_t je;
    json_t *arr = json_loads(body, 0, &je);
    free(body);
    if (!json_is_array(arr)) {
        json_decref(arr);
        lfm2c_set_error(err, LFM2C_HUB_E_NET, "%s: the file list is not a JSON array", repo);
        return NULL;
    }
    size_t n = json_array_size(arr);
    repo_file *fs = calloc(n ? n : 1, sizeof *fs);
    int k = 0;
    for (size_t i = 0; fs && i < n; i++) {
        json_t *e = json_array_get(arr, i);
        const char *type = json_string_value(json_object_get(e, "type"));
        const char *path = json_string_value(json_object_get(e, "path"));
        if (!type || strcmp(type, "file") || !path || !valid_file(path)) continue;
        json_t *lfs = json_object_get(e, "lfs");
        const char *sha = json_string_value(json_object_get(lfs, "oid"));
        json_t *sz = json_object_get(lfs, "size");
        if (!json_is_integer(sz)) sz = json_object_get(e, "size");
        if (!json_is_integer(sz) || json_integer_value(sz) < 0) continue;
        fs[k].path = strdup(path);
        fs[k].sha = is_hex64(sha) ? strdup(sha) : NULL;
        fs[k].size = (uint64_t)json_integer_value(sz);
        k++;
    }
    json_decref(arr);
    if (!fs) {
        lfm2c_set_error(err, LFM2C_HUB_E_IO, "out of memory");
        return NULL;
    }
    *nf = k;
    return fs;
}

static int write_text(const char *path, const char *text) {
    char *tmp = hub_strdup_printf("%s.tmp%d", path, (int)os_pid());
    if (!tmp) return -1;
    FILE *f = os_fopen(tmp, "w");
    int bad = !f || fputs(text, f) < 0;
    if (f && fclose(f)) bad = 1;
    if (bad || os_rename(tmp, path)) {
        os_remove(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

/* snapshots/<commit>/<file> -> ../../blobs/<sha> (one more ../ per directory level of file) */
static int link_snapshot(const char *repo_dir, const char *commit, const char *file, const char *sha,
                         lfm2c_error *err) {
    char *dst = hub_strdup_printf("%s/snapshots/%s/%s", repo_dir, commit, file);
    if (!dst) return -1;
    char *slash = strrchr(dst, '/');
    *slash = 0;
    int ok = mkdirs(dst) == 0;
    *slash = '/';
    char target[PATH_MAX] = "../../";
    for (const char *q = file; (q = strchr(q, '/')); q++) strncat(target, "../", sizeof target - strlen(target) - 1);
    strncat(target, "blobs/", sizeof target - strlen(target) - 1);
    strncat(target, sha, sizeof target - strlen(target) - 1);
    char *tmp = hub_strdup_printf("%s.lnk%d", dst, (int)os_pid());
    if (ok && tmp) {
        os_remove(tmp);
        ok = os_symlink(target, tmp) == 0 && os_rename(tmp, dst) == 0;
    }
    if (!ok) {
        lfm2c_set_error(err, LFM2C_HUB_E_IO, "cannot link '%s': %s", dst, strerror(errno));
        if (tmp) os_remove(tmp);
    }
    free(tmp);
    free(dst);
    return ok ? 0 : -1;
}

/* offline: the cached snapshot of refs/<revision> (or the revision itself when it is a commit) */
static char *resolve_offline(const char *repo_dir, const char *revision, const char *repo, const char *quant,
                             const char *file, lfm2c_error *err) {
    char commit[128] = "";
    char *refp = hub_strdup_printf("%s/refs/%s", repo_dir, revision);
    FILE *f = refp ? os_fopen(refp, "r") : NULL;
    free(refp);
    if (f) {
        if (!fgets(commit, sizeof commit, f)) commit[0] = 0;
        fclose(f);
        commit[strcspn(commit, "\r\n")] = 0;
    } else if (is_commit(revision)) {
        snprintf(commit, sizeof commit, "%s", revision);
    }
    if (!commit[0] || !is_commit(commit)) {
        lfm2c_set_error(err, LFM2C_HUB_E_OFFLINE, "%s is not in the cache (%s) and we are offline", repo, repo_dir);
        return NULL;
    }
    char *snap = hub_strdup_printf("%s/snapshots/%s", repo_dir, commit);
    os_dir *d = snap ? os_opendir(snap) : NULL;
    if (!d) {
        lfm2c_set_error(err, LFM2C_HUB_E_OFFLINE, "%s: snapshot %s is not in the cache and we are offline", repo,
                        commit);
        free(snap);
        return NULL;
    }
    /* the snapshot's top-level files stand in for the tree */
    int nf = 0, cap = 16;
    repo_file *fs = calloc((size_t)cap, sizeof *fs);
    const char *de;
    while (fs && (de = os_readdir(d))) {
        if (de[0] == '.') continue;
        char *full = hub_strdup_printf("%s/%s", snap, de);
        os_stat_t st;
        bool ok = full && os_stat(full, &st) == 0 && st.is_file;
        free(full);
        if (!ok) continue;
        if (nf == cap) {
            repo_file *nfs = realloc(fs, (size_t)cap * 2 * sizeof *fs);
            if (!nfs) break;
            fs = nfs;
            cap *= 2;
        }
        fs[nf].path = strdup(de);
        fs[nf].sha = NULL;
        fs[nf].size = (uint64_t)st.size;
        nf++;
    }
    os_closedir(d);
    char *out = NULL;
    int idx[256];
    if (fs) {
        int n = choose(fs, nf, quant, file, idx, repo, err);
        if (n > 0) out = hub_strdup_printf("%s/%s", snap, fs[idx[0]].path);
        else if (err) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%.400s (offline: looked only in the cache)", err->msg);
            lfm2c_set_error(err, LFM2C_HUB_E_OFFLINE, "%s", msg);
        }
        free_files(fs, nf);
    }
    free(snap);
    return out;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

/* ORG/NAME[:QUANT] (also after "hf.co/" or "huggingface.co/", ollama's spelling) into repo and
 * quant ("" for none): false with the error set when it is not one. */
static bool parse_spec(const char *spec, char repo[256], char quant[32], lfm2c_error *err) {
    if (!spec || !*spec) {
        lfm2c_set_error(err, LFM2C_HUB_E_ARG, "no repository given (ORG/NAME[:QUANT])");
        return false;
    }
    if (!strncmp(spec, "hf.co/", 6)) spec += 6;
    else if (!strncmp(spec, "huggingface.co/", 15)) spec += 15;
    const char *colon = strchr(spec, ':');
    size_t rlen = colon ? (size_t)(colon - spec) : strlen(spec);
    if (rlen >= 256) {
        lfm2c_set_error(err, LFM2C_HUB_E_ARG, "repository name too long");
        return false;
    }
    memcpy(repo, spec, rlen);
    repo[rlen] = 0;
    quant[0] = 0;
    if (!valid_repo(repo)) {
        lfm2c_set_error(err, LFM2C_HUB_E_ARG,
                        "'%s' is not a repository name (ORG/NAME[:QUANT], e.g. LiquidAI/LFM2-1.2B-GGUF:Q4_K_M)", spec);
        return false;
    }
    if (!colon) return true;
    if (!colon[1] || strlen(colon + 1) >= 32) {
        lfm2c_set_error(err, LFM2C_HUB_E_ARG, "bad quant in '%s'", spec);
        return false;
    }
    for (const char *q = colon + 1; *q; q++)
        if (!isalnum((unsigned char)*q) && *q != '_') {
            lfm2c_set_error(err, LFM2C_HUB_E_ARG, "bad quant '%s'", colon + 1);
            return false;
        }
    snprintf(quant, 32, "%s", colon + 1);
    return true;
}

/* The revision's commit id, from the Hub's model info: false with the error set. */
static bool fetch_commit(hub_ctx *h, const char *repo, const char *revision, char commit[128], lfm2c_error *err) {
    char *url = hub_strdup_printf("%s/api/models/%s/revision/%s", h->endpoint, repo, revision);
    char *body = url ? http_get(h, url, repo, err) : NULL;
    free(url);
    if (!body) return false;
    json_t *info = json_loads(body, 0, NULL);
    free(body);
    const char *sha = json_string_value(json_object_get(info, "sha"));
    const bool ok = is_commit(sha);
    if (ok) snprintf(commit, 128, "%s", sha);
    else lfm2c_set_error(err, LFM2C_HUB_E_NET, "%s: the model info has no commit id", repo);
    json_decref(info);
    return ok;
}

/* Whether the n files fs[idx[..]] may be downloaded within p's bounds: the bytes still to fetch
 * (the announced sizes, less what the cache has of each: a whole blob, a partial download) at
 * most max_bytes, and min_free bytes left free on the cache's file system after them: 0, or -1
 * with the error set (LFM2C_HUB_E_SPACE). The download never writes past the announced size. */
static int space_check(const lfm2c_hub_params *p, const char *repo_dir, const char *repo, const repo_file *fs,
                       const int *idx, int n, lfm2c_error *err) {
    if (!p->max_bytes && !p->min_free) return 0;
    uint64_t need = 0;
    for (int k = 0; k < n; k++) {
        const repo_file *rf = &fs[idx[k]];
        char *blob = rf->sha ? hub_strdup_printf("%s/blobs/%s", repo_dir, rf->sha) : NULL;
        char *part = blob ? hub_strdup_printf("%s.incomplete", blob) : NULL;
        os_stat_t st;
        uint64_t have = 0;
        if (blob && !os_stat(blob, &st) && st.size == rf->size) have = rf->size;
        else if (part && !os_stat(part, &st) && st.size <= rf->size) have = st.size;
        free(blob);
        free(part);
        need = rf->size - have > UINT64_MAX - need ? UINT64_MAX : need + (rf->size - have); /* sizes from the Hub */
    }
    if (p->max_bytes && need > p->max_bytes)
        return lfm2c_set_error(err, LFM2C_HUB_E_SPACE, "%s: the download is %llu bytes, over the %llu a pull may write",
                               repo, (unsigned long long)need, (unsigned long long)p->max_bytes),
               -1;
    const int64_t free_bytes = p->min_free ? os_disk_free(repo_dir) : -1;
    if (free_bytes < 0) return 0; /* not asked, or the system cannot say */
    const uint64_t avail = (uint64_t)free_bytes;
    if (need <= avail && avail - need >= p->min_free) return 0;
    return lfm2c_set_error(err, LFM2C_HUB_E_SPACE,
                           "%s: the download of %llu bytes would leave less than %llu bytes free on the cache's disk "
                           "(%llu free)",
                           repo, (unsigned long long)need, (unsigned long long)p->min_free, (unsigned long long)avail),
           -1;
}

/* The n files fs[idx[..]] of commit into the cache's blobs (skipped where a blob of the right
 * size is there), each linked into the snapshot, then the revision's ref: 0, or -1 with the error set. */
static int fetch_files(hub_ctx *h, const char *repo_dir, const char *repo, const char *commit, const char *revision,
                       const repo_file *fs, const int *idx, int n, lfm2c_error *err) {
    const lfm2c_hub_params *p = h->p;
    char *blobs = hub_strdup_printf("%s/blobs", repo_dir), *refs = hub_strdup_printf("%s/refs", repo_dir);
    int mk = blobs && refs && !mkdirs(blobs) && !mkdirs(refs) ? 0 : -1;
    if (mk) lfm2c_set_error(err, LFM2C_HUB_E_IO, "cannot create '%s': %s", repo_dir, strerror(errno));
    free(blobs);
    free(refs);
    if (mk || space_check(p, repo_dir, repo, fs, idx, n, err)) return -1;
    for (int k = 0; k < n; k++) {
        const repo_file *rf = &fs[idx[k]];
        if (!rf->sha) {
            lfm2c_set_error(err, LFM2C_HUB_E_VERIFY, "%s: the Hub gives no sha256 for '%s' (not an LFS file)", repo,
                            rf->path);
            return -1;
        }
        char *blob = hub_strdup_printf("%s/blobs/%s", repo_dir, rf->sha);
        os_stat_t st;
        int rc = 0;
        if (!blob) rc = -1;
        else if (os_stat(blob, &st) == 0 && (uint64_t)st.size == rf->size) {
            if (p->progress) p->progress(p->progress_user, rf->path, rf->size, rf->size, rf->size, true);
        } else {
            char *furl = hub_strdup_printf("%s/%s/resolve/%s/%s", h->endpoint, repo, commit, rf->path);
            rc = furl ? download_blob(h, furl, rf->path, rf->sha, rf->size, blob, err) : -1;
            free(furl);
        }
        if (rc == 0) rc = link_snapshot(repo_dir, commit, rf->path, rf->sha, err);
        free(blob);
        if (rc) return -1;
    }
    char *ref = hub_strdup_printf("%s/refs/%s", repo_dir, revision);
    const int rc = !ref || write_text(ref, commit) ? -1 : 0;
    if (rc) lfm2c_set_error(err, LFM2C_HUB_E_IO, "cannot write '%s': %s", ref ? ref : "refs", strerror(errno));
    free(ref);
    return rc;
}

/* Where the Hub cannot be reached and the cache holds the file: the cached copy, said through
 * p->notice, the error cleared. */
static char *fall_back_to_cache(const lfm2c_hub_params *p, char *cached, lfm2c_error *err) {
    if (p->notice) {
        char msg[700];
        snprintf(msg, sizeof msg,
                 "the Hub cannot be reached (%.300s): using the cached copy; "
                 "--offline (or HF_HUB_OFFLINE=1) skips this check",
                 err->msg);
        p->notice(p->progress_user, msg);
    }
    err->code = 0;
    err->msg[0] = 0;
    return cached;
}

/* The first request found no Hub and the cache has not the model: the message says how to run
 * without a network. */
static void no_network(lfm2c_error *err) {
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg,
             "%.300s; the model is not in the cache. Without a network, --offline (or HF_HUB_OFFLINE=1) uses "
             "only the cache: pull it where there is one, or give a local file with -m",
             err->msg);
    snprintf(err->msg, sizeof err->msg, "%s", msg);
}

char *lfm2c_hub_pull(const char *spec, const char *file, const lfm2c_hub_params *p, lfm2c_error *err) {
    lfm2c_hub_params defaults = {0};
    if (!p) p = &defaults;
    char repo[256], quant_buf[32];
    if (!parse_spec(spec, repo, quant_buf, err)) return NULL;
    const char *quant = quant_buf[0] ? quant_buf : NULL;
    if (file && !valid_file(file)) {
        lfm2c_set_error(err, LFM2C_HUB_E_ARG, "bad file name '%s'", file);
        return NULL;
    }
    const char *revision = p->revision ? p->revision : "main";
    if (!valid_file(revision) || strchr(revision, '/')) {
        lfm2c_set_error(err, LFM2C_HUB_E_ARG, "bad revision '%s'", revision);
        return NULL;
    }

    char *cache = lfm2c_hub_cache_dir(p);
    char *repo_slash = strchr(repo, '/');
    char *repo_dir =
        cache ? hub_strdup_printf("%s/models--%.*s--%s", cache, (int)(repo_slash - repo), repo, repo_slash + 1) : NULL;
    free(cache);
    if (!repo_dir) {
        lfm2c_set_error(err, LFM2C_HUB_E_IO, "out of memory");
        return NULL;
    }
    char *out = NULL;
    if (p->mmproj) *p->mmproj = NULL;
    if (p->offline || env_true("HF_HUB_OFFLINE")) {
        out = resolve_offline(repo_dir, revision, repo, quant, file, err);
        if (out && p->mmproj) *p->mmproj = lfm2c_hub_mmproj_beside(out);
        free(repo_dir);
        return out;
    }

    pthread_once(&curl_once, curl_init_once);
    hub_ctx h = {.p = p};
    const char *ep = p->endpoint ? p->endpoint : getenv("HF_ENDPOINT");
    char *endpoint = strdup(ep && *ep ? ep : "https://huggingface.co");
    if (!endpoint) {
        free(repo_dir);
        return NULL;
    }
    for (size_t n = strlen(endpoint); n && endpoint[n - 1] == '/'; n--) endpoint[n - 1] = 0;
    h.endpoint = endpoint;
    h.token = p->token ? p->token : getenv("HF_TOKEN");
    h.backoff_ms = p->backoff_ms > 0 ? p->backoff_ms : 1000;
    const int retries = p->max_retries < 0 ? 0 : p->max_retries ? p->max_retries : 5;

    repo_file *fs = NULL;
    int nf = 0, idx[257], n = 0; /* the parts, and the mmproj */
    char commit[128];
    /* what the cache already holds: the Hub is only asked whether there is newer, briefly */
    char *cached = resolve_offline(repo_dir, revision, repo, quant, file, NULL);
    h.first = true, h.connect_s = HUB_FIRST_CONNECT_S;
    if (cached) h.retries = 0, h.timeout_s = HUB_CACHED_TIMEOUT_S;
    else h.retries = retries;
    const bool got = fetch_commit(&h, repo, revision, commit, err);
    h.first = false, h.retries = retries, h.connect_s = h.timeout_s = 0;
    if (!got && !cached && h.unreached) no_network(err);
    int mm = -1;
    if (got && (fs = list_tree(&h, repo, commit, &nf, err)) && (n = choose(fs, nf, quant, file, idx, repo, err)) > 0) {
        if (p->mmproj && (mm = choose_mmproj(fs, nf, idx[0])) == idx[0]) mm = -1; /* -hff named the mmproj */
        if (mm >= 0) idx[n++] = mm;                                               /* fetched with the model */
        if (!fetch_files(&h, repo_dir, repo, commit, revision, fs, idx, n, err))
            out = hub_strdup_printf("%s/snapshots/%s/%s", repo_dir, commit, fs[idx[0]].path);
    }
    const bool fetched = out != NULL;
    if (!out && cached && err && err->code == LFM2C_HUB_E_NET) out = fall_back_to_cache(p, cached, err), cached = NULL;
    if (out && p->mmproj)
        *p->mmproj = fetched && mm >= 0 ? hub_strdup_printf("%s/snapshots/%s/%s", repo_dir, commit, fs[mm].path)
                     : fetched          ? NULL
                                        : lfm2c_hub_mmproj_beside(out);
    free(cached);
    free_files(fs, nf);
    free(endpoint);
    free(repo_dir);
    return out;
}
