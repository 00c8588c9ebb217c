/* cmd_ps.c — `lfm2c ps` and `lfm2c stop MODEL`: a running `lfm2c serve` asked over HTTP, as
 * `ollama ps` / `ollama stop` ask theirs: GET /api/ps printed as a table (name, id, size, where it
 * runs, context, until when it stays loaded), and an empty /api/generate with keep_alive 0 (the
 * model unloaded now, or once its requests end). The server: --host / --port, else $LFM2C_HOST
 * or $OLLAMA_HOST ("http://HOST:PORT", "HOST:PORT", ":PORT"), else 127.0.0.1:8080; the key:
 * --api-key, else $LFM2C_API_KEY. Plain HTTP over IPv4 (the server's own transport). */
#include "cli.h"
#include "base/os.h"
#include "base/os_net.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct client {
    char host[256];
    int port;
    const char *key;
} client;

/* [http://]HOST[:PORT][/] or :PORT into c (the parts given); false when it is none of those. */
static bool parse_host(const char *s, client *c) {
    if (!strncmp(s, "http://", 7)) s += 7;
    else if (strstr(s, "://")) return false; /* https and others: not this transport */
    const char *colon = strrchr(s, ':');
    size_t n = colon ? (size_t)(colon - s) : strcspn(s, "/");
    if (n >= sizeof c->host) return false;
    if (n) snprintf(c->host, sizeof c->host, "%.*s", (int)n, s);
    if (colon) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (end == colon + 1 || (*end && strcmp(end, "/")) || p < 1 || p > 65535) return false;
        c->port = (int)p;
    }
    return true;
}

static int connect_to(const client *c) { return os_tcp_connect(c->host, c->port, 30); }

/* A chunked body decoded in place; its length. */
static size_t dechunk(char *b, size_t n) {
    size_t in = 0, out = 0;
    while (in < n) {
        char *end;
        unsigned long k = strtoul(b + in, &end, 16);
        char *nl = strstr(b + in, "\r\n");
        if (!nl || end == b + in || k == 0) break;
        in = (size_t)(nl - b) + 2;
        if (k > n - in) k = n - in;
        memmove(b + out, b + in, k);
        out += k, in += k + 2;
    }
    return out;
}

/* One request (Connection: close): the status, the body into *body (malloc'd, NUL-ended); -1
 * when the server cannot be reached (said). */
static int request(const client *c, const char *method, const char *path, const char *json, char **body) {
    *body = NULL;
    int fd = connect_to(c);
    if (fd < 0)
        return cli_fail("cannot reach a server at %s:%d (%s): is `lfm2c serve` running there?", c->host, c->port,
                        strerror(errno)),
               -1;
    char head[1024];
    int hn = snprintf(head, sizeof head,
                      "%s %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n%s%s%s\r\n",
                      method, path, c->host, c->port, json ? strlen(json) : 0, c->key ? "Authorization: Bearer " : "",
                      c->key ? c->key : "", c->key ? "\r\n" : "");
    bool sent = os_sock_send(fd, head, (size_t)hn) == hn &&
                (!json || os_sock_send(fd, json, strlen(json)) == (int64_t)strlen(json));
    size_t n = 0, cap = 65536;
    char *b = malloc(cap + 1);
    for (int64_t k; sent && b && (k = os_sock_recv(fd, b + n, cap - n)) > 0;) {
        n += (size_t)k;
        if (n == cap && cap < (64u << 20)) {
            char *nb = realloc(b, cap * 2 + 1);
            if (!nb) break;
            b = nb, cap *= 2;
        }
    }
    os_sock_close(fd);
    int status = 0;
    char *sep = b && n ? (b[n] = 0, strstr(b, "\r\n\r\n")) : NULL;
    if (!sep || sscanf(b, "HTTP/1.%*d %d", &status) != 1) {
        free(b);
        return cli_fail("no HTTP answer from %s:%d", c->host, c->port), -1;
    }
    *sep = 0;
    size_t off = (size_t)(sep + 4 - b), len = n - off;
    if (strcasestr(b, "Transfer-Encoding: chunked")) len = dechunk(sep + 4, len);
    memmove(b, sep + 4, len);
    b[len] = 0;
    *body = b;
    return status;
}

/* The error of an answer: Ollama's {"error": "..."} or OpenAI's {"error": {"message": ...}}. */
static void say_error(int status, const char *body) {
    json_t *j = json_loads(body, 0, NULL), *e = json_object_get(j, "error");
    const char *m = json_is_string(e) ? json_string_value(e) : json_string_value(json_object_get(e, "message"));
    cli_fail("%d: %s", status, m ? m : body);
    json_decref(j);
}

