/* line_edit.c — line_read (line_edit.h): libedit on a POSIX terminal, the Windows console's line
 * mode (base/os.h's os_console_line), else bytes from stdin up to a newline. */
#include "line_edit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/os.h"

#if !defined(_WIN32) && defined(LFM2C_HAVE_LIBEDIT)
#include <editline/readline.h>
#endif

/* stdin up to a newline (kept out), NULL at its end with nothing read */
static char *plain_line(void) {
    size_t n = 0, cap = 256;
    char *s = malloc(cap);
    int c = EOF;
    while (s && (c = getchar()) != EOF && c != '\n') {
        if (n + 1 == cap) {
            char *t = realloc(s, cap * 2);
            if (!t) break;
            s = t, cap *= 2;
        }
        s[n++] = (char)c;
    }
    if (!s || (c == EOF && (n == 0 || ferror(stdin)))) { /* (an error: a Ctrl-C ended the read) */
        free(s);
        return NULL;
    }
    s[n] = 0;
    return s;
}


char *line_read(const char *prompt, bool tty) {
    if (tty) {
#if defined(_WIN32)
        bool console = false;
        char *line = os_console_line(prompt, &console);
        if (console) return line;
#elif defined(LFM2C_HAVE_LIBEDIT)
        char *line = readline(prompt);
        if (line && *line) add_history(line);
        return line;
#endif
        fputs(prompt, stdout);
        fflush(stdout);
    }
    return plain_line();
}
