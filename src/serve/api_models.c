/* api_models.c — managing the models a server serves, in Ollama's API (what Open WebUI, the
 * ollama CLI and editor plugins call): GET /api/tags (every model, from its file's header:
 * family, parameter size, quantization), GET /api/ps (the loaded ones: size, size_vram,
 * expires_at, context length, device), POST /api/show (any model, loaded or not), POST /api/pull
 * (the Hub's GGUF into the Hugging Face cache through hub.c: NDJSON progress in Ollama's shape,
 * or one answer with stream false; resumed and sha256-checked; refused with --no-pull /
 * --offline, and 507 past --pull-max-bytes or --pull-min-free) and DELETE /api/delete (a cached model's files). Errors are Ollama's
 * {"error": "..."} (the /api/ path's shape); every route is behind --api-key. */
#include "serve/job.h"
#include "serve/models.h"
#include "hub/hub.h"
#include "base/clock.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- what a listing says of a model -------------------------------------------------------- */

static json_t *details(const model_row *m) {
    char size[32] = "", quant[32] = "";
    const lfm2c_model_info *mi = m->facts.ok ? &m->facts.info : NULL;
    double n = mi ? (double)mi->n_params : 0;
    if (n >= 1e9) snprintf(size, sizeof size, "%.1fB", n / 1e9);
    else if (n >= 1e6) snprintf(size, sizeof size, "%.0fM", n / 1e6);
    else if (n > 0) snprintf(size, sizeof size, "%.0fK", n / 1e3);
    const char *ft = mi ? lfm2c_file_type_name(mi->file_type) : NULL;
    if (ft) snprintf(quant, sizeof quant, "%s", ft);
    else if (!lfm2c_hub_quant_of(m->file, quant, sizeof quant)) snprintf(quant, sizeof quant, "unknown");
    const char *family = mi ? mi->arch : "";
    return json_pack("{s:s,s:s,s:s,s:[s],s:s,s:s}", "parent_model", "", "format", "gguf", "family", family, "families",
                     family, "parameter_size", size, "quantization_level", quant);
}

/* The model's name as Ollama lists it: NAME:TAG (":latest" where the id has no tag). */
static void name_of(const model_row *m, char *out, size_t cap) {
    snprintf(out, cap, "%s%s", m->id, strchr(m->id, ':') ? "" : ":latest");
}

/* A model (lora -1) or its adapter `lora` as MODEL:NAME (a request naming it runs with it). */
static json_t *tag_json(const model_row *m, bool ps, int lora) {
    char name[SERVER_MAX_MODEL_NAME + 80], dg[72], t[40];
    if (lora < 0) name_of(m, name, sizeof name);
    else snprintf(name, sizeof name, "%s:%s", m->id, m->lora_names[lora]);
    snprintf(dg, sizeof dg, "%s", m->digest);
    if (lora >= 0) snprintf(dg + 48, 17, "%016x", (unsigned)lora + 1u);
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:o}", "name", name, "model", name, "size",
                          (json_int_t)(ps ? m->bytes : m->file_bytes), "digest", dg, "details", details(m));
    if (ps) {
        if (m->expires >= MODELS_FOREVER) snprintf(t, sizeof t, "2318-01-01T00:00:00Z"); /* never (Ollama's -1) */
        else dl_iso_time((time_t)m->expires, t, sizeof t);
        json_object_set_new(o, "expires_at", json_string(t));
        json_object_set_new(o, "size_vram", json_integer(m->device_memory ? (json_int_t)m->bytes : 0));
        json_object_set_new(o, "context_length", json_integer(m->facts.ok ? m->facts.n_ctx : 0));
        json_object_set_new(o, "device", json_string(m->device));
    } else {
        dl_iso_time(m->mtime, t, sizeof t);
        json_object_set_new(o, "modified_at", json_string(t));
    }
    return o;
}

