/* test.h — a tiny test harness: CHECK records a failure and goes on; TEST_MAIN_END prints the
 * "N passed, N failed" line and sets the exit code. */
#ifndef LFM2C_TEST_H
#define LFM2C_TEST_H
#include <stdio.h>
#include <stdlib.h>
#include <math.h>

static int test_passed, test_failed;

#if defined(_WIN32) /* files are bytes, as on Linux (the CLI does the same: base/os.h's os_console_utf8) */
#include <fcntl.h>
__attribute__((constructor)) static void test_binary_files(void) { _fmode = _O_BINARY; }
#endif

#define CHECK(cond, ...) \
    do { \
        if (cond) { \
            test_passed++; \
        } else { \
            test_failed++; \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__); \
            fputc('\n', stderr); \
        } \
    } while (0)

#define TEST_MAIN_END() \
    do { \
        printf("%d passed, %d failed\n", test_passed, test_failed); \
        return test_failed ? 1 : 0; \
    } while (0)

/* Tests run with tests/ as the working directory. */
#define DATA(name) "data/" name

static inline void *test_read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = (char *)malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf) buf[n] = 0;
    fclose(f);
    if (size) *size = (size_t)n;
    return buf;
}

/* max |a[i] - b[i]| over n floats (a NaN difference is skipped). A comparison, not fmax: GCC 12
 * at -O3 crashes vectorising an fmax reduction for aarch64 (Debian 12's native and cross gcc). */
static inline double test_maxabs(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > m) m = d;
    }
    return m;
}

/* index of the largest value; ties to the lower index (the goldens' rule) */
static inline int test_argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}
#endif
