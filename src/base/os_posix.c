/* os_posix.c — the platform layer (os.h) on Linux and the other POSIX systems: thin wrappers over
 * the system calls the code used directly before it had a Windows build, with the same flags, so
 * nothing changes on Linux. Compiled everywhere but Windows (the whole file is inside #if). */
#if !defined(_WIN32)
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "base/os.h"
#include "base/os_net.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <locale.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <wctype.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <sys/syscall.h>
#endif

/* ---- files and directories ---- */

FILE *os_fopen(const char *path, const char *mode) { return fopen(path, mode); }

int os_stat(const char *path, os_stat_t *out) {
    struct stat st;
    if (stat(path, &st)) return -1;
    *out = (os_stat_t){.size = (uint64_t)st.st_size,
                       .is_file = S_ISREG(st.st_mode),
                       .is_dir = S_ISDIR(st.st_mode),
                       .dev = (uint64_t)st.st_dev,
                       .ino = (uint64_t)st.st_ino,
                       .mtime = (int64_t)st.st_mtime};
    return 0;
}

bool os_exists(const char *path) { return access(path, F_OK) == 0; }

int64_t os_disk_free(const char *path) {
    struct statvfs v;
    if (statvfs(path, &v)) return -1;
    const uint64_t b = (uint64_t)v.f_bavail * (uint64_t)v.f_frsize;
    return b > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)b;
}
int os_mkdir(const char *path) { return mkdir(path, 0755); }
int os_remove(const char *path) { return unlink(path); }
int os_rmdir(const char *path) { return rmdir(path); }
char *os_mkdtemp(char *tmpl) { return mkdtemp(tmpl); }

/* (written once for both halves: it uses only the layer's own calls) */
int os_remove_tree(const char *path) {
    os_stat_t st;
    char link[8];
    if (os_readlink(path, link, sizeof link) >= 0 || os_stat(path, &st) || !st.is_dir)
        return os_remove(path) == 0 || !os_exists(path) ? 0 : -1;
    os_dir *d = os_opendir(path);
    int rc = d ? 0 : -1;
    size_t n = strlen(path);
    for (const char *e; d && (e = os_readdir(d));) {
        if (!strcmp(e, ".") || !strcmp(e, "..")) continue;
        char *sub = malloc(n + strlen(e) + 2);
        if (!sub) {
            rc = -1;
            break;
        }
        snprintf(sub, n + strlen(e) + 2, "%s/%s", path, e);
        if (os_remove_tree(sub)) rc = -1;
        free(sub);
    }
    os_closedir(d);
    return os_rmdir(path) == 0 ? rc : -1;
}

int os_rename(const char *from, const char *to) { return rename(from, to); }
char *os_realpath(const char *path) { return realpath(path, NULL); }
int os_symlink(const char *target, const char *link) { return symlink(target, link); }

int os_readlink(const char *path, char *buf, size_t cap) {
    if (cap == 0) return -1;
    ssize_t n = readlink(path, buf, cap - 1);
    if (n < 0) return -1;
    buf[n] = 0;
    return (int)n;
}

int os_ftruncate(FILE *f, uint64_t len) {
    fflush(f);
    return ftruncate(fileno(f), (off_t)len);
}

FILE *os_memstream_open(os_memstream *m) {
    *m = (os_memstream){0};
    return m->f = open_memstream(&m->buf, &m->len);
}

char *os_memstream_close(os_memstream *m, size_t *len) {
    fclose(m->f);
    if (len) *len = m->len;
    return m->buf;
}

int os_truncate(const char *path, uint64_t len) { return truncate(path, (off_t)len); }

bool os_is_sep(char c) { return c == '/'; }
bool os_path_is_abs(const char *path) { return path[0] == '/'; }

const char *os_home(void) {
    const char *h = getenv("HOME");
    return h && *h ? h : NULL;
}

struct os_dir {
    DIR *d;
};

os_dir *os_opendir(const char *path) {
    DIR *d = opendir(path);
    os_dir *o = d ? malloc(sizeof *o) : NULL;
    if (!o) {
        if (d) closedir(d);
        return NULL;
    }
    o->d = d;
    return o;
}

const char *os_readdir(os_dir *o) {
    struct dirent *e = readdir(o->d);
    return e ? e->d_name : NULL;
}

void os_closedir(os_dir *o) {
    if (!o) return;
    closedir(o->d);
    free(o);
}

