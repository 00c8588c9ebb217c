/* test_fetch_url.c — which addresses an image URL may reach (src/hub/fetch_url.c): the classifier
 * over a table of addresses (every special-purpose IPv4 block at its edges, IPv6 loopback,
 * unspecified, unique local, link-local, multicast, and the IPv4-mapped / compatible / NAT64 /
 * 6to4 forms of loopback and private addresses; public ones on both sides of each block), the
 * operator's allow lists (networks, "all", lists that do not parse), and lfm2c_hub_fetch_url
 * itself refusing loopback by IP, by name and in its decimal, hex, octal and short forms, ::1 and
 * ::ffff:127.0.0.1 before any connection (port 9 on loopback: were it connected, the message
 * would say the connection failed instead). Nothing leaves the machine. */
#include "hub/hub.h"
#include "base/os_net.h"
#include "test.h"

#include <string.h>

/* The address text as a sockaddr (IPv4 or IPv6). */
static bool sa_of(const char *text, struct sockaddr_storage *ss) {
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        return true;
    }
    return false;
}

/* Each address and the word its class must contain (NULL: public, fetched). */
static const struct {
    const char *addr, *want;
} TABLE[] = {
    {"127.0.0.1", "loopback"},
    {"127.255.255.254", "loopback"},
    {"126.255.255.255", NULL},
    {"128.0.0.1", NULL},
    {"0.0.0.0", "unspecified"},
    {"0.1.2.3", "unspecified"},
    {"10.0.0.1", "private"},
    {"10.255.255.255", "private"},
    {"11.0.0.1", NULL},
    {"9.255.255.255", NULL},
    {"172.16.0.1", "private"},
    {"172.31.255.255", "private"},
    {"172.15.255.255", NULL},
    {"172.32.0.0", NULL},
    {"192.168.1.1", "private"},
    {"192.169.0.1", NULL},
    {"169.254.169.254", "link-local"}, /* the cloud metadata address */
    {"169.254.0.1", "link-local"},
    {"169.255.0.1", NULL},
    {"100.64.0.1", "CGNAT"},
    {"100.127.255.255", "CGNAT"},
    {"100.63.255.255", NULL},
    {"100.128.0.0", NULL},
    {"192.0.0.8", "reserved"},
    {"192.0.2.1", "documentation"},
    {"198.51.100.7", "documentation"},
    {"203.0.113.9", "documentation"},
    {"198.18.0.1", "benchmarking"},
    {"198.19.255.255", "benchmarking"},
    {"198.20.0.0", NULL},
    {"192.88.99.1", "reserved"},
    {"224.0.0.1", "multicast"},
    {"239.255.255.250", "multicast"},
    {"240.0.0.1", "reserved"},
    {"255.255.255.255", "broadcast"},
    {"8.8.8.8", NULL},
    {"1.1.1.1", NULL},
    {"223.255.255.255", NULL},
    {"::1", "loopback"},
    {"::", "unspecified"},
    {"::ffff:127.0.0.1", "loopback"},
    {"::ffff:10.1.2.3", "private"},
    {"::ffff:169.254.169.254", "link-local"},
    {"::ffff:0.0.0.0", "unspecified"},
    {"::ffff:8.8.8.8", NULL},
    {"::ffff:0:127.0.0.1", "loopback"},
    {"::127.0.0.1", "IPv4-compatible"},
    {"::8.8.8.8", "IPv4-compatible"},
    {"64:ff9b::127.0.0.1", "loopback"},
    {"64:ff9b::10.0.0.1", "private"},
    {"64:ff9b::8.8.8.8", NULL},
    {"64:ff9b:1::1", "NAT64"},
    {"2002:7f00:1::1", "loopback"}, /* 6to4 of 127.0.0.1 */
    {"2002:c0a8:101::1", "private"},
    {"2002:808:808::1", NULL},
    {"fc00::1", "unique local"},
    {"fd12:3456::1", "unique local"},
    {"fe80::1", "link-local"},
    {"febf::1", "link-local"},
    {"fec0::1", "site-local"},
    {"ff02::1", "multicast"},
    {"2001::1", "Teredo"},
    {"2001:db8::1", "documentation"},
    {"3fff::1", "documentation"},
    {"100::1", "reserved"},
    {"4000::1", "reserved"},
    {"2001:4860:4860::8888", NULL},
    {"2606:4700::1111", NULL},
    {"2a00:1450::1", NULL},
};

static void test_classes(void) {
    for (size_t i = 0; i < sizeof TABLE / sizeof *TABLE; i++) {
        struct sockaddr_storage ss;
        CHECK(sa_of(TABLE[i].addr, &ss), "%s parses", TABLE[i].addr);
        const char *got = lfm2c_hub_addr_special((const struct sockaddr *)&ss);
        if (!TABLE[i].want) CHECK(!got, "%s is public, not '%s'", TABLE[i].addr, got);
        else
            CHECK(got && strstr(got, TABLE[i].want), "%s: '%s', want '%s'", TABLE[i].addr, got ? got : "public",
                  TABLE[i].want);
    }
    struct sockaddr un = {.sa_family = AF_UNIX};
    CHECK(lfm2c_hub_addr_special(&un) != NULL, "another family is refused");
    CHECK(lfm2c_hub_addr_special(NULL) != NULL, "no address is refused");
}

