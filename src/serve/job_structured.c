/* job_structured.c — vLLM's structured outputs on a chat or completion request: the
 * "structured_outputs" object ({"json": schema} | {"regex": R} | {"choice": [...]} |
 * {"json_object": true}) and the older top-level guided_json / guided_regex / guided_choice,
 * compiled into the job's output grammar (j->g_json) for chat and completions alike. A regex or a
 * choice constrains raw text (grammar_from_regex), a schema the JSON value (grammar.h). What we
 * cannot enforce (a context-free "grammar", a "structural_tag") is refused, never ignored. */
#include "chat/grammar.h"
#include "serve/job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SO_JSON, SO_REGEX, SO_CHOICE, SO_JSON_OBJECT, SO_GRAMMAR, SO_TAG, SO_N };
static const char *const SO_KEYS[SO_N] = {"json", "regex", "choice", "json_object", "grammar", "structural_tag"};
static const char *const GUIDED_KEYS[SO_N] = {"guided_json", "guided_regex",   "guided_choice",
                                              NULL,          "guided_grammar", NULL};
enum { SO_MAX_CHOICES = 4096 };

/* Is v a constraint that is given (json_object: only true)? */
static bool given(int kind, json_t *v) {
    if (!v || json_is_null(v)) return false;
    return kind != SO_JSON_OBJECT || !json_is_false(v);
}

/* The one constraint of body, its kind and the parameter that named it; -1 with e set when more
 * than one is given or structured_outputs is not an object; 0 with *kind = -1 when none is. */
static int find_constraint(json_t *body, int *kind, json_t **val, char *param, size_t pcap, http_err *e) {
    *kind = -1;
    json_t *so = json_object_get(body, "structured_outputs");
    if (so && !json_is_null(so) && !json_is_object(so))
        return http_set_err(e, 400, "invalid_type", "structured_outputs", "'structured_outputs' must be an object");
    for (int k = 0; k < SO_N; k++) {
        json_t *a = so ? json_object_get(so, SO_KEYS[k]) : NULL,
               *b = GUIDED_KEYS[k] ? json_object_get(body, GUIDED_KEYS[k]) : NULL;
        for (int side = 0; side < 2; side++) {
            json_t *v = side ? b : a;
            if (!given(k, v)) continue;
            char name[64];
            if (side) snprintf(name, sizeof name, "%s", GUIDED_KEYS[k]);
            else snprintf(name, sizeof name, "structured_outputs.%s", SO_KEYS[k]);
            if (*kind >= 0)
                return http_set_err(e, 400, "invalid_value", name,
                                    "only one structured output constraint per request ('%s' and '%s' given)", param,
                                    name);
            *kind = k, *val = v;
            snprintf(param, pcap, "%s", name);
        }
    }
    return 0;
}

/* The choices of a "choice" constraint compiled (the compile watched: grammar_from_choices). */
static grammar *choice_grammar(json_t *v, const volatile bool *gone, char *err, size_t cap) {
    const size_t n = json_array_size(v);
    const char **s = malloc((n + 1) * sizeof *s);
    size_t *len = malloc((n + 1) * sizeof *len);
    grammar *g = NULL;
    if (s && len) {
        for (size_t i = 0; i < n; i++)
            s[i] = json_string_value(json_array_get(v, i)), len[i] = json_string_length(json_array_get(v, i));
        g = grammar_from_choices(s, len, (int)n, gone, err, cap);
    } else snprintf(err, cap, "out of memory");
    free(s);
    free(len);
    return g;
}

/* The constraint compiled while a watcher checks the client (a pattern may take seconds within
 * its work budget; one whose client leaves stops). NULL with err set. */
static grammar *compile(http_req *q, int kind, json_t *v, char *err, size_t cap) {
    volatile bool gone = false;
    http_watch *w = q ? http_watch_start(q, &gone) : NULL;
    grammar *g = NULL;
    if (kind == SO_JSON_OBJECT) g = grammar_any_object();
    else if (kind == SO_REGEX) g = grammar_from_regex(json_string_value(v), json_string_length(v), &gone, err, cap);
    else if (kind == SO_CHOICE) g = choice_grammar(v, &gone, err, cap);
    else { /* a schema: an object, or its JSON text */
        char *st = json_is_string(v) ? strdup(json_string_value(v)) : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        g = st ? grammar_from_schema_cancel(st, &gone, err, cap) : NULL;
        if (!st) snprintf(err, cap, "out of memory");
        free(st);
    }
    http_watch_stop(w);
    if (!g && !err[0]) snprintf(err, cap, "out of memory");
    return g;
}

/* Checks a constraint's shape; -1 with e set. */
static int check_shape(int kind, json_t *v, const char *param, http_err *e) {
    switch (kind) {
    case SO_GRAMMAR:
        return http_set_err(e, 400, "invalid_value", param,
                            "context-free grammars are not supported; constrain with a JSON schema ('json'), a "
                            "regular expression ('regex') or a list of strings ('choice')");
    case SO_TAG:
        return http_set_err(e, 400, "invalid_value", param,
                            "'structural_tag' is not supported; for tool calls use 'tools' (they are constrained)");
    case SO_JSON:
        if (!json_is_object(v) && !json_is_string(v))
            return http_set_err(e, 400, "invalid_type", param, "'%s' must be a JSON schema (an object or its text)",
                                param);
        return 0;
    case SO_REGEX:
        if (!json_is_string(v)) return http_set_err(e, 400, "invalid_type", param, "'%s' must be a string", param);
        return 0;
    case SO_CHOICE:
        if (!json_is_array(v) || !json_array_size(v) || json_array_size(v) > SO_MAX_CHOICES)
            return http_set_err(e, 400, "invalid_value", param, "'%s' must be a list of 1 to %d strings", param,
                                SO_MAX_CHOICES);
        for (size_t i = 0; i < json_array_size(v); i++)
            if (!json_is_string(json_array_get(v, i)))
                return http_set_err(e, 400, "invalid_type", param, "'%s' must hold strings only", param);
        return 0;
    default:
        if (!json_is_boolean(v)) return http_set_err(e, 400, "invalid_type", param, "'%s' must be a boolean", param);
        return 0;
    }
}

int req_structured(job *j, json_t *body, http_err *e) {
    int kind;
    json_t *v = NULL;
    char param[64] = "";
    if (find_constraint(body, &kind, &v, param, sizeof param, e)) return -1;
    if (kind < 0) return 0;
    if (check_shape(kind, v, param, e)) return -1;
    if (j->g_json)
        return http_set_err(e, 400, "invalid_value", param, "'%s' cannot be combined with 'response_format'", param);
    char err[300] = "";
    j->g_json = compile(j->q, kind, v, err, sizeof err);
    if (!j->g_json) return http_set_err(e, 400, "invalid_value", param, "cannot constrain the output: %s", err);
    return 0;
}
