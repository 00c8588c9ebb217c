/* os.h — the platform layer: everything the code does that POSIX and Windows do differently, in
 * one small room. os_posix.c implements it on Linux (and the other POSIX systems), os_win32.c on
 * Windows (mingw-w64); nothing else under src/ or tools/ includes a header that exists on one
 * platform only (tests/test_platform.sh checks). Threads are POSIX threads on both (mingw-w64's
 * winpthreads on Windows): <pthread.h> is the one system header both platforms share.
 *
 * Paths are UTF-8 everywhere; on Windows they are converted to UTF-16 for the wide-character
 * file APIs, so non-ASCII file and model names work, and both '/' and '\' separate. The POSIX
 * versions are thin: the Linux code paths and their speed are what they were.
 *
 * Conventions: functions returning int give 0 on success and -1 on failure (errno set where
 * the caller reads it: os_mkdir's EEXIST, os_remove's ENOENT). Internal: not part of
 * include/lfm2c.h. Sockets are in os_net.h (only the server and `lfm2c ps` need them). */
#ifndef LFM2C_BASE_OS_H
#define LFM2C_BASE_OS_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#if defined(_WIN32)
/* mingw-w64 lacks these GNU / POSIX functions: os_win32.c has them (qsort_r with glibc's
 * argument order, as a stable merge sort: glibc's result for every comparator); its string.h
 * declares strcasecmp / strncasecmp */
char *strndup(const char *s, size_t n);
void *memmem(const void *hay, size_t hn, const void *needle, size_t nn);
void qsort_r(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *, void *), void *arg);
char *strcasestr(const char *hay, const char *needle);
#define OS_PATH_SEPS "/\\"
#else
#if defined(__GLIBC__)
#include <malloc.h> /* malloc_trim, mallopt */
#endif
#include <strings.h> /* strcasecmp, strncasecmp */
#define OS_PATH_SEPS "/"
#endif

/* ---- files and directories (UTF-8 paths) ---- */
FILE *os_fopen(const char *path, const char *mode);
typedef struct {
    uint64_t size;
    bool is_file, is_dir;
    uint64_t dev, ino; /* together: the file's identity (two paths to one file compare equal) */
    int64_t mtime;     /* last modification, seconds since 1970 */
} os_stat_t;
int os_stat(const char *path, os_stat_t *st); /* follows links */
bool os_exists(const char *path);
int os_mkdir(const char *path);  /* one level; errno EEXIST when it is there */
int os_remove(const char *path); /* a file or link (not a directory) */
int os_rmdir(const char *path);  /* an empty directory */
char *os_mkdtemp(char *tmpl);    /* mkdtemp: tmpl ends in XXXXXX, replaced; tmpl or NULL */
/* A file, or a folder and everything in it (links removed, not followed); 0 when nothing is left. */
int os_remove_tree(const char *path);
/* Moves from over to, replacing to atomically when it exists (os_rename(2); MoveFileExW with
 * MOVEFILE_REPLACE_EXISTING on Windows). */
int os_rename(const char *from, const char *to);
char *os_realpath(const char *path); /* malloc'd absolute path, or NULL */
/* Bytes an unprivileged user may still write on the file system holding path; -1 unknown. */
int64_t os_disk_free(const char *path);
/* A link at `link` to `target` (relative to the link's folder, as huggingface_hub writes them).
 * Windows: a symbolic link where the process may make one, else a hard link to the target. */
int os_symlink(const char *target, const char *link);
/* The target of the symbolic link at path into buf (NUL-terminated); -1 when it is none. */
int os_readlink(const char *path, char *buf, size_t cap);
int os_ftruncate(FILE *f, uint64_t len);
int os_truncate(const char *path, uint64_t len);
/* A stream whose bytes end up in memory (open_memstream; Windows: a temporary file read back at
 * the close): os_memstream_close gives them (malloc'd, NUL-terminated; *len without the NUL when
 * len is not NULL), NULL when out of memory; the FILE is closed either way. */
