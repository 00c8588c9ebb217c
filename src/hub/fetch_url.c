/* fetch_url.c — one bounded HTTP(S) GET into memory (hub.h, lfm2c_hub_fetch_url): what the server
 * does for an image URL when `serve --allow-image-urls` lets it. The bounds are the caller's: the
 * bytes (a Content-Length over them stops the transfer before the body; a body that passes them
 * is cut there), the connect and total timeouts, at most 3 redirects, and http / https only, for
 * the first request and for every redirect (no file://, ftp://, ...). No cookies, no credentials
 * forwarded to another host, no decompression (a compressed body would be a bomb). The messages
 * never repeat the URL (it may carry credentials). Built without libcurl, it says so. */
#include "hub/hub.h"
#include "base/error.h"
#include "base/os.h"

#include <stdlib.h>
#include <string.h>

#ifdef LFM2C_HAVE_HUB
#include <curl/curl.h>
#include <pthread.h>

typedef struct {
    uint8_t *buf;
    size_t n, cap, max;
    bool over, oom;
} url_body;

static size_t body_write(char *p, size_t sz, size_t nm, void *ud) {
    url_body *b = ud;
    const size_t k = sz * nm;
    if (k > b->max - b->n) {
        b->over = true;
        return 0; /* stops the transfer: CURLE_WRITE_ERROR */
    }
    if (b->n + k > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->n + k) cap *= 2;
        if (cap > b->max) cap = b->max;
        uint8_t *nb = realloc(b->buf, cap);
        if (!nb) {
            b->oom = true;
            return 0;
        }
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->n, p, k);
    b->n += k;
    return k;
}

static pthread_once_t url_curl_once = PTHREAD_ONCE_INIT;
static void url_curl_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

/* The options of one bounded GET of url into b. */
static void url_opts(CURL *c, const char *url, url_body *b, const lfm2c_url_bounds *bd) {
    curl_easy_setopt(c, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85: the string forms */
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, (long)bd->max_redirects);
    curl_easy_setopt(c, CURLOPT_UNRESTRICTED_AUTH, 0L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(bd->connect_s * 1000));
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(bd->timeout_s * 1000));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)bd->max_bytes);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "lfm2c");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
}

/* The error of a transfer that gave no body: false with err set. */
static bool url_judge(CURLcode rc, long code, const url_body *b, const lfm2c_url_bounds *bd, lfm2c_error *err) {
    if (b->over || rc == CURLE_FILESIZE_EXCEEDED)
        return lfm2c_set_error(err, LFM2C_ETOOLARGE, "the image URL's body is over the limit (%zu bytes)",
                               bd->max_bytes),
               false;
    if (b->oom) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), false;
    if (rc == CURLE_UNSUPPORTED_PROTOCOL)
        return lfm2c_set_error(err, LFM2C_EINVAL, "only http and https image URLs are fetched (also after a redirect)"),
               false;
    if (rc == CURLE_TOO_MANY_REDIRECTS)
        return lfm2c_set_error(err, LFM2C_EIO, "the image URL redirects more than %d times", bd->max_redirects), false;
    if (rc == CURLE_OPERATION_TIMEDOUT)
        return lfm2c_set_error(err, LFM2C_EIO, "fetching the image URL took over %d s", bd->timeout_s), false;
    if (rc != CURLE_OK)
        return lfm2c_set_error(err, LFM2C_EIO, "cannot fetch the image URL: %s", curl_easy_strerror(rc)), false;
    if (code < 200 || code >= 300)
        return lfm2c_set_error(err, LFM2C_EIO, "the image URL answered HTTP %ld", code), false;
    return true;
}

uint8_t *lfm2c_hub_fetch_url(const char *url, const lfm2c_url_bounds *bd, size_t *n, lfm2c_error *err) {
    if (strncasecmp(url, "http://", 7) && strncasecmp(url, "https://", 8)) {
        lfm2c_set_error(err, LFM2C_EINVAL, "only http and https image URLs are fetched");
        return NULL;
    }
    pthread_once(&url_curl_once, url_curl_init);
    CURL *c = curl_easy_init();
    if (!c) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return NULL;
    }
    url_body b = {.max = bd->max_bytes};
    url_opts(c, url, &b, bd);
    const CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    if (!url_judge(rc, code, &b, bd, err)) {
        free(b.buf);
        return NULL;
    }
    *n = b.n;
    if (!b.buf) b.buf = malloc(1); /* an empty body: not an image, the decoder says so */
    if (!b.buf) lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
    return b.buf;
}
#else
uint8_t *lfm2c_hub_fetch_url(const char *url, const lfm2c_url_bounds *bd, size_t *n, lfm2c_error *err) {
    (void)url, (void)bd, (void)n;
    lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "this lfm2c was built without libcurl: image URLs cannot be fetched");
    return NULL;
}
#endif
