/* line_edit.h — one line of input for `lfm2c chat`, edited where the input is a terminal:
 * libedit's readline with its history on POSIX (where the build found libedit), the console's own
 * line editing on Windows (ReadConsoleW in line mode: arrows, Home / End, the up-arrow history of
 * the lines given, F7's list), UTF-8 either way; a plain read of stdin otherwise. */
#ifndef LFM2C_TOOLS_LINE_EDIT_H
#define LFM2C_TOOLS_LINE_EDIT_H
#include <signal.h>
#include <stdbool.h>

/* The next line (malloc'd, UTF-8, without its newline), prompt shown first where tty; NULL at the
 * end of input or when a Ctrl-C ended the wait (*interrupted, the caller's flag that its handler
 * sets, tells which; NULL: none). */
char *line_read(const char *prompt, bool tty, volatile sig_atomic_t *interrupted);
#endif