/* allow_private: which list lets which address through. */
static void test_allow(void) {
    static const struct {
        const char *list, *addr;
        bool refused;
    } T[] = {
        {NULL, "127.0.0.1", true},
        {NULL, "8.8.8.8", false},
        {"all", "127.0.0.1", false},
        {" ALL ", "fd00::1", false},
        {"127.0.0.1", "127.0.0.1", false},
        {"127.0.0.1", "127.0.0.2", true},
        {"127.0.0.1", "::ffff:127.0.0.1", false}, /* an IPv4 network holds its mapped form */
        {"127.0.0.1", "::1", true},
        {"10.0.5.0/24", "10.0.5.77", false},
        {"10.0.5.0/24", "10.0.6.1", true},
        {"10.0.5.0/24, 192.168.0.0/16", "192.168.3.4", false},
        {"10.0.5.0/24,192.168.0.0/16", "169.254.169.254", true},
        {"fd00::/8", "fd12::1", false},
        {"fd00::/8", "fc00::1", true},
        {"::1", "::1", false},
        {"0.0.0.0/0", "169.254.169.254", false},
        {"10.0.0.0/8,nonsense", "10.1.1.1", true}, /* a list that does not parse allows nothing */
    };
    for (size_t i = 0; i < sizeof T / sizeof *T; i++) {
        struct sockaddr_storage ss;
        sa_of(T[i].addr, &ss);
        const char *why = lfm2c_hub_addr_refused(T[i].list, (const struct sockaddr *)&ss);
        CHECK((why != NULL) == T[i].refused, "%s under '%s': %s", T[i].addr, T[i].list ? T[i].list : "(none)",
              why ? why : "allowed");
    }
    static const char *good[] = {"all", "127.0.0.1", "10.0.0.0/8,fd00::/8", " 192.168.1.0/24 , ::1/128 "};
    static const char *bad[] = {"", "nonsense", "10.0.0.0/33", "::1/129", "10.0.0.0/", "10.0.0.0/x", ",", "localhost"};
    lfm2c_error err = {0};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        CHECK(lfm2c_hub_nets_check(good[i], &err), "'%s' is a list: %s", good[i], err.msg);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err = (lfm2c_error){0};
        CHECK(!lfm2c_hub_nets_check(bad[i], &err) && err.code, "'%s' is not a list", bad[i]);
    }
}

#ifdef LFM2C_HAVE_HUB
/* A fetch of url under allow: its error message ("" when it fetched). */
static void fetch_msg(const char *url, const char *allow, char *out, size_t cap) {
    lfm2c_url_bounds bd = {
        .max_bytes = 1 << 20, .connect_s = 2, .timeout_s = 3, .max_redirects = 3, .allow_private = allow};
    lfm2c_error err = {0};
    size_t n = 0;
    uint8_t *d = lfm2c_hub_fetch_url(url, &bd, &n, &err);
    free(d);
    snprintf(out, cap, "%s", d ? "" : err.msg);
}

static void test_fetch(void) {
    static const char *loop[] = {"http://127.0.0.1:9/x.png",  "http://localhost:9/x.png",
                                 "http://2130706433:9/x.png", "http://0x7f000001:9/x.png",
                                 "http://0177.0.0.1:9/x.png", "http://127.1:9/x.png",
                                 "http://[::1]:9/x.png",      "http://[::ffff:127.0.0.1]:9/x",
                                 "https://127.0.0.1:9/x.png", "http://0.0.0.0:9/x.png",
                                 "http://[::]:9/x.png"};
    char msg[sizeof((lfm2c_error *)0)->msg];
    for (size_t i = 0; i < sizeof loop / sizeof *loop; i++) {
        fetch_msg(loop[i], NULL, msg, sizeof msg);
        CHECK(strstr(msg, "not fetched") && (strstr(msg, "loopback") || strstr(msg, "unspecified")), "%s: '%s'",
              loop[i], msg);
        CHECK(!strstr(msg, "x.png") && !strstr(msg, ":9"), "%s: the message repeats the URL: '%s'", loop[i], msg);
    }
    /* allowed, the same URL is connected to (nothing listens on port 9: a connection error) */
    fetch_msg("http://127.0.0.1:9/x.png", "127.0.0.0/8", msg, sizeof msg);
    CHECK(*msg && !strstr(msg, "not fetched"), "allowed 127/8: connected ('%s')", msg);
    fetch_msg("http://127.0.0.1:9/x.png", "all", msg, sizeof msg);
    CHECK(*msg && !strstr(msg, "not fetched"), "allowed all: connected ('%s')", msg);
    fetch_msg("http://127.0.0.1:9/x.png", "10.0.0.0/8", msg, sizeof msg);
    CHECK(strstr(msg, "not fetched"), "another network allowed: refused ('%s')", msg);
}
#endif

int main(void) {
    test_classes();
    test_allow();
#ifdef LFM2C_HAVE_HUB
    test_fetch();
#endif
    TEST_MAIN_END();
}
