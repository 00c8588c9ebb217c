/* fetch_url.c — one bounded HTTP(S) GET into memory (hub.h, lfm2c_hub_fetch_url): what the server
 * does for an image URL when `serve --allow-image-urls` lets it. The bounds are the caller's: the
 * bytes (a Content-Length over them stops the transfer before the body; a body that passes them
 * is cut there), the connect and total timeouts, at most 3 redirects, and http / https only, for
 * the first request and for every redirect (no file://, ftp://, ...). No cookies, no credentials
 * forwarded to another host, no decompression (a compressed body would be a bomb), no proxy. The
 * messages never repeat the URL (it may carry credentials). Built without libcurl, it says so.
 *
 * Where it connects: every connection of the transfer (each redirect's too) is opened by our
 * socket callback with the address libcurl resolved and is about to connect to, so the address
 * judged is the address used (a name that answers a public address to one lookup and 127.0.0.1
 * to the next cannot slip between a check and the connect). An address that is not public
 * unicast (lfm2c_hub_addr_special: loopback, private, link-local with the cloud metadata
 * address, CGNAT, multicast, reserved, and their IPv6 and IPv4-in-IPv6 forms) is refused unless
 * the bounds' allow_private names its network (or "all"). No proxy is used: through one, the
 * connected address would be the proxy's. */
#include "hub/hub.h"
#include "base/error.h"
#include "base/os.h"
#include "base/os_net.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* ---- which addresses are public ---------------------------------------------------------------- */

/* The special-purpose IPv4 blocks (IANA's registry, RFC 6890 and after): none is a public
 * server's address. */
static const struct {
    uint32_t net;
    int bits;
    const char *what;
} V4_SPECIAL[] = {
    {0x00000000u, 8, "unspecified (0.0.0.0/8)"},
    {0x0A000000u, 8, "private (10.0.0.0/8)"},
    {0x64400000u, 10, "shared address space (CGNAT, 100.64.0.0/10)"},
    {0x7F000000u, 8, "loopback (127.0.0.0/8)"},
    {0xA9FE0000u, 16, "link-local (169.254.0.0/16, the cloud metadata address among them)"},
    {0xAC100000u, 12, "private (172.16.0.0/12)"},
    {0xC0000000u, 24, "reserved (192.0.0.0/24)"},
    {0xC0000200u, 24, "documentation (192.0.2.0/24)"},
    {0xC0586300u, 24, "reserved (192.88.99.0/24, 6to4 relays)"},
    {0xC0A80000u, 16, "private (192.168.0.0/16)"},
    {0xC6120000u, 15, "benchmarking (198.18.0.0/15)"},
    {0xC6336400u, 24, "documentation (198.51.100.0/24)"},
    {0xCB007100u, 24, "documentation (203.0.113.0/24)"},
    {0xE0000000u, 4, "multicast (224.0.0.0/4)"},
    {0xF0000000u, 4, "reserved (240.0.0.0/4, broadcast)"},
};

static uint32_t load_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static const char *v4_special(uint32_t a) {
    for (size_t i = 0; i < sizeof V4_SPECIAL / sizeof *V4_SPECIAL; i++)
        if ((a ^ V4_SPECIAL[i].net) >> (32 - V4_SPECIAL[i].bits) == 0) return V4_SPECIAL[i].what;
    return NULL;
}

/* Do the first `bits` bits of a and p agree? */
static bool prefix_is(const uint8_t *a, const uint8_t *p, int bits) {
    int k = bits / 8;
    if (memcmp(a, p, (size_t)k)) return false;
    return bits % 8 == 0 || ((a[k] ^ p[k]) >> (8 - bits % 8)) == 0;
}

