/* os_win32.c — the platform layer (os.h) on Windows (mingw-w64, x86-64; run under Wine in the
 * tests). Paths are UTF-8 in and out and UTF-16 to the system (the wide-character APIs), so any
 * name works whatever the ANSI code page; mappings are CreateFileMapping + MapViewOfFile; the
 * weights' copy takes large pages where the process may lock them (SeLockMemoryPrivilege) and
 * plain pages otherwise; the thread pool's wait word is WaitOnAddress; random bytes come from
 * BCryptGenRandom, the peak working set from GetProcessMemoryInfo, Ctrl-C from
 * SetConsoleCtrlHandler. The whole file is inside #if, so every build compiles it. */
#if defined(_WIN32)
#include "base/os.h"

#include <errno.h>
#include <fcntl.h>
#include <io.h>
#include <stdlib.h>
#include <string.h>
#include "base/os_net.h" /* winsock2.h before windows.h */

#include <limits.h>
#include <locale.h>
#include <windows.h>
#include <bcrypt.h>
#include <psapi.h>
#include <shellapi.h>

/* ---- UTF-8 <-> UTF-16 ---- */

static wchar_t *wide(const char *s) {
    int n = s ? MultiByteToWideChar(CP_UTF8, 0, s, -1, NULL, 0) : 0;
    wchar_t *w = n > 0 ? malloc(sizeof *w * (size_t)n) : NULL;
    if (w && MultiByteToWideChar(CP_UTF8, 0, s, -1, w, n) != n) {
        free(w);
        w = NULL;
    }
    if (!w) errno = s ? EINVAL : ENOENT;
    return w;
}

static char *narrow(const wchar_t *w) {
    int n = WideCharToMultiByte(CP_UTF8, 0, w, -1, NULL, 0, NULL, NULL);
    char *s = n > 0 ? malloc((size_t)n) : NULL;
    if (s && WideCharToMultiByte(CP_UTF8, 0, w, -1, s, n, NULL, NULL) != n) {
        free(s);
        s = NULL;
    }
    return s;
}

/* errno from the last Windows error, for callers that print strerror(errno) */
static int fail_errno(void) {
    DWORD e = GetLastError();
    errno = e == ERROR_FILE_NOT_FOUND || e == ERROR_PATH_NOT_FOUND     ? ENOENT
            : e == ERROR_ALREADY_EXISTS || e == ERROR_FILE_EXISTS      ? EEXIST
            : e == ERROR_ACCESS_DENIED || e == ERROR_SHARING_VIOLATION ? EACCES
            : e == ERROR_NOT_ENOUGH_MEMORY || e == ERROR_OUTOFMEMORY   ? ENOMEM
            : e == ERROR_DISK_FULL                                     ? ENOSPC
                                                                       : EIO;
    return -1;
}

char *strndup(const char *s, size_t n) {
    size_t k = strnlen(s, n);
    char *d = malloc(k + 1);
    if (!d) return NULL;
    memcpy(d, s, k);
    d[k] = 0;
    return d;
}

void *memmem(const void *hay, size_t hn, const void *needle, size_t nn) {
    const unsigned char *h = hay, *n = needle;
    if (nn == 0) return (void *)h;
    for (size_t i = 0; nn <= hn && i <= hn - nn; i++)
        if (h[i] == n[0] && !memcmp(h + i, n, nn)) return (void *)(h + i);
    return NULL;
}

char *strcasestr(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (!_strnicmp(hay, needle, n)) return (char *)hay;
    return n ? NULL : (char *)hay;
}

/* fmaf correctly rounded. mingw-w64's rounds the product before the sum (measured: 29% of random
 * operands differ from the fused result), which would move the scalar truth of the kernels
 * (cpu/kernels_attn.c names every fused multiply-add) off Linux's and the SIMD tables' bits. This
 * definition is linked in place of the C library's. The product of two floats is exact in a
 * double; the sum's rounding error comes out exactly (TwoSum); the double is then rounded to odd
 * (an inexact result's last bit set), and a double rounded to odd rounds to the float nearest the
 * exact value, since 53 >= 24 + 2 bits (Boldo and Melquiond's theorem). */
float fmaf(float a, float b, float c) {
    volatile double p = (double)a * (double)b; /* (volatile: never contracted into another fma) */
    double s = p + (double)c, bb = s - p, err = (p - (s - bb)) + ((double)c - bb);
    if (err != 0 && s == s && s - s == 0) { /* inexact and finite */
        uint64_t u;
        memcpy(&u, &s, sizeof u);
        if (!(u & 1)) {
            u += (err > 0) == (s > 0) ? 1 : (uint64_t)-1; /* one ulp away from zero, or towards it */
            memcpy(&s, &u, sizeof s);
        }
    }
    return (float)s;
}