/* ---- handles and mappings ---- */

os_fd os_open_read(const char *path) { return open(path, O_RDONLY | O_CLOEXEC); }

int64_t os_fd_size(os_fd fd) {
    struct stat st;
    if (fstat((int)fd, &st) != 0 || !S_ISREG(st.st_mode)) return -1;
    return (int64_t)st.st_size;
}

int64_t os_pread(os_fd fd, void *buf, size_t n, uint64_t off) { return pread((int)fd, buf, n, (off_t)off); }
void os_fd_close(os_fd fd) {
    if (fd >= 0) close((int)fd);
}

void *os_map_read(os_fd fd, size_t size) {
    void *p = mmap(NULL, size, PROT_READ, MAP_SHARED, (int)fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

void os_unmap(void *p, size_t size) {
    if (p) munmap(p, size);
}

int os_advise(void *p, size_t size, int advice) {
    switch (advice) {
#ifdef MADV_HUGEPAGE
    case OS_ADV_HUGE: return madvise(p, size, MADV_HUGEPAGE);
#endif
#ifdef MADV_POPULATE_READ
    case OS_ADV_POPULATE: return madvise(p, size, MADV_POPULATE_READ);
#endif
    case OS_ADV_WILLNEED: return madvise(p, size, MADV_WILLNEED);
    case OS_ADV_DONTNEED: return madvise(p, size, MADV_DONTNEED);
    default: return -1;
    }
}

int os_protect(void *p, size_t size, bool writable) {
    return mprotect(p, size, writable ? PROT_READ | PROT_WRITE : PROT_READ);
}

/* ---- memory ---- */

void *os_aligned_alloc(size_t align, size_t size) {
    return aligned_alloc(align, (size + align - 1) / align * align); /* C11: a multiple of align */
}
void os_aligned_free(void *p) { free(p); }

/* mmap align more than asked, keep the aligned part, advise it into huge pages */
void *os_pages_alloc(size_t size, size_t align) {
#if defined(__linux__)
    uint8_t *raw = mmap(NULL, size + align, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
    if (p > raw) munmap(raw, (size_t)(p - raw));
    munmap(p + size, (size_t)(raw + align - p)); /* the tail past the aligned length */
#ifdef MADV_HUGEPAGE
    madvise(p, size, MADV_HUGEPAGE);
#endif
    return p;
#else
    void *p = aligned_alloc(align, size);
    if (p) memset(p, 0, size);
    return p;
#endif
}

void os_pages_free(void *p, size_t size) {
    if (!p) return;
#if defined(__linux__)
    munmap(p, size);
#else
    (void)size;
    free(p);
#endif
}

size_t os_page_size(void) {
    long ps = sysconf(_SC_PAGESIZE);
    return ps > 0 ? (size_t)ps : 4096;
}

/* One number from a file (a cgroup's memory.max reads "max" when there is none: false). */
static bool read_u64_file(const char *path, uint64_t *v) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    unsigned long long x;
    const bool ok = fscanf(f, "%llu", &x) == 1;
    fclose(f);
    if (ok) *v = (uint64_t)x;
    return ok;
}

/* KEY's value in a cgroup's memory.stat ("KEY VALUE" lines). */
static bool stat_value(const char *path, const char *key, uint64_t *v) {
    char line[256];
    const size_t n = strlen(key);
    FILE *f = fopen(path, "r");
    bool ok = false;
    while (f && !ok && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ' ') *v = strtoull(line + n + 1, NULL, 10), ok = true;
    if (f) fclose(f);
    return ok;
}

/* The v1 memory controller's effective cap: memory.stat's hierarchical_memory_limit (the least of
 * this cgroup's and its parents'), else its own limit_in_bytes. */
static bool cgroup_v1_limit(const char *dir, uint64_t *limit) {
    char path[1200];
    snprintf(path, sizeof path, "%s/memory.stat", dir);
    if (stat_value(path, "hierarchical_memory_limit", limit)) return true;
    snprintf(path, sizeof path, "%s/memory.limit_in_bytes", dir);
    return read_u64_file(path, limit);
}

/* The memory cap of the cgroup this process is in, and what the cgroup uses now (the page cache of
 * its mapped files included): a container's or a `systemd-run -p MemoryMax=` limit, which
 * /proc/meminfo does not show; the usage less the inactive file pages (what the kernel frees first,
 * as container tools count a working set). /proc/self/cgroup names the cgroup: v2 (its "0::/path" line;
 * memory.max / memory.current, the least memory.max up to the mount) or v1 (the line whose
 * controllers include memory; memory.limit_in_bytes / memory.usage_in_bytes), looked for under the
 * mount point, then at the mount itself (a cgroup namespace whose root is the mount). False: none. */
static bool cgroup_mem(uint64_t *limit, uint64_t *usage) {
    char line[1024], dir[1100], path[1200];
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return false;
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2 || c2[1] != '/') continue;
        *c2 = 0;
        const char *ctl = c1 + 1, *rel = c2 + 1;
        const bool v2 = !strcmp(line, "0:"); /* "0::/path" */
        bool v1 = false;
        char ctls[256], *sv = NULL;
        snprintf(ctls, sizeof ctls, "%s", ctl);
        for (char *t = strtok_r(ctls, ",", &sv); t && !v2; t = strtok_r(NULL, ",", &sv)) v1 |= !strcmp(t, "memory");
        if (!v1 && !v2) continue;
        const char *mnt = v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory";
        for (int pass = 0; pass < 2 && !found; pass++) {
            snprintf(dir, sizeof dir, "%s%s", mnt, pass || !strcmp(rel, "/") ? "" : rel);
            snprintf(path, sizeof path, "%s/%s", dir, v2 ? "memory.current" : "memory.usage_in_bytes");
            if (!read_u64_file(path, usage)) continue;
            uint64_t lim = UINT64_MAX, l;
            if (v1) {
                if (!cgroup_v1_limit(dir, &lim)) continue;
            } else
                for (size_t n = strlen(dir); n >= strlen(mnt); n = (size_t)(strrchr(dir, '/') - dir)) {
                    dir[n] = 0; /* this folder, then each parent's */
                    snprintf(path, sizeof path, "%s/memory.max", dir);
                    if (read_u64_file(path, &l) && l < lim) lim = l; /* "max" reads as none */
                }
            *limit = lim;
            found = lim < (1ull << 60); /* v1's "none" is ~2^63 */
            uint64_t cold = 0;          /* file pages not recently used: the kernel frees them first */
            snprintf(path, sizeof path, "%s%s/memory.stat", mnt, pass || !strcmp(rel, "/") ? "" : rel);
            if (found && stat_value(path, v2 ? "inactive_file" : "total_inactive_file", &cold))
                *usage = cold < *usage ? *usage - cold : 0;
        }
    }
    fclose(f);
    return found;
}