static const char *v6_special(const uint8_t a[16]) {
    static const uint8_t zero[16];
    static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b}, nat64_local[6] = {0x00, 0x64, 0xff, 0x9b, 0x00, 0x01};
    static const uint8_t doc[4] = {0x20, 0x01, 0x0d, 0xb8}, doc2[3] = {0x3f, 0xff, 0x00};
    if (!memcmp(a, zero, 12)) { /* ::, ::1, ::a.b.c.d (IPv4-compatible, deprecated) */
        const uint32_t v = load_be32(a + 12);
        return v == 0 ? "unspecified (::)" : v == 1 ? "loopback (::1)" : "reserved (IPv4-compatible ::/96)";
    }
    if (!memcmp(a, zero, 10) && a[10] == 0xff && a[11] == 0xff) return v4_special(load_be32(a + 12)); /* mapped */
    if (!memcmp(a, zero, 8) && a[8] == 0xff && a[9] == 0xff && !a[10] && !a[11]) /* ::ffff:0:a.b.c.d */
        return v4_special(load_be32(a + 12));
    if (prefix_is(a, nat64, 96)) return v4_special(load_be32(a + 12)); /* 64:ff9b::/96 */
    if (prefix_is(a, nat64_local, 48)) return "NAT64 for local use (64:ff9b:1::/48)";
    if (a[0] == 0x20 && a[1] == 0x02) return v4_special(load_be32(a + 2)); /* 6to4 2002:V4::/48 */
    if (a[0] == 0x20 && a[1] == 0x01 && a[2] < 0x02) return "special-purpose (2001::/23: Teredo, benchmarking, ...)";
    if (prefix_is(a, doc, 32) || prefix_is(a, doc2, 20)) return "documentation (2001:db8::/32, 3fff::/20)";
    if ((a[0] & 0xe0) == 0x20) return NULL; /* global unicast 2000::/3 */
    if ((a[0] & 0xfe) == 0xfc) return "unique local (fc00::/7)";
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) return "link-local (fe80::/10)";
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0) return "site-local (fec0::/10)";
    if (a[0] == 0xff) return "multicast (ff00::/8)";
    return "reserved (outside 2000::/3)";
}

/* An address as 16 bytes, IPv4 as its mapped form ::ffff:a.b.c.d: false for another family. */
static bool addr16(const struct sockaddr *sa, uint8_t out[16]) {
    if (sa && sa->sa_family == AF_INET) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return true;
    }
    if (sa && sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        return true;
    }
    return false;
}

const char *lfm2c_hub_addr_special(const struct sockaddr *sa) {
    uint8_t a[16];
    if (!addr16(sa, a)) return "not an IP address";
    return v6_special(a);
}

/* One network of an allow list ("10.0.5.0/24", "127.0.0.1", "fd00::/8") into a (16 bytes, an
 * IPv4 one mapped) and its prefix length in those 128 bits: false when it does not parse. */
static bool net_parse(const char *s, size_t n, uint8_t a[16], int *bits) {
    char buf[64];
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    if (!n || n >= sizeof buf) return false;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *slash = strchr(buf, '/');
    long b = -1;
    if (slash) {
        char *end;
        *slash = 0;
        b = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end || b < 0) return false;
    }
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, buf, &v4) == 1) {
        if (b > 32) return false;
        memset(a, 0, 10);
        a[10] = a[11] = 0xff;
        memcpy(a + 12, &v4, 4);
        *bits = 96 + (int)(b < 0 ? 32 : b);
        return true;
    }
    if (inet_pton(AF_INET6, buf, &v6) != 1 || b > 128) return false;
    memcpy(a, &v6, 16);
    *bits = (int)(b < 0 ? 128 : b);
    return true;
}

/* Walks the list: true when every entry parses (and, with sa, when one holds sa: *hit). */
static bool nets_walk(const char *nets, const uint8_t *sa, bool *hit, const char **bad, size_t *bad_n) {
    if (hit) *hit = false;
    for (const char *p = nets; p && *p;) {
        const size_t m = strcspn(p, ",");
        uint8_t net[16];
        int bits;
        if (!net_parse(p, m, net, &bits)) {
            if (bad) *bad = p, *bad_n = m;
            return false;
        }
        if (sa && hit && prefix_is(sa, net, bits)) *hit = true;
        p += m + (p[m] == ',');
    }
    return true;
}