/* a stable merge sort of n elements at a into tmp and back */
static void merge_sort(unsigned char *a, unsigned char *tmp, size_t n, size_t size,
                       int (*cmp)(const void *, const void *, void *), void *arg) {
    if (n < 2) return;
    size_t h = n / 2;
    merge_sort(a, tmp, h, size, cmp, arg);
    merge_sort(a + h * size, tmp, n - h, size, cmp, arg);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        bool right = cmp(a + j * size, a + i * size, arg) < 0; /* ties keep the left one first */
        memcpy(tmp + k++ * size, a + (right ? j++ : i++) * size, size);
    }
    memcpy(tmp + k * size, a + i * size, (h - i) * size), k += h - i;
    memcpy(tmp + k * size, a + j * size, (n - j) * size);
    memcpy(a, tmp, n * size);
}

void qsort_r(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *, void *), void *arg) {
    unsigned char *tmp = n > 1 ? malloc(n * size) : NULL;
    if (n > 1 && !tmp) abort(); /* (glibc's qsort falls back to an unstable sort; we cannot fail) */
    merge_sort(base, tmp, n, size, cmp, arg);
    free(tmp);
}

/* ---- files and directories ---- */

/* Files are bytes, as on Linux: a mode without 'b' or 't' gets 'b' (no \r\n translation, whatever
 * the host program's _fmode). */
FILE *os_fopen(const char *path, const char *mode) {
    char bm[16];
    if (!strpbrk(mode, "bt") && strlen(mode) + 2 <= sizeof bm) snprintf(bm, sizeof bm, "%sb", mode), mode = bm;
    wchar_t *w = wide(path), *m = wide(mode);
    FILE *f = w && m ? _wfopen(w, m) : NULL;
    free(w), free(m);
    return f;
}

/* a handle for reading attributes, following links; directories too */
static HANDLE open_attr(const wchar_t *w) {
    return CreateFileW(w, FILE_READ_ATTRIBUTES, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                       OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS, NULL);
}

int os_stat(const char *path, os_stat_t *st) {
    wchar_t *w = wide(path);
    HANDLE h = w ? open_attr(w) : INVALID_HANDLE_VALUE;
    free(w);
    if (h == INVALID_HANDLE_VALUE) return fail_errno();
    BY_HANDLE_FILE_INFORMATION fi;
    BOOL ok = GetFileInformationByHandle(h, &fi);
    CloseHandle(h);
    if (!ok) return fail_errno();
    bool dir = (fi.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) != 0;
    *st = (os_stat_t){
        .size = dir ? 0 : ((uint64_t)fi.nFileSizeHigh << 32 | fi.nFileSizeLow),
        .is_file = !dir,
        .is_dir = dir,
        .dev = fi.dwVolumeSerialNumber,
        .ino = (uint64_t)fi.nFileIndexHigh << 32 | fi.nFileIndexLow,
        .mtime = (int64_t)(((uint64_t)fi.ftLastWriteTime.dwHighDateTime << 32 | fi.ftLastWriteTime.dwLowDateTime) /
                               10000000ull -
                           11644473600ull)};
    return 0;
}

bool os_exists(const char *path) {
    wchar_t *w = wide(path);
    DWORD a = w ? GetFileAttributesW(w) : INVALID_FILE_ATTRIBUTES;
    free(w);
    return a != INVALID_FILE_ATTRIBUTES;
}

int64_t os_disk_free(const char *path) {
    wchar_t *w = wide(path);
    ULARGE_INTEGER avail;
    BOOL ok = w && GetDiskFreeSpaceExW(w, &avail, NULL, NULL);
    free(w);
    return !ok ? -1 : avail.QuadPart > (ULONGLONG)INT64_MAX ? INT64_MAX : (int64_t)avail.QuadPart;
}

int os_mkdir(const char *path) {
    wchar_t *w = wide(path);
    BOOL ok = w && CreateDirectoryW(w, NULL);
    free(w);
    return ok ? 0 : fail_errno();
}

int os_remove(const char *path) {
    wchar_t *w = wide(path);
    BOOL ok = w && DeleteFileW(w);
    free(w);
    return ok ? 0 : fail_errno();
}

int os_rmdir(const char *path) {
    wchar_t *w = wide(path);
    BOOL ok = w && RemoveDirectoryW(w);
    free(w);
    return ok ? 0 : fail_errno();
}