/* GET /api/tags (every model), GET /api/ps (the loaded ones). */
static int route_list(http_req *q, bool ps) {
    serve_shared *sh = http_app(q);
    model_row *rows = NULL;
    int n = sh->models ? models_list(sh->models, ps, &rows) : 0;
    json_t *models = json_array();
    for (int i = 0; i < n; i++)
        for (int k = -1; k < rows[i].n_lora; k++) json_array_append_new(models, tag_json(&rows[i], ps, k));
    free(rows);
    return http_send_json(q, 200, json_pack("{s:o}", "models", models));
}
static int route_tags(http_req *q, json_t *body) {
    (void)body;
    return route_list(q, false);
}
static int route_ps(http_req *q, json_t *body) {
    (void)body;
    return route_list(q, true);
}

/* The model a management body names ("model", or the older "name"): NULL after a 400. */
static const char *named_model(http_req *q, json_t *body) {
    json_t *m = json_object_get(body, "model");
    if (!m) m = json_object_get(body, "name");
    http_err e;
    if (req_model_name(body, &e)) return http_send_err(q, &e), NULL;
    if (!json_is_string(m) || json_string_length(m) > SERVER_MAX_MODEL_NAME || !json_string_length(m)) {
        http_set_err(&e, 400, "invalid_value", "model", "'model' is required (a model's name)");
        return http_send_err(q, &e), NULL;
    }
    return json_string_value(m);
}

static int not_found(http_req *q, const char *name) {
    http_err e;
    http_set_err(&e, 404, "model_not_found", "model", "model '%.200s' not found", name);
    return http_send_err(q, &e);
}

/* model_info as Ollama's show gives it: the GGUF's keys. */
static json_t *model_info(const lfm2c_model_info *mi) {
    char key[96];
    json_t *info = json_pack("{s:s,s:I,s:s}", "general.architecture", mi->arch, "general.parameter_count",
                             (json_int_t)mi->n_params, "general.name", mi->name);
#define ARCH_KEY(k, v) (snprintf(key, sizeof key, "%s." k, mi->arch), json_object_set_new(info, key, json_integer(v)))
    ARCH_KEY("context_length", mi->n_ctx_train);
    ARCH_KEY("embedding_length", mi->n_embd);
    ARCH_KEY("block_count", mi->n_layer);
    ARCH_KEY("attention.head_count", mi->n_head);
    ARCH_KEY("vocab_size", mi->n_vocab);
    if (mi->n_expert) {
        ARCH_KEY("expert_count", mi->n_expert);
        ARCH_KEY("expert_used_count", mi->n_expert_used);
    }
#undef ARCH_KEY
    return info;
}

/* POST /api/show: any model (its file's header read when it is not loaded). */
static int route_show(http_req *q, json_t *body) {
    serve_shared *sh = http_app(q);
    const char *name = named_model(q, body);
    if (!name) return 0;
    model_row m;
    if (!sh->models || !models_row(sh->models, name, &m)) return not_found(q, name);
    if (!m.facts.ok) {
        http_err e;
        http_set_err(&e, 500, "model_unreadable", "model", "cannot read the model file '%s'", m.file);
        return http_send_err(q, &e);
    }
    const model_facts *f = &m.facts;
    const char *tmpl = sh->p.chat_template ? sh->p.chat_template : f->tmpl;
    char params[256], modelfile[600], t[40];
    snprintf(params, sizeof params, "temperature %g\ntop_k %d\ntop_p %g\nmin_p %g\nrepeat_penalty %g\nnum_ctx %d",
             f->sampling.temperature, f->sampling.top_k, f->sampling.top_p, f->sampling.min_p,
             f->sampling.repeat_penalty, f->n_ctx);
    snprintf(modelfile, sizeof modelfile, "# served by lfm2c\nFROM %s\n", m.file);
    dl_iso_time(m.mtime, t, sizeof t);
    json_t *caps = json_pack("[s,s]", "completion", "tools");
    if (tmpl && strstr(tmpl, LFM2C_THINK_OPEN))
        json_array_append_new(caps, json_string("thinking")); /* a thinking model's template */
    return http_send_json(q, 200,
                          json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:s}", "modelfile", modelfile, "parameters", params,
                                    "template", tmpl ? tmpl : "", "details", details(&m), "model_info",
                                    model_info(&f->info), "capabilities", caps, "modified_at", t));
}

