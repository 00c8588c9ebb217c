/* error.h — how the library reports errors: one convention for every layer of src/.
 *
 * The rule:
 *  - A function that can fail for a reason the caller should see takes `lfm2c_error *err` as its
 *    last parameter. err may be NULL (the caller only wants the failure value).
 *  - On failure it returns the failure value of its return type — NULL for a pointer, -1 for an
 *    int status (0 or a count on success), false for a bool — and err holds a code (LFM2C_E*;
 *    hub.h alone has its own LFM2C_HUB_E_* codes, numbered from 1 like these, so read a code
 *    against the header of the function that set it) and a one-line message naming the problem.
 *  - The message is written once, with lfm2c_set_error, where the cause is known. A caller that
 *    gets a failure from a callee that took err passes it up by returning its own failure value;
 *    it does not overwrite the message (it may put context in front of it, keeping one line).
 *  - On success err carries no new error: internal functions leave it alone; a public entry point
 *    may clear it first (lfm2c_model_open, the chat renderers).
 *  - Small helpers with one obvious way to fail (a lookup that finds nothing, a container that
 *    cannot grow) return NULL / -1 / false without err; their caller, which knows what was being
 *    done, sets the message.
 *  - Nothing in src/ prints, exits or reports through errno or a caller's text buffer.
 */
#ifndef LFM2C_ERROR_H
#define LFM2C_ERROR_H
#include "lfm2c.h"

/* Sets err->code and a printf-formatted one-line err->msg; err may be NULL. */
void lfm2c_set_error(lfm2c_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#endif