char *os_mkdtemp(char *tmpl) {
    size_t n = strlen(tmpl);
    if (n < 6 || strcmp(tmpl + n - 6, "XXXXXX")) return errno = EINVAL, NULL;
    static const char abc[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    for (int tries = 0; tries < 100; tries++) {
        uint8_t r[6];
        if (!os_random(r, sizeof r)) return NULL;
        for (int i = 0; i < 6; i++) tmpl[n - 6 + i] = abc[r[i] % 36];
        if (os_mkdir(tmpl) == 0) return tmpl;
        if (errno != EEXIST) return NULL;
    }
    return NULL;
}

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

int os_rename(const char *from, const char *to) {
    wchar_t *a = wide(from), *b = wide(to);
    BOOL ok = a && b && MoveFileExW(a, b, MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH);
    free(a), free(b);
    return ok ? 0 : fail_errno();
}

static void slashes(char *s) {
    for (; s && *s; s++)
        if (*s == '\\') *s = '/';
}

char *os_realpath(const char *path) {
    wchar_t *w = wide(path), full[MAX_PATH * 4];
    DWORD n = w ? GetFullPathNameW(w, MAX_PATH * 4, full, NULL) : 0;
    bool there = w && GetFileAttributesW(w) != INVALID_FILE_ATTRIBUTES;
    free(w);
    if (!there) return fail_errno(), NULL;
    if (n == 0 || n >= MAX_PATH * 4) return errno = ENAMETOOLONG, NULL;
    char *s = narrow(full);
    slashes(s);
    return s;
}

int os_symlink(const char *target, const char *link) {
    char *t = strdup(target);
    slashes(t);
    for (char *c = t; c && *c; c++)
        if (*c == '/') *c = '\\';
    wchar_t *wt = wide(t), *wl = wide(link);
    BOOL ok = wt && wl && CreateSymbolicLinkW(wl, wt, 0x2 /* SYMBOLIC_LINK_FLAG_ALLOW_UNPRIVILEGED_CREATE */);
    ok = ok && GetFileAttributesW(wl) != INVALID_FILE_ATTRIBUTES; /* (Wine 8 says yes and makes none) */
    if (!ok && wl) { /* no symbolic links here: a hard link to the target (resolved from the link's folder) */
        const char *end = link + strlen(link);
        while (end > link && !os_is_sep(end[-1])) end--;
        size_t dl = (size_t)(end - link);
        char *full = malloc(dl + strlen(target) + 1);
        if (full) {
            memcpy(full, link, dl);
            strcpy(full + dl, target);
            wchar_t *wf = wide(full);
            ok = wf && CreateHardLinkW(wl, wf, NULL);
            free(wf);
        }
        free(full);
    }
    int rc = ok ? 0 : fail_errno();
    free(t), free(wt), free(wl);
    return rc;
}

/* A symbolic link's target as an absolute path (the final path of what it points to); -1 for a
 * plain file, a hard link included (its other names are not looked for here: FindFirstFileNameW
 * is missing from Wine; `lfm2c rm` finds a hard link's blob by the file's identity, os_stat). */
int os_readlink(const char *path, char *buf, size_t cap) {
    wchar_t *w = wide(path);
    DWORD a = w ? GetFileAttributesW(w) : INVALID_FILE_ATTRIBUTES;
    HANDLE h = a != INVALID_FILE_ATTRIBUTES && (a & FILE_ATTRIBUTE_REPARSE_POINT) ? open_attr(w) : INVALID_HANDLE_VALUE;
    free(w);
    if (h == INVALID_HANDLE_VALUE) return -1;
    wchar_t fin[MAX_PATH * 4];
    DWORD n = GetFinalPathNameByHandleW(h, fin, MAX_PATH * 4, FILE_NAME_NORMALIZED | VOLUME_NAME_DOS);
    CloseHandle(h);
    if (n == 0 || n >= MAX_PATH * 4) return -1;
    const wchar_t *f = wcsncmp(fin, L"\\\\?\\", 4) ? fin : fin + 4;
    char *s = narrow(f);
    slashes(s);
    size_t len = s ? strlen(s) : 0;
    int rc = s && len < cap ? (int)len : -1;
    if (rc >= 0) memcpy(buf, s, len + 1);
    free(s);
    return rc;
}

int os_ftruncate(FILE *f, uint64_t len) {
    fflush(f);
    return _chsize_s(_fileno(f), (long long)len) == 0 ? 0 : -1;
}

FILE *os_memstream_open(os_memstream *m) {
    *m = (os_memstream){0};
    wchar_t dir[MAX_PATH + 1], name[MAX_PATH + 1];
    if (!GetTempPathW(MAX_PATH + 1, dir) || !GetTempFileNameW(dir, L"lfm", 0, name)) return NULL;
    m->f = _wfopen(name, L"w+bTD"); /* temporary, deleted at its close */
    if (!m->f) DeleteFileW(name);
    return m->f;
}

char *os_memstream_close(os_memstream *m, size_t *len) {
    long n = ftell(m->f);
    char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    rewind(m->f);
    if (b && fread(b, 1, (size_t)n, m->f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b) b[n] = 0;
    fclose(m->f);
    if (len) *len = b ? (size_t)n : 0;
    return b;
}

int os_truncate(const char *path, uint64_t len) {
    FILE *f = os_fopen(path, "r+b");
    if (!f) return -1;
    int rc = os_ftruncate(f, len);
    return fclose(f) == 0 ? rc : -1;
}

bool os_is_sep(char c) { return c == '/' || c == '\\'; }
bool os_path_is_abs(const char *p) {
    return os_is_sep(p[0]) || (((p[0] | 32) >= 'a' && (p[0] | 32) <= 'z') && p[1] == ':' && os_is_sep(p[2]));
}

const char *os_home(void) {
    const char *h = getenv("HOME");
    if (!h || !*h) h = getenv("USERPROFILE");
    return h && *h ? h : NULL;
}

struct os_dir {
    HANDLE h;
    WIN32_FIND_DATAW fd;
    bool first;
    char *name;
};

os_dir *os_opendir(const char *path) {
    size_t n = strlen(path);
    char *pat = malloc(n + 3);
    if (!pat) return NULL;
    memcpy(pat, path, n);
    strcpy(pat + n, n && os_is_sep(path[n - 1]) ? "*" : "/*");
    wchar_t *w = wide(pat);
    free(pat);
    os_dir *d = w ? calloc(1, sizeof *d) : NULL;
    if (d) d->h = FindFirstFileW(w, &d->fd);
    free(w);
    if (d && d->h == INVALID_HANDLE_VALUE) {
        fail_errno();
        free(d);
        return NULL;
    }
    if (d) d->first = true;
    return d;
}

const char *os_readdir(os_dir *d) {
    if (!d->first && !FindNextFileW(d->h, &d->fd)) return NULL;
    d->first = false;
    free(d->name);
    d->name = narrow(d->fd.cFileName);
    return d->name ? d->name : "";
}

void os_closedir(os_dir *d) {
    if (!d) return;
    FindClose(d->h);
    free(d->name);
    free(d);
}

/* ---- handles and mappings ---- */

os_fd os_open_read(const char *path) {
    wchar_t *w = wide(path);
    HANDLE h = w ? CreateFileW(w, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_DELETE, NULL, OPEN_EXISTING,
                               FILE_ATTRIBUTE_NORMAL, NULL)
                 : INVALID_HANDLE_VALUE;
    free(w);
    if (h == INVALID_HANDLE_VALUE) return fail_errno(), OS_FD_NONE;
    return (os_fd)h;
}

int64_t os_fd_size(os_fd fd) {
    BY_HANDLE_FILE_INFORMATION fi;
    if (!GetFileInformationByHandle((HANDLE)fd, &fi) || (fi.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY)) return -1;
    return (int64_t)((uint64_t)fi.nFileSizeHigh << 32 | fi.nFileSizeLow);
}

int64_t os_pread(os_fd fd, void *buf, size_t n, uint64_t off) {
    OVERLAPPED ov = {0};
    ov.Offset = (DWORD)off;
    ov.OffsetHigh = (DWORD)(off >> 32);
    DWORD got = 0;
    DWORD want = n > (1u << 30) ? (1u << 30) : (DWORD)n; /* a short read, as pread may give */
    if (!ReadFile((HANDLE)fd, buf, want, &got, &ov)) return GetLastError() == ERROR_HANDLE_EOF ? 0 : fail_errno();
    return (int64_t)got;
}

void os_fd_close(os_fd fd) {
    if (fd != OS_FD_NONE) CloseHandle((HANDLE)fd);
}

void *os_map_read(os_fd fd, size_t size) {
    if (size == 0) return NULL;
    HANDLE m = CreateFileMappingW((HANDLE)fd, NULL, PAGE_READONLY, 0, 0, NULL);
    if (!m) return NULL;
    void *p = MapViewOfFile(m, FILE_MAP_READ, 0, 0, size);
    CloseHandle(m); /* the view keeps the mapping */
    return p;
}

void os_unmap(void *p, size_t size) {
    (void)size;
    if (p) UnmapViewOfFile(p);
}

typedef BOOL(WINAPI *prefetch_fn)(HANDLE, ULONG_PTR, PVOID, ULONG);

int os_advise(void *p, size_t size, int advice) {
    if (advice != OS_ADV_WILLNEED) return -1;
    /* PrefetchVirtualMemory (Windows 8): looked up, so the program still starts where it is missing */
    static prefetch_fn fn;
    static bool looked;
    if (!looked) {
        HMODULE k = GetModuleHandleW(L"kernel32.dll");
        fn = k ? (prefetch_fn)(void (*)(void))GetProcAddress(k, "PrefetchVirtualMemory") : NULL;
        looked = true;
    }
    struct {
        PVOID va;
        SIZE_T n;
    } range = {p, size};
    return fn && fn(GetCurrentProcess(), 1, &range, 0) ? 0 : -1;
}

int os_protect(void *p, size_t size, bool writable) {
    DWORD old;
    VirtualProtect(p, size, writable ? PAGE_READWRITE : PAGE_READONLY, &old); /* large pages refuse */
    return 0;
}

/* ---- memory ---- */

void *os_aligned_alloc(size_t align, size_t size) { return _aligned_malloc(size ? size : 1, align); }
void os_aligned_free(void *p) { _aligned_free(p); }

/* SeLockMemoryPrivilege switched on in the process token, once: true when it is held (an
 * administrator granted "Lock pages in memory"); large pages need it. */
static bool large_pages_allowed(void) {
    static int state; /* 0 unknown, 1 yes, -1 no */
    if (state) return state > 0;
    HANDLE tok;
    TOKEN_PRIVILEGES tp = {.PrivilegeCount = 1};
    bool ok = OpenProcessToken(GetCurrentProcess(), TOKEN_ADJUST_PRIVILEGES | TOKEN_QUERY, &tok);
    if (ok) {
        ok = LookupPrivilegeValueW(NULL, L"SeLockMemoryPrivilege", &tp.Privileges[0].Luid);
        tp.Privileges[0].Attributes = SE_PRIVILEGE_ENABLED;
        ok = ok && AdjustTokenPrivileges(tok, FALSE, &tp, 0, NULL, NULL) && GetLastError() == ERROR_SUCCESS;
        CloseHandle(tok);
    }
    state = ok && GetLargePageMinimum() > 0 ? 1 : -1;
    return state > 0;
}

void *os_pages_alloc(size_t size, size_t align) {
    size_t lp = GetLargePageMinimum();
    if (size && lp && size % lp == 0 && align <= lp && large_pages_allowed()) {
        void *p = VirtualAlloc(NULL, size, MEM_RESERVE | MEM_COMMIT | MEM_LARGE_PAGES, PAGE_READWRITE);
        if (p) return p;
    }
    /* reserve align more, release it, and take the aligned part (another thread may take the
     * range in between: try again) */
    for (int tries = 0; tries < 8; tries++) {
        uint8_t *raw = VirtualAlloc(NULL, size + align, MEM_RESERVE, PAGE_NOACCESS);
        if (!raw) return NULL;
        uint8_t *p = (uint8_t *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
        VirtualFree(raw, 0, MEM_RELEASE);
        void *q = VirtualAlloc(p, size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
        if (q) return q;
    }
    return NULL;
}

void os_pages_free(void *p, size_t size) {
    (void)size;
    if (p) VirtualFree(p, 0, MEM_RELEASE);
}

size_t os_page_size(void) {
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    return si.dwPageSize;
}

uint64_t os_phys_mem(void) {
    MEMORYSTATUSEX ms = {.dwLength = sizeof ms};
    return GlobalMemoryStatusEx(&ms) ? ms.ullTotalPhys : 0;
}

int64_t os_mem_available(void) {
    MEMORYSTATUSEX ms = {.dwLength = sizeof ms};
    return GlobalMemoryStatusEx(&ms) ? (int64_t)ms.ullAvailPhys : -1;
}

void os_huge_pages_mode(char *buf, size_t cap) { snprintf(buf, cap, "[madvise]"); }

uint64_t os_rss_peak_kb(void) {
    PROCESS_MEMORY_COUNTERS pmc = {.cb = sizeof pmc};
    return GetProcessMemoryInfo(GetCurrentProcess(), &pmc, sizeof pmc) ? pmc.PeakWorkingSetSize / 1024 : 0;
}

/* ---- CPUs, threads, waiting ---- */

int os_cpus_online(void) {
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    return si.dwNumberOfProcessors > 0 ? (int)si.dwNumberOfProcessors : 1;
}

static DWORD_PTR affinity(void) {
    DWORD_PTR proc = 0, sys = 0;
    return GetProcessAffinityMask(GetCurrentProcess(), &proc, &sys) ? proc : 0;
}

int os_cpus_allowed(void) {
    DWORD_PTR m = affinity();
    int n = __builtin_popcountll((unsigned long long)m);
    return n > 0 ? n : os_cpus_online();
}

int os_cores_allowed(void) {
    DWORD_PTR m = affinity();
    DWORD len = 0;
    GetLogicalProcessorInformation(NULL, &len);
    SYSTEM_LOGICAL_PROCESSOR_INFORMATION *info = len ? malloc(len) : NULL;
    if (!m || !info || !GetLogicalProcessorInformation(info, &len)) {
        free(info);
        return os_cpus_allowed();
    }
    int cores = 0;
    for (DWORD i = 0; i < len / sizeof *info; i++)
        if (info[i].Relationship == RelationProcessorCore && (info[i].ProcessorMask & m)) cores++;
    free(info);
    return cores > 0 ? cores : os_cpus_allowed();
}

void os_word_wait(atomic_uint *w, unsigned expected) {
    WaitOnAddress((volatile void *)w, &expected, sizeof expected, INFINITE);
}

void os_word_wake(atomic_uint *w, int count) {
    if (count == 1) WakeByAddressSingle((void *)w);
    else WakeByAddressAll((void *)w);
}

int os_thread_stat_open(void) { return -1; }
double os_thread_wait_s(int h) {
    (void)h;
    return -1;
}
void os_thread_stat_close(int h) { (void)h; }
int os_procs_running(void) { return -1; }

void os_sleep_s(double s) {
    if (s > 0) Sleep((DWORD)(s * 1000 + 0.999));
}

int os_pid(void) { return (int)GetCurrentProcessId(); }
uint64_t os_hwcap(int n) {
    (void)n;
    return 0;
}
bool os_amx_permit(void) { return false; }

/* ---- random bytes, time ---- */

bool os_random(void *buf, size_t n) {
    return BCryptGenRandom(NULL, buf, (ULONG)n, BCRYPT_USE_SYSTEM_PREFERRED_RNG) == 0;
}

struct tm *os_localtime(time_t t, struct tm *out) {
    return localtime_s(out, &t) ? NULL : out;
}
struct tm *os_gmtime(time_t t, struct tm *out) {
    return gmtime_s(out, &t) ? NULL : out;
}
time_t os_timegm(struct tm *tm) { return _mkgmtime(tm); }

double lfm2c_now_s(void) {
    static LARGE_INTEGER freq;
    LARGE_INTEGER c;
    if (!freq.QuadPart) QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&c);
    return (double)c.QuadPart / (double)freq.QuadPart;
}

/* ---- locales ---- */

struct os_ctype {
    int unused;
};
static os_ctype the_ctype;
os_ctype *os_ctype_new(void) { return &the_ctype; }
void os_ctype_free(os_ctype *c) { (void)c; }

static uint32_t map_case(uint32_t cp, DWORD how) {
    if (cp >= 0xD800 && (cp < 0xE000 || cp > 0xFFFF)) return cp; /* surrogates and beyond the BMP: as is */
    wchar_t in = (wchar_t)cp, out = 0;
    return LCMapStringEx(LOCALE_NAME_INVARIANT, how, &in, 1, &out, 1, NULL, NULL, 0) == 1 ? out : cp;
}
uint32_t os_towlower(os_ctype *c, uint32_t cp) { return (void)c, map_case(cp, LCMAP_LOWERCASE); }
uint32_t os_towupper(os_ctype *c, uint32_t cp) { return (void)c, map_case(cp, LCMAP_UPPERCASE); }

bool os_iswclass(os_ctype *c, uint32_t cp, int cls) {
    (void)c;
    if (cp >= 0xD800 && (cp < 0xE000 || cp > 0xFFFF)) return false;
    wchar_t w = (wchar_t)cp;
    WORD t = 0;
    if (!GetStringTypeW(CT_CTYPE1, &w, 1, &t)) return false;
    return cls == OS_WDIGIT   ? (t & C1_DIGIT) != 0
           : cls == OS_WALPHA ? (t & C1_ALPHA) != 0
                              : (t & (C1_ALPHA | C1_DIGIT)) != 0;
}

os_c_numeric os_c_numeric_begin(void) {
    os_c_numeric s = {0};
    s.mode = _configthreadlocale(_ENABLE_PER_THREAD_LOCALE);
    const char *cur = setlocale(LC_NUMERIC, NULL);
    s.old = cur ? strdup(cur) : NULL;
    setlocale(LC_NUMERIC, "C");
    s.c = &the_ctype;
    return s;
}

void os_c_numeric_end(os_c_numeric s) {
    if (s.old) setlocale(LC_NUMERIC, (const char *)s.old);
    free(s.old);
    _configthreadlocale(s.mode);
}

/* ---- the terminal and the process ---- */

bool os_isatty(FILE *f) { return _isatty(_fileno(f)) != 0; }
int os_setenv(const char *name, const char *value) { return _putenv_s(name, value) ? -1 : 0; }

static BOOL WINAPI on_ctrl(DWORD ev);
static bool ctrl_installed;

void os_console_utf8(int *argc, char ***argv) {
    SetConsoleCtrlHandler(on_ctrl, TRUE); /* (Ctrl-C as by default until os_on_interrupt names a function) */
    ctrl_installed = true;
    SetConsoleOutputCP(CP_UTF8);
    SetConsoleCP(CP_UTF8);
    /* bytes in and out as on Linux: no \n -> \r\n, no ^Z end of file; files too */
    _fmode = _O_BINARY;
    _setmode(_fileno(stdin), _O_BINARY);
    _setmode(_fileno(stdout), _O_BINARY);
    _setmode(_fileno(stderr), _O_BINARY);
    int n = 0;
    wchar_t **wa = CommandLineToArgvW(GetCommandLineW(), &n);
    char **a = wa && n > 0 ? calloc((size_t)n + 1, sizeof *a) : NULL;
    for (int i = 0; a && i < n; i++)
        if (!(a[i] = narrow(wa[i]))) a = NULL; /* (leaks: the process's arguments, once) */
    if (a) *argc = n, *argv = a;
    LocalFree(wa);
}

/* The console in line mode: it edits, echoes and keeps the history; the line comes as UTF-16.
 * Ctrl-Z then Enter is the end of input; a Ctrl-C gives back nothing (the handler saw it). */
static char *console_line(HANDLE in) {
    size_t n = 0, cap = 1024;
    wchar_t *w = malloc(sizeof *w * cap);
    for (DWORD got = 0; w;) {
        if (!ReadConsoleW(in, w + n, (DWORD)(cap - n - 1), &got, NULL) || got == 0) {
            free(w);
            return NULL;
        }
        n += got;
        if (n && w[n - 1] == L'\n') break;
        if (n + 1 >= cap) {
            wchar_t *t = realloc(w, sizeof *w * cap * 2);
            if (!t) break;
            w = t, cap *= 2;
        }
    }
    if (!w) return NULL;
    while (n && (w[n - 1] == L'\n' || w[n - 1] == L'\r')) n--;
    w[n] = 0;
    if (n == 1 && w[0] == 0x1a) { /* Ctrl-Z */
        free(w);
        return NULL;
    }
    int k = WideCharToMultiByte(CP_UTF8, 0, w, -1, NULL, 0, NULL, NULL);
    char *s = k > 0 ? malloc((size_t)k) : NULL;
    if (s) WideCharToMultiByte(CP_UTF8, 0, w, -1, s, k, NULL, NULL);
    free(w);
    return s;
}

char *os_console_line(const char *prompt, bool *console) {
    HANDLE in = (HANDLE)_get_osfhandle(_fileno(stdin));
    DWORD mode;
    *console = GetConsoleMode(in, &mode) != 0;
    if (!*console) return NULL;
    fputs(prompt, stdout);
    fflush(stdout);
    return console_line(in);
}

void os_stderr_to_stdout(void) { _dup2(1, 2); }

int64_t os_read_stdin(void *buf, size_t n) {
    DWORD got = 0;
    if (ReadFile(GetStdHandle(STD_INPUT_HANDLE), buf, (DWORD)(n < (1u << 30) ? n : 1u << 30), &got, NULL)) return got;
    const DWORD e = GetLastError(); /* a pipe whose writer left: its end */
    return e == ERROR_BROKEN_PIPE || e == ERROR_HANDLE_EOF ? 0 : -1;
}

static void (*volatile interrupt_fn)(void);
static HANDLE interrupt_thread; /* the thread that asked: its blocking read is cancelled */
static BOOL WINAPI on_ctrl(DWORD ev) {
    void (*fn)(void) = interrupt_fn;
    if (ev != CTRL_C_EVENT || !fn) return FALSE;
    fn();
    /* (POSIX's read returns EINTR; a Windows read of a pipe or file waits on: cancel it) */
    if (interrupt_thread) CancelSynchronousIo(interrupt_thread);
    return TRUE;
}

void os_on_interrupt(void (*fn)(void)) {
    if (fn && !interrupt_thread)
        DuplicateHandle(GetCurrentProcess(), GetCurrentThread(), GetCurrentProcess(), &interrupt_thread, 0, FALSE,
                        DUPLICATE_SAME_ACCESS);
    interrupt_fn = fn;
    if (!ctrl_installed) SetConsoleCtrlHandler(on_ctrl, TRUE);
    ctrl_installed = true;
}

static HANDLE stop_sem;
static atomic_int stop_kind[2]; /* pending Ctrl-C / termination requests */

static BOOL WINAPI on_stop(DWORD ev) {
    atomic_fetch_add(&stop_kind[ev == CTRL_C_EVENT ? 0 : 1], 1);
    ReleaseSemaphore(stop_sem, 1, NULL);
    if (ev == CTRL_CLOSE_EVENT || ev == CTRL_LOGOFF_EVENT || ev == CTRL_SHUTDOWN_EVENT)
        Sleep(INFINITE); /* the process ends when the server has (returning would end it now) */
    return TRUE;
}

void os_stop_block(void) {
    if (!stop_sem) stop_sem = CreateSemaphoreW(NULL, 0, 1 << 20, NULL);
    SetConsoleCtrlHandler(on_stop, TRUE);
}

int os_stop_wait(double timeout_s) {
    DWORD ms = timeout_s < 0 ? INFINITE : (DWORD)(timeout_s * 1000);
    if (WaitForSingleObject(stop_sem, ms) != WAIT_OBJECT_0) return 0;
    for (int k = 0; k < 2; k++) {
        int v = atomic_load(&stop_kind[k]);
        while (v > 0 && !atomic_compare_exchange_weak(&stop_kind[k], &v, v - 1)) {}
        if (v > 0) return k == 0 ? OS_STOP_INT : OS_STOP_TERM;
    }
    return OS_STOP_TERM;
}

void os_ignore_broken_pipe(void) {}

_Noreturn void os_exit_now(int code) { _exit(code); }

/* ---- sockets (os_net.h) ---- */

bool os_net_init(void) {
    static int state; /* 0 not yet, 1 up, -1 failed */
    if (!state) {
        WSADATA wd;
        state = WSAStartup(MAKEWORD(2, 2), &wd) == 0 ? 1 : -1;
    }
    return state > 0;
}

bool os_own_ipv4(uint32_t addr) {
    char name[256];
    struct addrinfo hints = {.ai_family = AF_INET}, *res = NULL;
    if (!os_net_init() || gethostname(name, sizeof name) || getaddrinfo(name, NULL, &hints, &res)) return false;
    bool hit = false;
    for (struct addrinfo *i = res; i && !hit; i = i->ai_next)
        hit = i->ai_family == AF_INET && ((struct sockaddr_in *)(void *)i->ai_addr)->sin_addr.s_addr == addr;
    freeaddrinfo(res);
    return hit;
}

int os_tcp_connect(const char *host, int port, double timeout_s) {
    if (!os_net_init()) return errno = ENETDOWN, -1;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    if (getaddrinfo(host, ps, &hints, &res) || !res) return errno = EHOSTUNREACH, -1;
    SOCKET s = socket(AF_INET, SOCK_STREAM, 0);
    DWORD ms = (DWORD)(timeout_s * 1000);
    if (s != INVALID_SOCKET) {
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, (const char *)&ms, sizeof ms);
        setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, (const char *)&ms, sizeof ms);
    }
    if (s != INVALID_SOCKET && connect(s, res->ai_addr, (int)res->ai_addrlen)) {
        closesocket(s);
        s = INVALID_SOCKET;
        errno = ECONNREFUSED;
    }
    freeaddrinfo(res);
    return s == INVALID_SOCKET ? -1 : (int)s;
}

int64_t os_sock_send(int fd, const void *buf, size_t n) {
    int k = send((SOCKET)fd, buf, n > INT_MAX ? INT_MAX : (int)n, 0);
    if (k == SOCKET_ERROR) errno = WSAGetLastError() == WSAEWOULDBLOCK ? EAGAIN : EPIPE;
    return k == SOCKET_ERROR ? -1 : k;
}

/* (no per-call non-blocking flag: a few bytes into an idle socket's buffer do not wait) */
int64_t os_sock_send_nowait(int fd, const void *buf, size_t n) { return os_sock_send(fd, buf, n); }

int64_t os_sock_recv(int fd, void *buf, size_t n) {
    int k = recv((SOCKET)fd, buf, n > INT_MAX ? INT_MAX : (int)n, 0);
    return k == SOCKET_ERROR ? -1 : k;
}

void os_sock_shutdown(int fd) { shutdown((SOCKET)fd, SD_BOTH); }
void os_sock_close(int fd) { closesocket((SOCKET)fd); }

bool os_sock_broken(int fd) {
    if (fd < 0) return false;
    WSAPOLLFD pf = {(SOCKET)fd, POLLRDNORM, 0};
    if (WSAPoll(&pf, 1, 0) <= 0) return false;
    return (pf.revents & (POLLERR | POLLNVAL)) != 0 || ((pf.revents & POLLHUP) && !(pf.revents & POLLRDNORM));
}

/* no POLLRDHUP: readable with nothing to read is the peer's end (a peek, so a pipelined request
 * stays for the server to read) */
bool os_sock_peer_closed(int fd) {
    if (fd < 0) return false;
    WSAPOLLFD pf = {(SOCKET)fd, POLLRDNORM, 0};
    if (WSAPoll(&pf, 1, 0) <= 0) return false;
    if (pf.revents & (POLLERR | POLLHUP)) return true;
    char c;
    return (pf.revents & POLLRDNORM) && recv((SOCKET)fd, &c, 1, MSG_PEEK) == 0;
}

int os_fd_limit(int want) { return want; }
#endif