static void human(uint64_t b, char *out, size_t cap) {
    const char *u[] = {"B", "KB", "MB", "GB", "TB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1000 && i < 4) v /= 1000, i++;
    snprintf(out, cap, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

/* "Forever", "4 minutes from now", "Stopping..." from an expires_at (UTC, ISO 8601). */
static void until(const char *iso, char *out, size_t cap) {
    struct tm tm = {0};
    if (!iso || sscanf(iso, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                       &tm.tm_sec) != 6) {
        snprintf(out, cap, "-");
        return;
    }
    tm.tm_year -= 1900, tm.tm_mon -= 1;
    double left = difftime(os_timegm(&tm), time(NULL));
    if (left > 100.0 * 365 * 86400) snprintf(out, cap, "Forever");
    else if (left < 1) snprintf(out, cap, "Stopping...");
    else if (left < 120) snprintf(out, cap, "%.0f seconds from now", left);
    else if (left < 7200) snprintf(out, cap, "%.0f minutes from now", left / 60);
    else snprintf(out, cap, "%.0f hours from now", left / 3600);
}

static void print_models(json_t *models) {
    printf("%-40s %-14s %-10s %-12s %-9s %s\n", "NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL");
    size_t i;
    json_t *m;
    json_array_foreach(models, i, m) {
        char size[32], left[64], id[16];
        json_int_t bytes = json_integer_value(json_object_get(m, "size"));
        json_int_t vram = json_integer_value(json_object_get(m, "size_vram"));
        human((uint64_t)bytes, size, sizeof size);
        until(json_string_value(json_object_get(m, "expires_at")), left, sizeof left);
        snprintf(id, sizeof id, "%.12s", json_string_value(json_object_get(m, "digest")) ?: "");
        const char *where = vram && vram >= bytes ? "100% GPU" : vram ? "GPU/CPU" : "100% CPU";
        printf("%-40s %-14s %-10s %-12s %-9lld %s\n", json_string_value(json_object_get(m, "name")) ?: "?", id, size,
               where, (long long)json_integer_value(json_object_get(m, "context_length")), left);
    }
}

/* The options both commands take: -1 to go on, else the exit code. *model: stop's argument. */
static int parse(int argc, char **argv, client *c, const char **model, const char *usage) {
    *c = (client){.host = "127.0.0.1", .port = 8080, .key = getenv("LFM2C_API_KEY")};
    const char *env = getenv("LFM2C_HOST");
    if (!env || !*env) env = getenv("OLLAMA_HOST");
    if (env && *env && !parse_host(env, c))
        return cli_fail("%s='%s' is not http://HOST:PORT", getenv("LFM2C_HOST") ? "LFM2C_HOST" : "OLLAMA_HOST", env), 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return fputs(usage, stdout), 0;
        if (!strcmp(a, "--host")) {
            const char *v = cli_value(argc, argv, &i);
            if (!parse_host(v, c))
                return cli_fail("--host expects HOST, HOST:PORT or http://HOST:PORT, not '%s'", v), 2;
        } else if (!strcmp(a, "--port")) {
            c->port = cli_int(a, cli_value(argc, argv, &i));
            if (c->port < 1 || c->port > 65535) return cli_fail("--port must be 1..65535"), 2;
        } else if (!strcmp(a, "--api-key")) c->key = cli_value(argc, argv, &i);
        else if (a[0] == '-') return cli_unknown_option(model ? "stop" : "ps", a, usage);
        else if (model && !*model) *model = a;
        else return cli_fail("%s: unexpected argument '%s' (see its --help)", model ? "stop" : "ps", a), 2;
    }
    if (model && !*model) return fputs(usage, stderr), 2;
    return -1;
}

#define CLIENT_HELP \
    "  --host H[:P]  the server (default $LFM2C_HOST, $OLLAMA_HOST, else 127.0.0.1; http://H:P too)\n" \
    "  --port N      its port (default 8080)\n" \
    "  --api-key K   the server's --api-key (default $LFM2C_API_KEY)\n"

int cmd_ps(int argc, char **argv) {
    static const char usage[] = "usage: lfm2c ps [--host H[:P]] [--port N] [--api-key K]\n"
                                "  the models a running `lfm2c serve` has loaded (GET /api/ps)\n" CLIENT_HELP;
    client c;
    int rc = parse(argc, argv, &c, NULL, usage);
    if (rc >= 0) return rc;
    char *body = NULL;
    int status = request(&c, "GET", "/api/ps", NULL, &body);
    if (status < 0) return 1;
    json_t *j = status == 200 ? json_loads(body, 0, NULL) : NULL, *models = json_object_get(j, "models");
    if (status != 200) say_error(status, body);
    else if (!json_is_array(models)) cli_fail("the server's /api/ps answer has no models: %.200s", body);
    else print_models(models);
    rc = status == 200 && json_is_array(models) ? 0 : 1;
    json_decref(j);
    free(body);
    return rc;
}

int cmd_stop(int argc, char **argv) {
    static const char usage[] = "usage: lfm2c stop MODEL [--host H[:P]] [--port N] [--api-key K]\n"
                                "  unloads MODEL from a running `lfm2c serve` (at once, or when its running requests\n"
                                "  end; a later request loads it again)\n" CLIENT_HELP;
    client c;
    const char *model = NULL;
    int rc = parse(argc, argv, &c, &model, usage);
    if (rc >= 0) return rc;
    json_t *req = json_pack("{s:s,s:i,s:b}", "model", model, "keep_alive", 0, "stream", 0);
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL, *body = NULL;
    json_decref(req);
    int status = text ? request(&c, "POST", "/api/generate", text, &body) : -1;
    free(text);
    if (status < 0) return 1;
    if (status != 200) say_error(status, body);
    free(body);
    return status == 200 ? 0 : 1;
}
