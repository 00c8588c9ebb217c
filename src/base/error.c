/* error.c — the one place that formats library errors. */
#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>

void lfm2c_set_error(lfm2c_error *err, int code, const char *fmt, ...) {
    if (!err) return;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}