/* DELETE /api/delete: a model of the cache, its files removed (a file given to the server: 400). */
static int route_delete(http_req *q, json_t *body) {
    serve_shared *sh = http_app(q);
    const char *name = named_model(q, body);
    if (!name) return 0;
    int status = 0;
    char msg[400] = "";
    if (!sh->models || models_delete(sh->models, name, &status, msg, sizeof msg)) {
        if (status == 404 || !sh->models) return not_found(q, name);
        http_err e;
        http_set_err(&e, status, status == 400 ? "invalid_value" : NULL, "model", "%s", msg);
        return http_send_err(q, &e);
    }
    return http_send_json(q, 200, json_object());
}

/* ---- POST /api/pull ---------------------------------------------------------------------------- */

/* A pull runs on its own thread; its NDJSON lines wait in `out` for the stream (or the whole
 * answer) to take them. Both hold a reference: the last one frees it. */
typedef struct pull {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    char spec[SERVER_MAX_MODEL_NAME + 1], id[SERVER_MAX_MODEL_NAME + 1];
    char *out; /* lines not yet sent */
    size_t n_out, cap_out, off_out;
    bool done, ok, stream;
    int status; /* with !ok: the HTTP status of the failure */
    char error[600];
    char file[256];
    int last_pct;
    volatile sig_atomic_t cancel; /* the client left */
    serve_shared *sh;
    int fd;
} pull;

static pthread_mutex_t pull_one = PTHREAD_MUTEX_INITIALIZER; /* pulls run one at a time (the same blobs) */

static void pull_unref(pull *p) {
    pthread_mutex_lock(&p->mu);
    int left = --p->refs;
    pthread_mutex_unlock(&p->mu);
    if (left) return;
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->out);
    free(p);
}

/* One NDJSON line for the client (steals o). */
static void pull_line(pull *p, json_t *o) {
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s) return;
    size_t n = strlen(s);
    pthread_mutex_lock(&p->mu);
    if (p->stream && p->n_out + n + 1 <= (1u << 20)) { /* a client that reads nothing holds 1 MiB at most */
        if (p->n_out + n + 2 > p->cap_out) {
            size_t cap = (p->n_out + n + 2) * 2;
            char *no = realloc(p->out, cap);
            if (no) p->out = no, p->cap_out = cap;
        }
        if (p->n_out + n + 2 <= p->cap_out) {
            memcpy(p->out + p->n_out, s, n);
            p->out[p->n_out + n] = '\n';
            p->n_out += n + 1;
        }
    }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    free(s);
}

static void pull_status(pull *p, const char *status) { pull_line(p, json_pack("{s:s}", "status", status)); }

/* hub.c's progress: Ollama's {"status": "pulling DIGEST", digest, total, completed} (a line per
 * percent at most). */
static void on_progress(void *user, const char *file, uint64_t done, uint64_t total, uint64_t resumed, bool finished) {
    pull *p = user;
    (void)resumed;
    int pct = total ? (int)(100.0 * (double)done / (double)total) : 0;
    if (!strcmp(p->file, file) && pct == p->last_pct && !finished) return;
    snprintf(p->file, sizeof p->file, "%s", file);
    p->last_pct = pct;
    char status[300];
    snprintf(status, sizeof status, "pulling %s", file);
    pull_line(p, json_pack("{s:s,s:s,s:I,s:I}", "status", status, "digest", file, "total", (json_int_t)total,
                           "completed", (json_int_t)done));
}

static int hub_status(int code) {
    switch (code) {
    case LFM2C_HUB_E_ARG: return 400;
    case LFM2C_HUB_E_NOT_FOUND: return 404;
    case LFM2C_HUB_E_AUTH: return 403;
    case LFM2C_HUB_E_NET:
    case LFM2C_HUB_E_VERIFY: return 502;
    case LFM2C_HUB_E_SPACE: return 507; /* Insufficient Storage */
    default: return 500;
    }
}