typedef struct {
    char *buf;
    size_t len;
    FILE *f;
} os_memstream;
FILE *os_memstream_open(os_memstream *m);
char *os_memstream_close(os_memstream *m, size_t *len);
bool os_is_sep(char c);                /* '/' (and '\' on Windows) */
bool os_path_is_abs(const char *path); /* "/x"; on Windows also "C:/x", "C:\x", "\\server\x" */
/* The user's home folder ($HOME; on Windows %USERPROFILE% when HOME is unset), or NULL. */
const char *os_home(void);

typedef struct os_dir os_dir;
os_dir *os_opendir(const char *path);
const char *os_readdir(os_dir *d); /* the next entry's name (UTF-8, with "." and ".."); NULL at the end */
void os_closedir(os_dir *d);

/* ---- a file read as a handle: the model loader's positioned reads and mappings ---- */
typedef intptr_t os_fd; /* a descriptor, or a Windows HANDLE */
#define OS_FD_NONE ((os_fd)-1)
os_fd os_open_read(const char *path);
int64_t os_fd_size(os_fd fd); /* a regular file's size; -1 for anything else */
int64_t os_pread(os_fd fd, void *buf, size_t n, uint64_t off);
void os_fd_close(os_fd fd);
/* The whole file mapped read-only (shared pages of the file cache); NULL on failure. The mapping
 * stays valid after os_fd_close. */
void *os_map_read(os_fd fd, size_t size);
void os_unmap(void *p, size_t size);
enum { OS_ADV_HUGE, OS_ADV_WILLNEED, OS_ADV_POPULATE, OS_ADV_DONTNEED };
/* madvise where the system has the advice: 0 when done, -1 otherwise (a hint either way). */
int os_advise(void *p, size_t size, int advice);
/* Pages read-only or read-write again (a guard where the system can: Windows' large pages keep
 * theirs, and that is not an error). */
int os_protect(void *p, size_t size, bool writable);

/* ---- memory ---- */
void *os_aligned_alloc(size_t align, size_t size); /* free with os_aligned_free */
void os_aligned_free(void *p);
/* size bytes of zeroed read-write pages aligned to align (a power of two, >= the page size),
 * in huge pages where the system gives them (Linux: advised MADV_HUGEPAGE; Windows: large pages
 * where the process holds the privilege to lock them); free with os_pages_free(p, size). */
void *os_pages_alloc(size_t size, size_t align);
void os_pages_free(void *p, size_t size);
size_t os_page_size(void);
uint64_t os_phys_mem(void);     /* bytes of RAM; 0 unknown */
int64_t os_mem_available(void); /* bytes the system could give without swapping; -1 unknown */
/* Whether memory asked for in huge pages gets them, in the words of Linux's
 * /sys/kernel/mm/transparent_hugepage/enabled ("always [madvise] never"; "" unknown). Windows
 * says "[madvise]": its pages are asked for explicitly (os_pages_alloc). */
void os_huge_pages_mode(char *buf, size_t cap);
uint64_t os_rss_peak_kb(void); /* the process's peak resident memory */

/* ---- CPUs, threads, waiting ---- */
int os_cpus_online(void);
int os_cpus_allowed(void);  /* CPUs this process may run on (its affinity), >= 1 */
int os_cores_allowed(void); /* physical cores among them; os_cpus_allowed() when unknown */
/* Block while *w == expected (may return spuriously) / wake up to count waiters of w: a futex on
 * Linux, WaitOnAddress on Windows. OS_HAVE_WORD_WAIT is 0 where neither exists. */
#if defined(__linux__) || defined(_WIN32)
#define OS_HAVE_WORD_WAIT 1
#else
#define OS_HAVE_WORD_WAIT 0
#endif
void os_word_wait(atomic_uint *w, unsigned expected);
void os_word_wake(atomic_uint *w, int count);
/* The calling thread's statistics handle for os_thread_wait_s (-1 where there are none; Linux:
 * /proc/thread-self/schedstat): seconds it has waited on a run queue, -1 unknown. */
