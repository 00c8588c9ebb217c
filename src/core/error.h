/* error.h — how the library reports errors: fill the caller's lfm2c_error (if any). */
#ifndef LFM2C_ERROR_H
#define LFM2C_ERROR_H
#include "lfm2c.h"

/* Sets err->code and a printf-formatted one-line err->msg; err may be NULL. */
void lfm2c_set_error(lfm2c_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#endif