/* Takes a place among the server's pulls (its stop cancels them): false when there is none. */
static bool pull_register(serve_shared *sh, pull *p) {
    pthread_mutex_lock(&sh->mu);
    bool ok = !sh->stopping && sh->n_pulls < SERVER_MAX_PULLS;
    if (ok) sh->pulls[sh->n_pulls++] = &p->cancel;
    pthread_mutex_unlock(&sh->mu);
    return ok;
}

static void pull_unregister(serve_shared *sh, pull *p) {
    pthread_mutex_lock(&sh->mu);
    for (int i = 0; i < sh->n_pulls; i++)
        if (sh->pulls[i] == &p->cancel) sh->pulls[i] = sh->pulls[--sh->n_pulls];
    pthread_cond_broadcast(&sh->pull_cv);
    pthread_mutex_unlock(&sh->mu);
}

/* The pull itself (its thread): hub.c into the cache, then the model into the registry. */
static void *pull_main(void *arg) {
    pull *p = arg;
    serve_shared *sh = p->sh;
    pthread_mutex_lock(&pull_one);
    pull_status(p, "pulling manifest");
    lfm2c_hub_params hp = {.cache_dir = p->sh->p.cache_dir,
                           .progress = on_progress,
                           .progress_user = p,
                           .cancel = &p->cancel,
                           .max_bytes = sh->p.pull_max_bytes,
                           .min_free = sh->p.pull_min_free};
    const char *r = getenv("LFM2C_HUB_RETRIES"), *b = getenv("LFM2C_HUB_BACKOFF_MS"); /* for tests */
    if (r) hp.max_retries = atoi(r);
    if (b) hp.backoff_ms = atoi(b);
    lfm2c_error err = {0};
    char *mmproj = NULL; /* fetched beside the model: the registry pairs them (models.c) */
    hp.mmproj = &mmproj;
    char *path = lfm2c_hub_pull(p->spec, NULL, &hp, &err);
    free(mmproj);
    pthread_mutex_unlock(&pull_one);
    char id[SERVER_MAX_MODEL_NAME + 1] = "";
    if (path) {
        pull_status(p, "verifying sha256 digest");
        pull_status(p, "writing manifest");
        if (!p->sh->models || models_add_pulled(p->sh->models, path, id, sizeof id)) id[0] = 0;
        pull_line(p, json_pack("{s:s,s:s}", "status", "success", "model", id[0] ? id : p->spec));
    } else {
        if (err.code == LFM2C_HUB_E_SPACE) /* the server's bounds: say which options set them */
            snprintf(err.msg + strlen(err.msg), sizeof err.msg - strlen(err.msg),
                     " (serve --pull-max-bytes, --pull-min-free)");
        pull_line(p, json_pack("{s:s}", "error", err.msg));
    }
    free(path);
    pthread_mutex_lock(&p->mu);
    p->done = true;
    p->ok = path != NULL;
    p->status = p->ok ? 200 : hub_status(err.code);
    snprintf(p->error, sizeof p->error, "%s", err.msg);
    snprintf(p->id, sizeof p->id, "%s", id);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pull_unregister(sh, p); /* last: the server's stop waits for this */
    pull_unref(p);
    return NULL;
}

