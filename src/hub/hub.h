/* hub.h — fetching GGUF files from the Hugging Face Hub (or a mirror) into the Hugging Face cache
 * layout: resolve REPO[:QUANT] with the Hub's HTTP API, download with resume / retries, verify the
 * LFS sha256, publish as $HF_HOME/hub/models--ORG--NAME/{blobs,snapshots/COMMIT,refs/main}
 * (hub.c, with libcurl); and the cache itself: where it is, what it holds, removing a model
 * (cache.c, built without libcurl too). The library never prints: progress goes through a
 * callback; errors through lfm2c_error. */
#ifndef LFM2C_HUB_H
#define LFM2C_HUB_H
#include "lfm2c.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* error codes (err->code) beyond the generic ones, so callers can tell them apart */
enum {
    LFM2C_HUB_E_ARG = 1,       /* bad REPO[:QUANT] / file name */
    LFM2C_HUB_E_NET = 2,       /* network error after the retries */
    LFM2C_HUB_E_AUTH = 3,      /* 401 / 403: gated or private repo, token missing or refused */
    LFM2C_HUB_E_NOT_FOUND = 4, /* repository, revision, quant or file not found */
    LFM2C_HUB_E_IO = 5,        /* local file system (disk full, permissions) */
    LFM2C_HUB_E_VERIFY = 6,    /* sha256 or size mismatch */
    LFM2C_HUB_E_CANCEL = 7,    /* *cancel became non-zero */
    LFM2C_HUB_E_OFFLINE = 8,   /* offline and not in the cache */
    LFM2C_HUB_E_SPACE = 9,     /* the download is over max_bytes, or would leave less than min_free */
};

/* file: name in the repo; done / total bytes of that file (total 0 = unknown); resumed: bytes that
 * were already on disk when this transfer started; finished: last call for this file. */
typedef void (*lfm2c_hub_progress_fn)(void *user, const char *file, uint64_t done, uint64_t total, uint64_t resumed,
                                      bool finished);

typedef struct lfm2c_hub_params {
    const char *endpoint;  /* NULL: $HF_ENDPOINT, else https://huggingface.co */
    const char *token;     /* NULL: $HF_TOKEN */
    const char *cache_dir; /* the hub cache; NULL: $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub */
    const char *revision;  /* NULL: "main" */
    bool offline;          /* use only what is cached (also $HF_HUB_OFFLINE=1) */
    int max_retries;       /* network retries per file (default 5 when 0; -1 = none) */
    int backoff_ms;        /* first retry delay, doubled each time (default 1000 when 0) */
    lfm2c_hub_progress_fn progress;
    void *progress_user;                         /* also passed to notice */
    void (*notice)(void *user, const char *msg); /* optional: retries, in one line each */
    volatile sig_atomic_t *cancel;               /* optional: set non-zero (e.g. from SIGINT) to stop */
    /* optional bounds of what a pull writes, checked before any download (0: none): the bytes
     * still to fetch (announced by the Hub; the cache's whole or partial blobs not counted), and
     * the bytes to leave free on the cache's file system after them */
    uint64_t max_bytes, min_free;
    /* optional: the repository's vision projector is fetched beside the model, its malloc'd path
     * stored here (NULL when the repository has none); NULL: not looked for. The mmproj is a
     * GGUF whose name starts with "mmproj" in the model's directory (lfm2c_hub_mmproj_pick). */
    char **mmproj;
} lfm2c_hub_params;

/* Resolves "ORG/NAME[:QUANT]" (QUANT default Q4_K_M, else the nearest the repo has) or, with
 * file != NULL, that file of the repo; downloads what the cache lacks (all parts of a split GGUF)
 * and returns the malloc'd path of the (first part of the) model in the snapshot directory. */
char *lfm2c_hub_pull(const char *spec, const char *file, const lfm2c_hub_params *p, lfm2c_error *err);

/* The bounds of one URL fetch (fetch_url.c). */
typedef struct lfm2c_url_bounds {
    size_t max_bytes;  /* the body's (a longer one is LFM2C_ETOOLARGE, read no further) */
    int connect_s;     /* connecting, in seconds */
    int timeout_s;     /* the whole transfer, redirects included */
    int max_redirects; /* followed, each to http or https only */
    /* the addresses besides public ones it may connect to: NULL (none), "all", or networks
     * (lfm2c_hub_nets_check); every connection, each redirect's too, is judged */
    const char *allow_private;
} lfm2c_url_bounds;