static bool is_all(const char *nets) {
    if (!nets) return false;
    while (isspace((unsigned char)*nets)) nets++;
    size_t n = strlen(nets);
    while (n && isspace((unsigned char)nets[n - 1])) n--;
    return n == 3 && !strncasecmp(nets, "all", 3);
}

bool lfm2c_hub_nets_check(const char *nets, lfm2c_error *err) {
    const char *bad = NULL;
    size_t bad_n = 0;
    if (!nets || !*nets) return lfm2c_set_error(err, LFM2C_EINVAL, "an empty list of networks"), false;
    if (is_all(nets) || nets_walk(nets, NULL, NULL, &bad, &bad_n)) return true;
    lfm2c_set_error(err, LFM2C_EINVAL, "'%.*s' is not a network (ADDRESS or ADDRESS/BITS, IPv4 or IPv6; or 'all')",
                    (int)(bad_n > 64 ? 64 : bad_n), bad);
    return false;
}

const char *lfm2c_hub_addr_refused(const char *allow_private, const struct sockaddr *sa) {
    const char *what = lfm2c_hub_addr_special(sa);
    uint8_t a[16];
    if (!what || is_all(allow_private)) return NULL;
    if (!addr16(sa, a)) return what;
    bool hit = false;
    return allow_private && nets_walk(allow_private, a, &hit, NULL, NULL) && hit ? NULL : what;
}

#ifdef LFM2C_HAVE_HUB
#include <curl/curl.h>
#include <pthread.h>

typedef struct {
    uint8_t *buf;
    size_t n, cap, max;
    bool over, oom;
    const char *allow_private; /* the bounds' */
    const char *refused;       /* why the last address was refused (NULL: none was) */
    char refused_addr[INET6_ADDRSTRLEN];
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

/* libcurl's socket(2) for every connection, with the address it is about to connect to: a
 * socket, or CURL_SOCKET_BAD when the address is not one we fetch from (recorded in b). */
static curl_socket_t url_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a) {
    url_body *b = ud;
    const unsigned need = a->family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    const char *why = purpose != CURLSOCKTYPE_IPCXN ? "not an IP connection"
                      : a->addrlen < need           ? "not an IP address"
                                                    : lfm2c_hub_addr_refused(b->allow_private, &a->addr);
    if (why) {
        b->refused = why;
        b->refused_addr[0] = 0;
        const void *in = a->family == AF_INET    ? (const void *)&((struct sockaddr_in *)(void *)&a->addr)->sin_addr
                         : a->family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)(void *)&a->addr)->sin6_addr
                                                 : NULL;
        if (!in || !inet_ntop(a->family, in, b->refused_addr, sizeof b->refused_addr))
            snprintf(b->refused_addr, sizeof b->refused_addr, "?");
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype, a->protocol);
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
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, url_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, b);
    curl_easy_setopt(c, CURLOPT_PROXY, ""); /* none, not even $http_proxy: the address judged is the peer's */
}

/* The error of a transfer that gave no body: false with err set. */
static bool url_judge(CURLcode rc, long code, const url_body *b, const lfm2c_url_bounds *bd, lfm2c_error *err) {
    if (b->over || rc == CURLE_FILESIZE_EXCEEDED)
        return lfm2c_set_error(err, LFM2C_ETOOLARGE, "the image URL's body is over the limit (%zu bytes)",
                               bd->max_bytes),
               false;
    if (b->oom) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), false;
    if (b->refused && rc != CURLE_OK)
        return lfm2c_set_error(err, LFM2C_EIO,
                               "the image URL's address %s is %s: not fetched (serve --allow-private-image-urls)",
                               b->refused_addr, b->refused),
               false;
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
    url_body b = {.max = bd->max_bytes, .allow_private = bd->allow_private};
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