static ssize_t pull_read(void *cls, char *buf, size_t max, http_log *log) {
    pull *p = cls;
    (void)log;
    pthread_mutex_lock(&p->mu);
    while (p->off_out == p->n_out && !p->done) {
        if (http_fd_gone(p->fd)) {
            pthread_mutex_unlock(&p->mu);
            return HTTP_STREAM_ERROR;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    ssize_t n = HTTP_STREAM_END;
    if (p->off_out < p->n_out) {
        size_t k = p->n_out - p->off_out;
        if (k > max) k = max;
        memcpy(buf, p->out + p->off_out, k);
        p->off_out += k;
        if (p->off_out == p->n_out) p->off_out = p->n_out = 0;
        n = (ssize_t)k;
    }
    pthread_mutex_unlock(&p->mu);
    return n;
}

static void pull_done(void *cls, http_log *log) {
    pull *p = cls;
    pthread_mutex_lock(&p->mu);
    if (!p->done) {
        p->cancel = 1; /* the client left: the download stops (a later pull resumes it) */
        log->status = 499;
    }
    pthread_mutex_unlock(&p->mu);
    pull_unref(p);
}

/* Whether this server may pull: 0, or the refusal answered. */
static int pull_refused(http_req *q, serve_shared *sh) {
    http_err e;
#ifndef LFM2C_HAVE_HUB
    http_set_err(&e, 501, "not_implemented", NULL,
                 "this lfm2c was built without libcurl: it cannot pull models (lfm2c pull elsewhere, or -m FILE)");
    return http_send_err(q, &e), -1;
#endif
    if (sh->p.no_pull || sh->p.offline) {
        http_set_err(&e, 403, "pull_refused", NULL,
                     "this server does not pull models (started with %s): pull with `lfm2c pull ORG/NAME[:QUANT]` "
                     "where there is a network, then ask again",
                     sh->p.no_pull ? "--no-pull" : "--offline");
        return http_send_err(q, &e), -1;
    }
    return 0;
}

/* The pull's one answer (stream false): success, or its error with the status hub.c's code gives. */
static int pull_wait(http_req *q, pull *p) {
    pthread_mutex_lock(&p->mu);
    while (!p->done) {
        if (http_client_gone(q)) {
            p->cancel = 1;
            pthread_mutex_unlock(&p->mu);
            pull_unref(p);
            return http_drop(q);
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    bool ok = p->ok;
    int status = p->status;
    char error[600], id[SERVER_MAX_MODEL_NAME + 1];
    snprintf(error, sizeof error, "%s", p->error);
    snprintf(id, sizeof id, "%s", p->id);
    pthread_mutex_unlock(&p->mu);
    pull_unref(p);
    if (ok) return http_send_json(q, 200, json_pack("{s:s,s:s}", "status", "success", "model", id));
    http_err e;
    http_set_err(&e, status, NULL, "model", "%s", error);
    return http_send_err(q, &e);
}

/* POST /api/pull {"model": "ORG/NAME[:QUANT]", "stream": true} */
static int route_pull(http_req *q, json_t *body) {
    serve_shared *sh = http_app(q);
    const char *name = named_model(q, body);
    if (!name || pull_refused(q, sh)) return 0;
    json_t *stream = json_object_get(body, "stream");
    http_err e;
    if (stream && !json_is_null(stream) && !json_is_boolean(stream)) {
        http_set_err(&e, 400, "invalid_type", "stream", "'stream' must be a boolean");
        return http_send_err(q, &e);
    }
    pull *p = calloc(1, sizeof *p);
    if (!p) return http_set_err(&e, 500, NULL, NULL, "out of memory"), http_send_err(q, &e);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->refs = 2;
    p->sh = sh;
    p->stream = !json_is_false(stream);
    p->fd = http_req_fd(q);
    p->last_pct = -1;
    dl_copy_text(p->spec, sizeof p->spec, name);
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    bool placed = pull_register(sh, p);
    int bad = !placed || pthread_create(&t, &at, pull_main, p);
    pthread_attr_destroy(&at);
    if (bad) {
        if (placed) pull_unregister(sh, p);
        p->refs = 1;
        pull_unref(p);
        return http_set_err(&e, 503, "server_overloaded", NULL, "%d pulls are in progress: retry later",
                            SERVER_MAX_PULLS),
               http_send_err(q, &e);
    }
    if (!p->stream) return pull_wait(q, p);
    return http_send_stream(q, "application/x-ndjson", pull_read, pull_done, p);
}

const http_route models_routes[] = {
    {HTTP_GET | HTTP_HEAD, "/api/tags", route_tags, 0, NULL},
    {HTTP_GET | HTTP_HEAD, "/api/ps", route_ps, 0, NULL},
    {HTTP_POST, "/api/show", route_show, 0, NULL},
    {HTTP_POST, "/api/pull", route_pull, 0, NULL},
    {HTTP_DELETE, "/api/delete", route_delete, HTTP_BODY, NULL},
};
const int models_n_routes = sizeof models_routes / sizeof *models_routes;
