/* cache.c — the local store of pulled models, without the network (so it builds without
 * libcurl): where the Hugging Face cache is, the quant tag of a file name, the GGUF files the
 * cache holds (what `lfm2c list` shows and `lfm2c serve --models` serves) and removing a model's
 * files (`lfm2c rm`, the server's DELETE /api/delete), the vision projector (mmproj*.gguf) beside
 * a model. The layout is huggingface_hub's:
 * models--ORG--NAME/snapshots/COMMIT/FILE, each a relative link to blobs/SHA256 (where links cannot
 * be made, Windows without the right to and Wine, a hard link to it: base/os.h's os_symlink; a
 * cache huggingface_hub wrote there holds the file itself, no blob). */
#include "hub/hub.h"
#include "base/error.h"
#include "base/os.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *hub_strdup_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

char *lfm2c_hub_cache_dir(const lfm2c_hub_params *p) {
    if (p && p->cache_dir) return strdup(p->cache_dir);
    const char *e = getenv("HF_HUB_CACHE");
    if (e && *e) return strdup(e);
    if ((e = getenv("HF_HOME")) && *e) return hub_strdup_printf("%s/hub", e);
    if ((e = getenv("XDG_CACHE_HOME")) && *e) return hub_strdup_printf("%s/huggingface/hub", e);
    const char *home = os_home();
    return hub_strdup_printf("%s/.cache/huggingface/hub", home && *home ? home : ".");
}

bool lfm2c_hub_quant_of(const char *name, char *out, size_t cap) {
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    size_t n = strlen(base);
    if (n < 5 || strcasecmp(base + n - 5, ".gguf")) return false;
    n -= 5;
    /* strip a split suffix -00001-of-00003 */
    if (n > 15 && !strncmp(base + n - 9, "-of-", 4) && base[n - 15] == '-') n -= 15;
    size_t start = n;
    while (start > 0 && base[start - 1] != '-' && base[start - 1] != '.') start--;
    size_t len = n - start;
    if (len == 0 || len + 1 > cap) return false;
    /* a quant tag starts with Q, IQ, F, BF or TQ and contains a digit */
    bool digit = false;
    for (size_t i = 0; i < len; i++) {
        out[i] = (char)toupper((unsigned char)base[start + i]);
        if (isdigit((unsigned char)out[i])) digit = true;
    }
    out[len] = 0;
    if (!digit) return false;
    return out[0] == 'Q' || !strncmp(out, "IQ", 2) || out[0] == 'F' || !strncmp(out, "BF", 2) || !strncmp(out, "TQ", 2);
}

bool lfm2c_hub_is_mmproj(const char *name) {
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    size_t n = strlen(base);
    return n > 11 && !strncasecmp(base, "mmproj", 6) && !strcasecmp(base + n - 5, ".gguf");
}

bool lfm2c_hub_is_companion(const char *name) {
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    static const char *const prefixes[] = {"vocoder-", "tokenizer-", "audiodecoder-"};
    const size_t n = strlen(base);
    if (n < 5 || strcasecmp(base + n - 5, ".gguf")) return false;
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (!strncasecmp(base, prefixes[i], strlen(prefixes[i]))) return true;
    return false;
}

/* Is name in the directory of model (the same text before the last '/')? */
static bool same_dir(const char *name, const char *model) {
    const char *a = strrchr(name, '/'), *b = strrchr(model, '/');
    size_t la = a ? (size_t)(a - name) : 0, lb = b ? (size_t)(b - model) : 0;
    return la == lb && !strncmp(name, model, la);
}

int lfm2c_hub_mmproj_pick(const char *const *names, int n, const char *model) {
    int pick = -1;
    bool pick_f16 = false;
    for (int i = 0; i < n; i++) {
        if (!lfm2c_hub_is_mmproj(names[i]) || (model && !same_dir(names[i], model))) continue;
        char q[32];
        const bool f16 = lfm2c_hub_quant_of(names[i], q, sizeof q) && !strcmp(q, "F16");
        if (pick < 0 || (f16 && !pick_f16) || (f16 == pick_f16 && strcmp(names[i], names[pick]) < 0)) {
            pick = i;
            pick_f16 = f16;
        }
    }
    return pick;
}

