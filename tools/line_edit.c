/* line_edit.c — line_read (line_edit.h): libedit on a POSIX terminal, the Windows console's line
 * mode (base/os.h's os_console_line), else bytes from stdin up to a newline. */
#include "line_edit.h"

#include "base/os.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

#if defined(_WIN32)
/* A read of a pipe or a file cannot be interrupted on Windows (no EINTR; Wine cannot cancel
 * it either), so a reader thread reads the lines and the caller waits for the next one in 20 ms
 * slices, watching its interrupt flag: a Ctrl-C returns NULL at once, and the line being read
 * is the next call's. The thread reads past the C library's stream (os_read_stdin): blocked in
 * getchar it would hold stdin's lock, and the caller's clearerr(stdin), or the flush of every
 * stream at the exit, would wait for the next line. */
static char rd_buf[4096];
static size_t rd_at, rd_n;

/* stdin up to a newline (kept out) from rd_buf, NULL at its end with nothing read */
static char *raw_line(void) {
    size_t n = 0, cap = 256;
    char *s = malloc(cap);
    bool nl = false;
    while (s && !nl) {
        if (rd_at == rd_n) {
            const int64_t r = os_read_stdin(rd_buf, sizeof rd_buf);
            if (r <= 0) break;
            rd_at = 0, rd_n = (size_t)r;
        }
        const char c = rd_buf[rd_at++];
        if ((nl = c == '\n')) break;
        if (n + 1 == cap) {
            char *t = realloc(s, cap * 2);
            if (!t) break;
            s = t, cap *= 2;
        }
        s[n++] = c;
    }
    if (!s || (!nl && n == 0)) {
        free(s);
        return NULL;
    }
    s[n] = 0;
    return s;
}

static pthread_mutex_t rd_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t rd_cv = PTHREAD_COND_INITIALIZER;
static char *rd_line;
static bool rd_ready, rd_wanted, rd_started;

static void *reader(void *arg) {
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&rd_mu);
        while (!rd_wanted) pthread_cond_wait(&rd_cv, &rd_mu);
        rd_wanted = false;
        pthread_mutex_unlock(&rd_mu);
        char *line = raw_line();
        pthread_mutex_lock(&rd_mu);
        rd_line = line, rd_ready = true;
        pthread_cond_broadcast(&rd_cv);
        pthread_mutex_unlock(&rd_mu);
        if (!line) return NULL; /* the end of input stays the end */
    }
}

static char *threaded_line(volatile sig_atomic_t *interrupted) {
    pthread_t t;
    pthread_mutex_lock(&rd_mu);
    if (!rd_started && pthread_create(&t, NULL, reader, NULL) == 0) pthread_detach(t), rd_started = true;
    if (!rd_started) {
        pthread_mutex_unlock(&rd_mu);
        return plain_line();
    }
    if (!rd_ready) rd_wanted = true, pthread_cond_broadcast(&rd_cv);
    while (!rd_ready && !(interrupted && *interrupted)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&rd_cv, &rd_mu, &ts);
    }
    char *line = NULL;
    if (rd_ready) line = rd_line, rd_line = NULL, rd_ready = !line; /* (NULL: the end, for every later call) */
    pthread_mutex_unlock(&rd_mu);
    return line;
}
#endif

char *line_read(const char *prompt, bool tty, volatile sig_atomic_t *interrupted) {
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
#if defined(_WIN32)
    return threaded_line(interrupted);
#else
    (void)interrupted; /* a Ctrl-C ends the blocking read (EINTR) */
    return plain_line();
#endif
}
