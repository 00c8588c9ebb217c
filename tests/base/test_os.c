/* test_os.c — the platform layer (src/base/os.h) as the rest of the code relies on it, run natively
 * and, in the Windows stage, under Wine (scripts/test_windows.sh): UTF-8 file names (a Greek,
 * a Japanese and an accented one) made, listed, stat'ed, read, renamed over an existing file and
 * removed; directories and their errors (EEXIST, ENOENT); positioned reads and a read-only
 * mapping of a file; links (huggingface_hub's relative snapshot -> blob links); aligned memory
 * and 2 MB pages (aligned, zeroed, writable); CPU counts; the wait word woken from another
 * thread; random bytes; the UTC calendar round trip; paths' separators and absolute forms. */
#include "base/os.h"
#include "base/clock.h"
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

static char dir[512];

static void path(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", dir, name); }

static bool write_text(const char *p, const char *text) {
    FILE *f = os_fopen(p, "wb");
    if (!f) return false;
    bool ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

static void read_text(const char *p, char *out, size_t cap) {
    out[0] = 0;
    FILE *f = os_fopen(p, "rb");
    if (!f) return;
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = 0;
    fclose(f);
}

static bool listed(const char *name) {
    os_dir *d = os_opendir(dir);
    bool found = false;
    for (const char *e; d && (e = os_readdir(d));) found |= !strcmp(e, name);
    os_closedir(d);
    return found;
}

static void test_files(void) {
    const char *names[] = {"\xce\xb1\xce\xb2\xce\xb3.gguf", "\xe3\x83\xa2\xe3\x83\x87\xe3\x83\xab.txt", "caf\xc3\xa9"};
    char p[600], q[600], text[64];
    for (int i = 0; i < 3; i++) {
        path(p, sizeof p, names[i]);
        CHECK(write_text(p, names[i]), "cannot write '%s'", p);
        read_text(p, text, sizeof text);
        CHECK(!strcmp(text, names[i]), "'%s' read back as '%s'", p, text);
        os_stat_t st;
        CHECK(os_stat(p, &st) == 0 && st.is_file && !st.is_dir && st.size == strlen(names[i]), "stat '%s'", p);
        CHECK(os_exists(p) && listed(names[i]), "'%s' not listed", names[i]);
    }
    /* a rename replaces the file in its way */
    path(p, sizeof p, names[0]), path(q, sizeof q, names[1]);
    CHECK(os_rename(p, q) == 0, "rename over an existing file: errno %d", errno);
    read_text(q, text, sizeof text);
    CHECK(!strcmp(text, names[0]) && !os_exists(p), "after the rename: '%s'", text);
    os_stat_t a, b;
    path(p, sizeof p, names[2]);
    CHECK(os_stat(q, &a) == 0 && os_stat(p, &b) == 0 && (a.dev != b.dev || a.ino != b.ino), "two files, one identity");
    CHECK(os_stat(q, &b) == 0 && a.dev == b.dev && a.ino == b.ino, "one file, two identities");
    /* a truncated file */
    FILE *f = os_fopen(q, "r+b");
    CHECK(f && os_ftruncate(f, 2) == 0, "ftruncate");
    if (f) fclose(f);
    CHECK(os_stat(q, &a) == 0 && a.size == 2, "truncated to %llu bytes", (unsigned long long)a.size);
    CHECK(os_remove(q) == 0 && os_remove(p) == 0 && !os_exists(q), "remove");
    errno = 0;
    CHECK(os_remove(q) == -1 && errno == ENOENT, "removing a missing file: errno %d", errno);
    char *real = os_realpath(dir);
    CHECK(real && os_path_is_abs(real), "realpath '%s'", real ? real : "(null)");
    free(real);
    CHECK(os_realpath(q) == NULL, "realpath of a missing file");
}

static void test_dirs_and_links(void) {
    char sub[600], blob[700], snap[700], lnk[800], target[1024];
    path(sub, sizeof sub, "models--a--b");
    CHECK(os_mkdir(sub) == 0, "mkdir '%s'", sub);
    errno = 0;
    CHECK(os_mkdir(sub) == -1 && errno == EEXIST, "mkdir twice: errno %d", errno);
    os_stat_t st;
    CHECK(os_stat(sub, &st) == 0 && st.is_dir && !st.is_file, "a directory");
    snprintf(blob, sizeof blob, "%s/blobs", sub), os_mkdir(blob);
    snprintf(snap, sizeof snap, "%s/snapshots", sub), os_mkdir(snap);
    snprintf(blob, sizeof blob, "%s/blobs/0123", sub);
    CHECK(write_text(blob, "weights"), "blob");
    snprintf(lnk, sizeof lnk,
             "%s/snapshots/m\xc3\xb6"
             "del.gguf",
             sub);
    CHECK(os_symlink("../blobs/0123", lnk) == 0, "link: errno %d", errno);
    char text[64];
    read_text(lnk, text, sizeof text);
    CHECK(!strcmp(text, "weights"), "read through the link: '%s'", text);
    int n = os_readlink(lnk, target, sizeof target);
    if (n > 0) /* a symbolic link (a hard link, Windows without the right to make one, has no target) */
        CHECK(strstr(target, "blobs/0123") != NULL, "the link's target '%s'", target);
    CHECK(os_readlink(blob, target, sizeof target) == -1, "a plain file is no link");
    CHECK(os_remove(lnk) == 0 && os_remove(blob) == 0, "remove the link and the blob");
    CHECK(os_opendir(blob) == NULL, "opendir of a missing folder");
}

static void test_handles(void) {
    char p[600];
    path(p, sizeof p, "mapped.bin");
    uint8_t bytes[5000];
    for (int i = 0; i < 5000; i++) bytes[i] = (uint8_t)(i * 7);
    FILE *f = os_fopen(p, "wb");
    CHECK(f && fwrite(bytes, 1, sizeof bytes, f) == sizeof bytes, "write");
    if (f) fclose(f);
    os_fd fd = os_open_read(p);
    CHECK(fd != OS_FD_NONE && os_fd_size(fd) == 5000, "open and size");
    uint8_t got[100];
    CHECK(os_pread(fd, got, 100, 4000) == 100 && !memcmp(got, bytes + 4000, 100), "pread at 4000");
    CHECK(os_pread(fd, got, 100, 5000) == 0, "pread at the end");
    uint8_t *map = os_map_read(fd, 5000);
    os_fd_close(fd);
    CHECK(map && !memcmp(map, bytes, 5000), "the mapping holds the file");
    os_unmap(map, 5000);
    CHECK(os_remove(p) == 0, "remove the mapped file after unmapping");
}

static void test_memory(void) {
    for (size_t al = 16; al <= 4096; al *= 4) {
        void *p = os_aligned_alloc(al, 1000);
        CHECK(p && (uintptr_t)p % al == 0, "aligned to %zu", al);
        if (p) memset(p, 1, 1000);
        os_aligned_free(p);
    }
    const size_t mb2 = (size_t)2 << 20;
    uint8_t *p = os_pages_alloc(3 * mb2, mb2);
    CHECK(p && (uintptr_t)p % mb2 == 0 && p[0] == 0 && p[3 * mb2 - 1] == 0, "2 MB pages: aligned, zeroed");
    if (p) memset(p, 0x5a, 3 * mb2);
    CHECK(!p || (os_protect(p, 3 * mb2, false) == 0 && os_protect(p, 3 * mb2, true) == 0), "protect");
    if (p) p[5] = 1;
    os_pages_free(p, 3 * mb2);
    CHECK(os_page_size() >= 4096 && os_phys_mem() > 0 && os_rss_peak_kb() > 0, "page size, RAM, peak RSS");
    char mode[64];
    os_huge_pages_mode(mode, sizeof mode);
    CHECK(os_mem_available() != 0, "available memory");
}

static atomic_uint word;
static void *waker(void *arg) {
    (void)arg;
    os_sleep_s(0.05);
    atomic_store(&word, 1);
    os_word_wake(&word, 1);
    return NULL;
}

static void test_cpus_and_waiting(void) {
    int on = os_cpus_online(), al = os_cpus_allowed(), co = os_cores_allowed();
    CHECK(on >= 1 && al >= 1 && al <= on && co >= 1 && co <= al, "CPUs online %d, allowed %d, cores %d", on, al, co);
#if OS_HAVE_WORD_WAIT
    pthread_t t;
    double t0 = lfm2c_now_s();
    pthread_create(&t, NULL, waker, NULL);
    while (atomic_load(&word) == 0) os_word_wait(&word, 0);
    pthread_join(t, NULL);
    CHECK(lfm2c_now_s() - t0 >= 0.04, "woken after the store (%.3f s)", lfm2c_now_s() - t0);
#endif
    CHECK(os_pid() > 0, "pid");
}

static void test_random_and_time(void) {
    uint64_t a[4] = {0}, b[4] = {0};
    CHECK(os_random(a, sizeof a) && os_random(b, sizeof b) && memcmp(a, b, sizeof a), "random bytes differ");
    struct tm tm;
    time_t t = 1767225600; /* 2026-01-01 00:00:00 UTC */
    CHECK(os_gmtime(t, &tm) && tm.tm_year == 126 && tm.tm_mon == 0 && tm.tm_mday == 1 && tm.tm_hour == 0, "gmtime");
    CHECK(os_timegm(&tm) == t, "timegm round trip");
    CHECK(os_localtime(t, &tm) != NULL, "localtime");
    double t0 = lfm2c_now_s();
    os_sleep_s(0.02);
    CHECK(lfm2c_now_s() - t0 >= 0.015, "the clock moves with a sleep");
}

static void test_paths(void) {
    CHECK(os_is_sep('/') && os_path_is_abs("/x") && !os_path_is_abs("x/y") && !os_path_is_abs(""), "POSIX forms");
#if defined(_WIN32)
    CHECK(os_is_sep('\\') && os_path_is_abs("C:\\x") && os_path_is_abs("c:/x") && !os_path_is_abs("C:x"), "Windows");
    CHECK(strchr(OS_PATH_SEPS, '\\') != NULL, "both separators");
#else
    CHECK(!os_is_sep('\\'), "a backslash is a file name's byte");
#endif
    CHECK(os_home() != NULL, "a home folder");
}

int main(void) {
    snprintf(dir, sizeof dir, "test_os_%d.tmp", os_pid()); /* under tests/, the tests' folder */
    CHECK(os_mkdir(dir) == 0, "cannot make '%s'", dir);
    test_files();
    test_dirs_and_links();
    test_handles();
    test_memory();
    test_cpus_and_waiting();
    test_random_and_time();
    test_paths();
    const char *left[] = {"models--a--b/snapshots", "models--a--b/blobs", "models--a--b", ""};
    for (int i = 0; i < 4; i++) {
        char p[600];
        path(p, sizeof p, left[i]);
        CHECK(os_rmdir(i < 3 ? p : dir) == 0, "rmdir '%s' (empty)", i < 3 ? p : dir);
    }
    TEST_MAIN_END();
}
