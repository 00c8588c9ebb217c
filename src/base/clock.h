/* clock.h — the one monotonic clock of the code: seconds since an arbitrary fixed point, as a
 * double. Timeouts, budgets, progress lines and benchmarks all read it; none of them needs the
 * wall clock (the server's Date-like fields read CLOCK_REALTIME where they need it). Internal:
 * not part of include/lfm2c.h. */
#ifndef LFM2C_BASE_CLOCK_H
#define LFM2C_BASE_CLOCK_H
#include <time.h>

#if defined(_WIN32)
double lfm2c_now_s(void); /* QueryPerformanceCounter: base/os_win32.c */
#else
static inline double lfm2c_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
#endif
#endif