int os_thread_stat_open(void);
double os_thread_wait_s(int h);
void os_thread_stat_close(int h);
int os_procs_running(void); /* runnable tasks on the machine now; -1 unknown */
void os_sleep_s(double s);
int os_pid(void);
uint64_t os_hwcap(int n); /* Linux's AT_HWCAP (n = 1) / AT_HWCAP2 (n = 2); 0 elsewhere */
/* Asks the kernel for the AMX tile state (Linux: arch_prctl XTILEDATA); false where it cannot be
 * had (Windows for now: the AMX tables are not offered there). */
bool os_amx_permit(void);

/* ---- random bytes, time ---- */
bool os_random(void *buf, size_t n); /* from the system's generator; false when it has none ready */
struct tm *os_localtime(time_t t, struct tm *out);
struct tm *os_gmtime(time_t t, struct tm *out);
time_t os_timegm(struct tm *tm);

/* ---- locales ---- */
/* Unicode case mapping and classes of code points, whatever the process's locale (POSIX: the
 * C.UTF-8 locale; Windows: the invariant locale's mappings, LCMapStringEx, in the Basic
 * Multilingual Plane). NULL where the system has none: callers fall back to ASCII. */
typedef struct os_ctype os_ctype;
os_ctype *os_ctype_new(void);
void os_ctype_free(os_ctype *c);
uint32_t os_towlower(os_ctype *c, uint32_t cp);
uint32_t os_towupper(os_ctype *c, uint32_t cp);
enum { OS_WDIGIT, OS_WALPHA, OS_WALNUM };
bool os_iswclass(os_ctype *c, uint32_t cp, int cls);
/* The "C" numeric locale in this thread between begin and end ('.' for strtod and printf). */
typedef struct {
    void *c, *old;
    int mode;
} os_c_numeric;
os_c_numeric os_c_numeric_begin(void);
void os_c_numeric_end(os_c_numeric s);

/* ---- the terminal and the process ---- */
bool os_isatty(FILE *f);
int os_setenv(const char *name, const char *value); /* replaces an existing value */
/* Windows: the console reads and writes UTF-8, and argv is re-read from the wide command line as
 * UTF-8 (the ANSI code page cannot hold every name); POSIX: nothing to do. */
void os_console_utf8(int *argc, char ***argv);
void os_stderr_to_stdout(void);
/* Up to n bytes of stdin straight from its file or pipe, past the C library's stream: a thread
 * blocked here holds no lock of stdin's (Windows' C library keeps one through a blocking read,
 * which a clearerr(stdin) or the exit's flush would wait on). The count, 0 at the end, -1 on an
 * error. */
int64_t os_read_stdin(void *buf, size_t n);
/* Windows: where stdin is a console, *console is set and the next line is read in the console's
 * line mode (its editing and up-arrow history), prompt shown first: malloc'd UTF-8 without the
 * newline, NULL at the end (Ctrl-Z) or after a Ctrl-C. Elsewhere *console is false: the caller
 * reads its own way (tools/line_edit.c). */
char *os_console_line(const char *prompt, bool *console); /* stderr goes where stdout goes from now on */
/* Interrupts (Ctrl-C): fn runs on each one (POSIX: a SIGINT handler without SA_RESTART, so a
 * blocking read returns; Windows: on the console control thread), NULL restores the default.
 * fn may only set flags. */
void os_on_interrupt(void (*fn)(void));
/* Stop requests for a server: after os_stop_block (called before any thread starts), SIGINT and
 * SIGTERM (Windows: Ctrl-C, Ctrl-Break, the console closing) are queued instead of acted on, and
 * os_stop_wait takes the next: OS_STOP_INT or OS_STOP_TERM, 0 when timeout_s (< 0: forever) passed. */
enum { OS_STOP_INT = 1, OS_STOP_TERM = 2 };
void os_stop_block(void);
int os_stop_wait(double timeout_s);
void os_ignore_broken_pipe(void);     /* writes to a closed pipe / file too big fail, not kill */
_Noreturn void os_exit_now(int code); /* _exit: no atexit handlers, no flushing */
#endif