uint64_t os_phys_mem(void) {
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
    uint64_t ram = pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0, lim, use;
    return cgroup_mem(&lim, &use) && (ram == 0 || lim < ram) ? lim : ram;
}

int64_t os_mem_available(void) {
    char line[256];
    long long avail_kb = -1;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %lld kB", &avail_kb) == 1) break;
        fclose(f);
    }
    int64_t avail = avail_kb < 0 ? -1 : (int64_t)avail_kb * 1024;
    uint64_t lim, use;
    if (cgroup_mem(&lim, &use)) { /* what the cap leaves */
        const int64_t room = use < lim ? (int64_t)(lim - use) : 0;
        if (avail < 0 || room < avail) avail = room;
    }
    return avail;
}

void os_huge_pages_mode(char *buf, size_t cap) {
    buf[0] = 0;
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return;
    if (!fgets(buf, (int)cap, f)) buf[0] = 0;
    fclose(f);
}

uint64_t os_rss_peak_kb(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) ? 0 : (uint64_t)ru.ru_maxrss;
}

/* ---- CPUs, threads, waiting ---- */

int os_cpus_online(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

#if defined(__linux__)
static bool allowed_set(cpu_set_t *set) {
    CPU_ZERO(set);
    return sched_getaffinity(0, sizeof *set, set) == 0 && CPU_COUNT(set) > 0;
}

static long read_topology(int cpu, const char *what) {
    char path[128];
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/%s", cpu, what);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    if (fscanf(f, "%ld", &v) != 1) v = -1;
    fclose(f);
    return v;
}
#endif

int os_cpus_allowed(void) {
#if defined(__linux__)
    cpu_set_t set;
    if (allowed_set(&set)) return CPU_COUNT(&set);
#endif
    return os_cpus_online();
}

int os_cores_allowed(void) {
#if defined(__linux__)
    cpu_set_t set;
    if (!allowed_set(&set)) return os_cpus_allowed();
    /* distinct (package, core) pairs among the allowed CPUs */
    long(*seen)[2] = malloc(sizeof *seen * CPU_SETSIZE);
    if (!seen) return CPU_COUNT(&set);
    int n_cores = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &set)) continue;
        long pkg = read_topology(cpu, "physical_package_id"), core = read_topology(cpu, "core_id");
        if (pkg < 0 || core < 0) {
            free(seen);
            return CPU_COUNT(&set);
        }
        int k = 0;
        while (k < n_cores && !(seen[k][0] == pkg && seen[k][1] == core)) k++;
        if (k == n_cores) {
            seen[n_cores][0] = pkg;
            seen[n_cores][1] = core;
            n_cores++;
        }
    }
    free(seen);
    return n_cores > 0 ? n_cores : CPU_COUNT(&set);