/* GETs an http(s) URL into malloc'd bytes (*n of them) within bd: NULL with err set (the
 * generic codes): LFM2C_ETOOLARGE (over max_bytes), LFM2C_EINVAL (another scheme, also by a
 * redirect), LFM2C_EIO (a status not 2xx, a timeout, no connection, too many redirects, an
 * address not allowed), LFM2C_EUNSUPPORTED (built without libcurl), LFM2C_ENOMEM. The messages
 * do not repeat the URL; they may name the status or the address (for a log, not a client). */
uint8_t *lfm2c_hub_fetch_url(const char *url, const lfm2c_url_bounds *bd, size_t *n, lfm2c_error *err);

struct sockaddr;
/* What an address is when it is not a public unicast one, in words ("loopback (127.0.0.0/8)",
 * "private (10.0.0.0/8)", "link-local (fe80::/10)", ...), or NULL for a public one. IPv4-mapped,
 * IPv4-compatible, NAT64 (64:ff9b::/96) and 6to4 IPv6 addresses are judged by the IPv4 address
 * they carry; an address of another family is refused. */
const char *lfm2c_hub_addr_special(const struct sockaddr *sa);
/* Why sa is refused under allow_private (NULL, "all", or networks), or NULL when it is not. */
const char *lfm2c_hub_addr_refused(const char *allow_private, const struct sockaddr *sa);
/* Is nets "all" or a comma-separated list of networks (ADDRESS or ADDRESS/BITS, IPv4 or IPv6;
 * an IPv4 network also holds its IPv4-mapped IPv6 form)? false with err naming the bad entry. */
bool lfm2c_hub_nets_check(const char *nets, lfm2c_error *err);

/* The cache directory the parameters resolve to (malloc'd). */
/* A printf-formatted string in malloc'd memory (NULL when out of memory); cache.c's, for both. */
char *hub_strdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *lfm2c_hub_cache_dir(const lfm2c_hub_params *p);

/* Extracts the quant tag of a GGUF file name ("LFM2-1.2B-Q4_K_M.gguf" -> "Q4_K_M", upper case)
 * into out; returns false when the name has none. */
bool lfm2c_hub_quant_of(const char *filename, char *out, size_t cap);

/* Is this file name (a path's last component counts) a projector: "mmproj*.gguf" (an LFM2-VL
 * vision tower or an LFM2-Audio audio encoder)? */
bool lfm2c_hub_is_mmproj(const char *name);
/* Is it one of an LFM2-Audio repository's speech-output files, which are not models to run:
 * "vocoder-*", "tokenizer-*" (LFM2.5-Audio's detokenizer, an lfm2 GGUF itself) or
 * "audiodecoder-*.gguf"? */
bool lfm2c_hub_is_companion(const char *name);
/* Of n file names, the mmproj to pair with a model, as llama.cpp's -hf does: the F16 one, else
 * the first by name; only names in the directory of model (NULL: any). Its index, or -1. */
int lfm2c_hub_mmproj_pick(const char *const *names, int n, const char *model);

/* ---- the cache (cache.c) ---- */

/* One GGUF file of the cache, as `lfm2c list` shows it (the strings live during the call). */
typedef struct lfm2c_hub_file {
    const char *repo;     /* ORG/NAME */
    const char *quant;    /* upper case, "" when the name has none */
    const char *file;     /* its name in the snapshot */
    const char *path;     /* the snapshot's link to it */
    const char *snapshot; /* the snapshot directory */
    uint64_t bytes;
    time_t mtime;
    bool later_part; /* part 2 or later of a split GGUF (the first part opens the model) */
    bool mmproj;     /* a projector (lfm2c_hub_is_mmproj), not a model */
    bool companion;  /* an audio model's speech-output file (lfm2c_hub_is_companion), not a model */
} lfm2c_hub_file;
typedef void (*lfm2c_hub_visit)(void *user, const lfm2c_hub_file *f);

/* Calls fn for every GGUF file of the cache (of only_repo, case-insensitive, when given) whose
 * blob is there, in directory order. */
void lfm2c_hub_list(const char *cache, const char *only_repo, lfm2c_hub_visit fn, void *user);
/* The malloc'd path of the mmproj beside a model file (in its directory, lfm2c_hub_mmproj_pick),
 * or NULL when there is none. */
char *lfm2c_hub_mmproj_beside(const char *model_path);
/* Removes repo's GGUF files (only those of quant, when given: every part of a split file; an
 * mmproj goes only with the whole repository) and
 * their blobs, calling removed (optional) for each: the count removed, or -1 with err set. */
int lfm2c_hub_remove(const char *cache, const char *repo, const char *quant, lfm2c_hub_visit removed, void *user,
                     lfm2c_error *err);
#endif