char *lfm2c_hub_mmproj_beside(const char *model_path) {
    const char *slash = strrchr(model_path, '/');
    char *dir = slash ? hub_strdup_printf("%.*s", (int)(slash - model_path), model_path) : strdup(".");
    os_dir *d = dir ? os_opendir(dir) : NULL;
    char *names[64], *out = NULL;
    int n = 0;
    const char *de;
    while (d && n < 64 && (de = os_readdir(d)))
        if (lfm2c_hub_is_mmproj(de) && (names[n] = strdup(de))) n++;
    if (d) os_closedir(d);
    int k = lfm2c_hub_mmproj_pick((const char *const *)names, n, NULL);
    os_stat_t st;
    if (k >= 0 && (out = hub_strdup_printf("%s/%s", dir, names[k])) && (os_stat(out, &st) || !st.is_file)) {
        free(out); /* a dangling link: its blob was removed */
        out = NULL;
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(dir);
    return out;
}

/* "models--ORG--NAME" -> "ORG/NAME" */
static bool repo_of_dir(const char *d, char *out, size_t cap) {
    if (strncmp(d, "models--", 8)) return false;
    const char *s = strstr(d + 8, "--");
    if (!s || s == d + 8 || !s[2] || (size_t)(s - d - 8) + strlen(s + 2) + 2 > cap) return false;
    snprintf(out, cap, "%.*s/%s", (int)(s - d - 8), d + 8, s + 2);
    return true;
}

/* A later part of a split GGUF ("-00002-of-00003.gguf"): the first part stands for the model. */
static bool later_part(const char *name) {
    size_t n = strlen(name);
    if (n < 20) return false;
    const char *s = name + n - 20; /* "-00002-of-00003.gguf" */
    int a, b;
    char tail[8];
    return s[0] == '-' && isdigit((unsigned char)s[1]) && sscanf(s, "-%5d-of-%5d%7s", &a, &b, tail) == 3 &&
           !strcasecmp(tail, ".gguf") && a > 1;
}

/* The GGUF files of one snapshot directory. */
static void visit_snapshot(const char *repo, const char *snap, lfm2c_hub_visit fn, void *user) {
    os_dir *fd = os_opendir(snap);
    if (!fd) return;
    const char *f;
    while ((f = os_readdir(fd))) {
        size_t n = strlen(f);
        if (n < 5 || strcasecmp(f + n - 5, ".gguf")) continue;
        char *full = hub_strdup_printf("%s/%s", snap, f);
        os_stat_t st;
        if (full && os_stat(full, &st) == 0 && st.is_file) { /* a dangling link: its blob was removed */
            char q[32] = "";
            if (!lfm2c_hub_quant_of(f, q, sizeof q)) q[0] = 0;
            lfm2c_hub_file hf = {.repo = repo,
                                 .quant = q,
                                 .file = f,
                                 .path = full,
                                 .snapshot = snap,
                                 .bytes = (uint64_t)st.size,
                                 .mtime = st.mtime,
                                 .later_part = later_part(f),
                                 .mmproj = lfm2c_hub_is_mmproj(f),
                                 .companion = lfm2c_hub_is_companion(f)};
            fn(user, &hf);
        }
        free(full);
    }
    os_closedir(fd);
}

void lfm2c_hub_list(const char *cache, const char *only_repo, lfm2c_hub_visit fn, void *user) {
    os_dir *d = cache ? os_opendir(cache) : NULL;
    if (!d) return;
    const char *e;
    while ((e = os_readdir(d))) {
        char repo[512];
        if (!repo_of_dir(e, repo, sizeof repo)) continue;
        if (only_repo && strcasecmp(repo, only_repo)) continue;
        char *snaps = hub_strdup_printf("%s/%s/snapshots", cache, e);
        os_dir *sd = snaps ? os_opendir(snaps) : NULL;
        const char *c;
        while (sd && (c = os_readdir(sd))) {
            if (c[0] == '.') continue;
            char *snap = hub_strdup_printf("%s/%s", snaps, c);
            if (snap) visit_snapshot(repo, snap, fn, user);
            free(snap);
        }
        if (sd) os_closedir(sd);
        free(snaps);
    }
    os_closedir(d);
}

typedef struct rm_state {
    const char *quant;
    int removed;
    lfm2c_hub_visit done;
    void *user;
    lfm2c_error *err;
} rm_state;

/* Is path in dir or below it (both resolved through every link; path's last component is not
 * followed: it is the entry unlink would remove)? */
static bool inside(const char *path, const char *dir) {
    const char *slash = NULL;
    for (const char *c = path; *c; c++)
        if (os_is_sep(*c)) slash = c;
    char *parent = slash ? hub_strdup_printf("%.*s", (int)(slash - path), path) : strdup(".");
    char *rp = parent ? os_realpath(*parent ? parent : "/") : NULL, *rd = os_realpath(dir);
    const size_t n = rd ? strlen(rd) : 0;
    const bool in = rp && rd && !strncmp(rp, rd, n) && (os_is_sep(rp[n]) || !rp[n]) && slash && slash[1] &&
                    strcmp(slash + 1, "..") && strcmp(slash + 1, ".");
    free(parent);
    free(rp);
    free(rd);
    return in;
}

/* REPO/snapshots/COMMIT -> REPO/blobs (the text cut, not "..": a linked COMMIT cannot move it). */
static char *repo_blobs(const char *snapshot) {
    const char *end = snapshot + strlen(snapshot);
    for (int k = 0; k < 2 && end > snapshot;) /* back over COMMIT, then snapshots */
        if (os_is_sep(*--end)) k++;
    return end > snapshot ? hub_strdup_printf("%.*s/blobs", (int)(end - snapshot), snapshot) : NULL;
}

/* The entry of blobs that is the file at path itself (a hard link to it), malloc'd; else NULL. */
static char *same_file_in(const char *path, const char *blobs) {
    os_stat_t a, b;
    os_dir *d = blobs && os_stat(path, &a) == 0 ? os_opendir(blobs) : NULL;
    char *found = NULL;
    const char *e;
    while (d && !found && (e = os_readdir(d))) {
        if (e[0] == '.') continue;
        char *p = hub_strdup_printf("%s/%s", blobs, e);
        if (p && os_stat(p, &b) == 0 && b.is_file && b.dev == a.dev && b.ino == a.ino) found = p;
        else free(p);
    }
    if (d) os_closedir(d);
    return found;
}

/* One file of the model: its blob (where the link points, when that lies in the repository's own
 * blobs folder: a link that leads out of the cache loses only itself; for a hard link, the blob
 * that is the same file) and the link itself. */
static void rm_one(void *u, const lfm2c_hub_file *f) {
    rm_state *st = u;
    if (st->err && st->err->code) return;
    if (st->quant && (f->mmproj || strcasecmp(f->quant, st->quant))) return;
    char target[4096];
    int n = os_readlink(f->path, target, sizeof target);
    char *blobs = repo_blobs(f->snapshot), *blob = NULL;
    if (n > 0) blob = os_path_is_abs(target) ? strdup(target) : hub_strdup_printf("%s/%s", f->snapshot, target);
    else blob = same_file_in(f->path, blobs);
    if (blob && blobs && inside(blob, blobs) && os_remove(blob) && errno != ENOENT) {
        lfm2c_set_error(st->err, LFM2C_HUB_E_IO, "cannot remove '%s': %s", blob, strerror(errno));
        free(blob);
        free(blobs);
        return;
    }
    free(blob);
    free(blobs);
    if (os_remove(f->path)) {
        lfm2c_set_error(st->err, LFM2C_HUB_E_IO, "cannot remove '%s': %s", f->path, strerror(errno));
        return;
    }
    st->removed++;
    if (st->done) st->done(st->user, f);
}

int lfm2c_hub_remove(const char *cache, const char *repo, const char *quant, lfm2c_hub_visit removed, void *user,
                     lfm2c_error *err) {
    lfm2c_error local = {0};
    rm_state st = {.quant = quant && *quant ? quant : NULL, .done = removed, .user = user, .err = err ? err : &local};
    st.err->code = 0;
    st.err->msg[0] = 0;
    lfm2c_hub_list(cache, repo, rm_one, &st);
    return st.err->code ? -1 : st.removed;
}
