/* test_cache.c — removing a model from the cache (src/hub/cache.c, lfm2c_hub_remove: `lfm2c rm`
 * and the server's DELETE /api/delete) removes the blobs of the repository's own folder and
 * nothing outside it: a snapshot file that is an absolute link to a file outside the cache, or a
 * relative one that climbs out of it, loses only the link; the outside files stay. A cache whose
 * blobs folder is itself a link (moved to another disk) still has its blobs removed. */
#include "hub/hub.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[256];

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static bool exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

static char *at(const char *fmt, const char *a) {
    static char buf[4][1024];
    static int k;
    char *b = buf[k++ % 4];
    char rel[400];
    snprintf(rel, sizeof rel, fmt, a);
    snprintf(b, sizeof buf[0], "%s/%s", root, rel);
    return b;
}

static void test_links_out(void) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/cache/models--org--m/blobs %s/cache/models--org--m/snapshots/c1 %s/outside",
             root, root, root);
    CHECK(system(cmd) == 0, "mkdir");
    write_file(at("cache/models--org--m/blobs/%s", "aaaa"), "own blob");
    write_file(at("outside/%s", "victim.gguf"), "not the cache's");
    write_file(at("outside/%s", "victim2.gguf"), "not the cache's either");
    CHECK(!symlink("../../blobs/aaaa", at("cache/models--org--m/snapshots/c1/%s", "m-Q4_0.gguf")), "link own");
    CHECK(!symlink(at("outside/%s", "victim.gguf"), at("cache/models--org--m/snapshots/c1/%s", "m-Q8_0.gguf")),
          "link absolute");
    CHECK(!symlink("../../../../outside/victim2.gguf", at("cache/models--org--m/snapshots/c1/%s", "m-F16.gguf")),
          "link climbing");
    lfm2c_error err = {0};
    char cache[300];
    snprintf(cache, sizeof cache, "%s/cache", root);
    CHECK(lfm2c_hub_remove(cache, "org/m", "Q8_0", NULL, NULL, &err) == 1, "Q8_0 removed: %s", err.msg);
    CHECK(exists(at("outside/%s", "victim.gguf")), "an absolute link's outside target was removed");
    CHECK(!exists(at("cache/models--org--m/snapshots/c1/%s", "m-Q8_0.gguf")), "the absolute link stays");
    CHECK(lfm2c_hub_remove(cache, "org/m", "F16", NULL, NULL, &err) == 1, "F16 removed: %s", err.msg);
    CHECK(exists(at("outside/%s", "victim2.gguf")), "a climbing link's outside target was removed");
    CHECK(!exists(at("cache/models--org--m/snapshots/c1/%s", "m-F16.gguf")), "the climbing link stays");
    CHECK(lfm2c_hub_remove(cache, "org/m", "Q4_0", NULL, NULL, &err) == 1, "Q4_0 removed: %s", err.msg);
    CHECK(!exists(at("cache/models--org--m/blobs/%s", "aaaa")), "the repository's own blob stays");
    CHECK(!exists(at("cache/models--org--m/snapshots/c1/%s", "m-Q4_0.gguf")), "its link stays");
}

static void test_blobs_moved(void) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/cache/models--org--n/snapshots/c1 %s/disk2/blobs", root, root);
    CHECK(system(cmd) == 0, "mkdir");
    CHECK(!symlink(at("disk2/%s", "blobs"), at("cache/models--org--n/%s", "blobs")), "blobs moved");
    write_file(at("disk2/blobs/%s", "bbbb"), "moved blob");
    CHECK(!symlink("../../blobs/bbbb", at("cache/models--org--n/snapshots/c1/%s", "n-Q4_0.gguf")), "link");
    lfm2c_error err = {0};
    char cache[300];
    snprintf(cache, sizeof cache, "%s/cache", root);
    CHECK(lfm2c_hub_remove(cache, "org/n", NULL, NULL, NULL, &err) == 1, "removed: %s", err.msg);
    CHECK(!exists(at("disk2/blobs/%s", "bbbb")), "the moved blob stays");
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/lfm2c_test_cache_XXXXXX");
    if (!mkdtemp(root)) return 1;
    test_links_out();
    test_blobs_moved();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd)) fprintf(stderr, "cannot remove %s\n", root);
    TEST_MAIN_END();
}