#else
    return os_cpus_allowed();
#endif
}

void os_word_wait(atomic_uint *w, unsigned expected) {
#if defined(__linux__)
    syscall(SYS_futex, (unsigned *)w, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
#else
    (void)w, (void)expected;
#endif
}

void os_word_wake(atomic_uint *w, int count) {
#if defined(__linux__)
    syscall(SYS_futex, (unsigned *)w, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
#else
    (void)w, (void)count;
#endif
}

int os_thread_stat_open(void) {
#if defined(__linux__)
    return open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
#else
    return -1;
#endif
}

/* run-queue delay (seconds) in the second field of a schedstat file */
double os_thread_wait_s(int h) {
    char buf[128];
    ssize_t n = h >= 0 ? pread(h, buf, sizeof buf - 1, 0) : -1;
    if (n <= 0) return -1;
    buf[n] = 0;
    unsigned long long run, wait;
    return sscanf(buf, "%llu %llu", &run, &wait) == 2 ? 1e-9 * (double)wait : -1;
}

void os_thread_stat_close(int h) {
    if (h >= 0) close(h);
}

/* the 4th field of /proc/loadavg, "R/T" */
int os_procs_running(void) {
    int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[128];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    int running;
    return sscanf(buf, "%*f %*f %*f %d/", &running) == 1 ? running : -1;
}

void os_sleep_s(double s) {
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) && errno == EINTR) {}
}

int os_pid(void) { return (int)getpid(); }

uint64_t os_hwcap(int n) {
#if defined(__linux__) && defined(AT_HWCAP2)
    return getauxval(n == 2 ? AT_HWCAP2 : AT_HWCAP);
#else
    (void)n;
    return 0;
#endif
}

bool os_amx_permit(void) {
#if defined(__linux__) && defined(SYS_arch_prctl)
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
#else
    return false;
#endif
}

/* ---- random bytes, time ---- */

