/* jinja.h — a small Jinja2 interpreter for chat templates.
 *
 * Parse a template once (jinja_parse), render it many times (jinja_render) with top-level
 * variables given as a JSON object. The semantics follow Python jinja2 3.x as Hugging Face
 * transformers configures it for chat templates (immutable sandbox, loopcontrols, a
 * {% generation %} tag, tojson = json.dumps(ensure_ascii=False), raise_exception, strftime_now),
 * with jinja2's default whitespace handling (trim_blocks/lstrip_blocks off, trailing newline
 * dropped). Printed values use Python str(); JSON objects keep their key order and ints stay
 * distinct from floats. Anything outside the supported subset is a clear error with a line
 * number, never a wrong rendering.
 *
 * A parsed template is immutable: several threads may render it at once. */
#ifndef LFM2C_JINJA_H
#define LFM2C_JINJA_H

#include "lfm2c.h"
#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

typedef struct jinja_template jinja_template;

/* Parse-time nesting limit: brackets and blocks, and the height of the syntax tree, which
 * operator and filter chains (a + b + c ..., x|e|e ...) grow without any brackets. It bounds the
 * C recursion of the parser's checks and of the evaluator, whatever the template. */
#define JINJA_MAX_NESTING 250

/* src need not be NUL-terminated; it must be valid UTF-8. NULL + err on a syntax error. */
jinja_template *jinja_parse(const char *src, size_t len, lfm2c_error *err);
void jinja_free(jinja_template *t);

/* A render's budget: a template is a program from a model file, run on every request. Zero in a
 * field means its default; a render that passes a limit fails with a clear error (no output). */
typedef struct jinja_options {
    time_t now;               /* clock for strftime_now (local time); 0 = the current time */
    size_t memory_limit;      /* bytes a render may allocate; 0 = JINJA_DEFAULT_MEMORY */
    uint64_t max_steps;       /* units of work (nodes evaluated, items and bytes built, elements compared) */
    size_t max_output;        /* bytes of rendered text */
    int max_depth;            /* nested evaluations (expressions, calls, macros) */
    double max_seconds;       /* wall time */
    const atomic_int *cancel; /* when non-NULL and non-zero, the render stops (LFM2C_ECANCELLED) */
} jinja_options;

/* Defaults: far above what chat templates need (the LFM2 template renders a 32K-token
 * conversation with tools in about a millisecond and ~10^5 steps) and far below harm. */
#define JINJA_DEFAULT_MEMORY ((size_t)256 << 20)
#define JINJA_DEFAULT_STEPS ((uint64_t)50 * 1000 * 1000)
#define JINJA_DEFAULT_OUTPUT ((size_t)32 << 20)
#define JINJA_DEFAULT_DEPTH 1000
#define JINJA_DEFAULT_SECONDS 5.0
/* Bytes all renders in progress in the process may hold together (each also has its own
 * memory_limit): parallel requests rendering a heavy template fail cleanly past it. */
#define JINJA_PROCESS_MEMORY ((size_t)512 << 20)
/* Sets that bound (0: JINJA_PROCESS_MEMORY); for tests and embedders. */
void jinja_set_process_memory(size_t bytes);
/* Bytes the renders in progress hold together now (what that bound is checked against). */
size_t jinja_process_memory_in_use(void);

/* vars: a JSON object (or NULL) whose members become the template's variables (null -> None).
 * Returns the malloc'd, NUL-terminated output (its length in *out_len when not NULL), or NULL
 * with err set when the template raises or fails. opt may be NULL. */
char *jinja_render(const jinja_template *t, const json_t *vars, const jinja_options *opt, size_t *out_len,
                   lfm2c_error *err);

/* The built-in LFM2 chat template (chat.c): used when a model file carries none. */
const char *lfm2c_chat_builtin_template(void);

#endif