bool os_random(void *buf, size_t n) {
    size_t got = 0;
#if defined(__linux__)
    while (got < n) {
        ssize_t k = getrandom((char *)buf + got, n - got, GRND_NONBLOCK);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    if (got == n) return true;
#endif
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    while (got < n) {
        ssize_t k = read(fd, (char *)buf + got, n - got);
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(fd);
    return got == n;
}

struct tm *os_localtime(time_t t, struct tm *out) {
    return localtime_r(&t, out);
}
struct tm *os_gmtime(time_t t, struct tm *out) {
    return gmtime_r(&t, out);
}
time_t os_timegm(struct tm *tm) { return timegm(tm); }

/* ---- locales ---- */

os_ctype *os_ctype_new(void) { return (os_ctype *)newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0); }
void os_ctype_free(os_ctype *c) {
    if (c) freelocale((locale_t)c);
}
uint32_t os_towlower(os_ctype *c, uint32_t cp) { return (uint32_t)towlower_l((wint_t)cp, (locale_t)c); }
uint32_t os_towupper(os_ctype *c, uint32_t cp) { return (uint32_t)towupper_l((wint_t)cp, (locale_t)c); }
bool os_iswclass(os_ctype *c, uint32_t cp, int cls) {
    locale_t l = (locale_t)c;
    return cls == OS_WDIGIT   ? iswdigit_l((wint_t)cp, l) != 0
           : cls == OS_WALPHA ? iswalpha_l((wint_t)cp, l) != 0
                              : iswalnum_l((wint_t)cp, l) != 0;
}

os_c_numeric os_c_numeric_begin(void) {
    os_c_numeric s = {0};
    locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (c) s.c = c, s.old = uselocale(c);
    return s;
}

void os_c_numeric_end(os_c_numeric s) {
    if (!s.c) return;
    uselocale((locale_t)s.old);
    freelocale((locale_t)s.c);
}

/* ---- the terminal and the process ---- */

bool os_isatty(FILE *f) { return isatty(fileno(f)) != 0; }
int os_setenv(const char *name, const char *value) { return setenv(name, value, 1); }
void os_console_utf8(int *argc, char ***argv) { (void)argc, (void)argv; }
char *os_console_line(const char *prompt, bool *console) {
    (void)prompt;
    *console = false;
    return NULL;
}

void os_stderr_to_stdout(void) { dup2(1, 2); }

int64_t os_read_stdin(void *buf, size_t n) {
    ssize_t r;
    do r = read(0, buf, n);
    while (r < 0 && errno == EINTR);
    return r;
}

static void (*interrupt_fn)(void);
static void on_sigint(int sig) {
    (void)sig;
    if (interrupt_fn) interrupt_fn();
}

void os_on_interrupt(void (*fn)(void)) {
    interrupt_fn = fn;
    struct sigaction sa = {0};
    sa.sa_handler = fn ? on_sigint : SIG_DFL; /* no SA_RESTART: a blocking read returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

static sigset_t stop_set;

void os_stop_block(void) {
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_set, NULL);
}

int os_stop_wait(double timeout_s) {
    int sig = -1;
    if (timeout_s < 0) {
        if (sigwait(&stop_set, &sig)) return 0;
    } else {
        struct timespec ts = {(time_t)timeout_s, (long)((timeout_s - (double)(time_t)timeout_s) * 1e9)};
        while ((sig = sigtimedwait(&stop_set, NULL, &ts)) < 0 && errno == EINTR) {}
    }
    return sig == SIGINT ? OS_STOP_INT : sig == SIGTERM ? OS_STOP_TERM : 0;
}

void os_ignore_broken_pipe(void) {
    signal(SIGPIPE, SIG_IGN);
#ifdef SIGXFSZ
    signal(SIGXFSZ, SIG_IGN);
#endif
}

_Noreturn void os_exit_now(int code) { _exit(code); }

/* ---- sockets (os_net.h) ---- */

bool os_net_init(void) { return true; }

bool os_own_ipv4(uint32_t addr) {
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs)) return false;
    bool hit = false;
    for (struct ifaddrs *i = ifs; i && !hit; i = i->ifa_next)
        hit = i->ifa_addr && i->ifa_addr->sa_family == AF_INET &&
              ((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr.s_addr == addr;
    freeifaddrs(ifs);
    return hit;
}

int os_tcp_connect(const char *host, int port, double timeout_s) {
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    if (getaddrinfo(host, ps, &hints, &res) || !res) return errno = EHOSTUNREACH, -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {(time_t)timeout_s, (suseconds_t)((timeout_s - (double)(time_t)timeout_s) * 1e6)};
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen)) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

int64_t os_sock_send(int fd, const void *buf, size_t n) { return send(fd, buf, n, MSG_NOSIGNAL); }
int64_t os_sock_send_nowait(int fd, const void *buf, size_t n) { return send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT); }
int64_t os_sock_recv(int fd, void *buf, size_t n) { return recv(fd, buf, n, 0); }
void os_sock_shutdown(int fd) { shutdown(fd, SHUT_RDWR); }
void os_sock_close(int fd) { close(fd); }

bool os_sock_broken(int fd) {
    if (fd < 0) return false;
    struct pollfd pf = {fd, 0, 0};
    if (poll(&pf, 1, 0) <= 0) return false;
    return (pf.revents & (POLLERR | POLLHUP | POLLNVAL)) != 0;
}

bool os_sock_peer_closed(int fd) {
    if (fd < 0) return false;
    struct pollfd pf = {fd, POLLRDHUP, 0};
    if (poll(&pf, 1, 0) <= 0) return false;
    return (pf.revents & (POLLRDHUP | POLLERR | POLLHUP)) != 0;
}

int os_fd_limit(int want) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl)) return want;
    if (rl.rlim_cur < (rlim_t)want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= (rlim_t)want ? (rlim_t)want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur < (rlim_t)want ? (int)rl.rlim_cur : want;
}
#endif
