/* test_kernels_choose.c — the choice of the kernel table (src/cpu/kernels_choose.c): LFM2C_ISA
 * by name and by prefix, a name that matches nothing, the table of known CPU kinds, and for a
 * CPU nobody knows the timing of the candidates, its cache (written, read back, timed again when
 * asked, when unreadable or when it names a table not usable here; other CPUs' lines kept), and
 * that whatever is chosen is a tile-invariant table this CPU supports (every table meets the
 * scalar contract: test_kernels.c). */
#include "cpu/kernels.h"
#include "cpu/tiles.h"
#include "formats/ggml_types.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const kernel_ops *avail[8];
static int n_avail;
static const kernel_ops *cand[8]; /* the tile-invariant vector tables */
static int n_cand;
static char dir[256], path[300];

static const kernel_ops *by_isa(const char *isa) {
    for (int i = 0; i < n_avail; i++)
        if (!strcmp(avail[i]->isa, isa)) return avail[i];
    return NULL;
}

static bool is_candidate(const kernel_ops *k) {
    for (int i = 0; i < n_cand; i++)
        if (cand[i] == k) return true;
    return false;
}

static char *slurp(void) {
    size_t n = 0;
    char *s = test_read_file(path, &n);
    return s;
}

static void write_file(const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (f) fputs(text, f), fclose(f);
}

static void test_forced(const kernel_cpu *cpu) {
    kernel_choice c;
    kernels_choose("scalar", cpu, dir, 0, &c);
    CHECK(c.ops == kernels_scalar() && !strcmp(c.how, "forced") && strstr(c.why, "LFM2C_ISA=scalar"),
          "LFM2C_ISA=scalar: %s %s (%s)", c.ops->isa, c.how, c.why);
    for (int i = 1; i < n_avail; i++) { /* every table by its name, and by a prefix of it */
        kernels_choose(avail[i]->isa, cpu, dir, 0, &c);
        CHECK(c.ops == avail[i] && !strcmp(c.how, "forced"), "LFM2C_ISA=%s gave %s", avail[i]->isa, c.ops->isa);
        char pre[8];
        snprintf(pre, sizeof pre, "%.4s", avail[i]->isa);
        kernels_choose(pre, cpu, dir, 0, &c);
        CHECK(!strncmp(c.ops->isa, pre, strlen(pre)) && !strcmp(c.how, "forced"), "LFM2C_ISA=%s gave %s", pre,
              c.ops->isa);
    }
    kernels_choose("no-such-isa", cpu, dir, KERNELS_NO_TIMING, &c);
    CHECK(strcmp(c.how, "forced") && strstr(c.why, "LFM2C_ISA=no-such-isa names no table here"),
          "a name that matches nothing: %s (%s)", c.how, c.why);
}

static void test_known(void) {
    kernel_choice c;
    kernel_cpu zen4 = {"AuthenticAMD", 25, 17, "AMD EPYC 9B14 96-Core Processor"};
    kernel_cpu zen5 = {"AuthenticAMD", 26, 2, "AMD EPYC 9B45"};
    kernel_cpu spr = {"GenuineIntel", 6, 143, "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"};
    if (by_isa("avx512vnni") && n_cand > 1) {
        kernels_choose(NULL, &zen4, dir, 0, &c);
        CHECK(c.ops == by_isa("avx512vnni") && !strcmp(c.how, "table") && strstr(c.why, "Zen 4"), "Zen 4: %s %s (%s)",
              c.ops->isa, c.how, c.why);
        kernels_choose(NULL, &zen5, dir, 0, &c);
        CHECK(c.ops == by_isa("avx512vnni") && !strcmp(c.how, "table") && strstr(c.why, "Zen 5"), "Zen 5: %s %s",
              c.ops->isa, c.how);
        kernels_choose(NULL, &zen4, dir, KERNELS_NO_TABLE | KERNELS_NO_TIMING, &c);
        CHECK(!strcmp(c.how, "default") && c.ops == cand[n_cand - 1], "no table, no timing: the default, got %s",
              c.how);
    }
    kernels_choose(NULL, &spr, dir, KERNELS_NO_TIMING, &c);
    if (by_isa("amx"))
        CHECK(c.ops == by_isa("amx") && !strcmp(c.how, "table"), "Intel with AMX: %s %s", c.ops->isa, c.how);
    else /* the row asks for a table this CPU lacks: it does not apply */
        CHECK(strcmp(c.how, "table") != 0, "the AMX row applied without an amx table (%s)", c.ops->isa);
}

static void test_timed(void) {
    kernel_choice c, d;
    kernel_cpu cpu = {"TestVendor", 1, 2, ""};
    snprintf(cpu.name, sizeof cpu.name, "lfm2c test CPU %d", (int)getpid());
    if (n_cand <= 1) { /* one vector table or none: nothing to time */
        kernels_choose(NULL, &cpu, dir, 0, &c);
        CHECK(!strcmp(c.how, "only"), "one candidate: %s", c.how);
        printf("one candidate on this CPU: no timing to test\n");
        return;
    }
    remove(path);
    kernels_choose(NULL, &cpu, dir, 0, &c);
    CHECK(!strcmp(c.how, "timed") && is_candidate(c.ops), "unknown CPU: %s %s (%s)", c.ops->isa, c.how, c.why);
    for (int i = 0; i < n_cand; i++)
        CHECK(strstr(c.why, cand[i]->isa) != NULL, "the timing names %s: %s", cand[i]->isa, c.why);
    printf("timed: %s (%s)\n", c.ops->isa, c.why);
    char *s = slurp();
    CHECK(s && strstr(s, cpu.name) && strstr(s, c.ops->isa), "the cache holds the choice: %s", s ? s : "(no file)");
    free(s);

    kernels_choose(NULL, &cpu, dir, 0, &d); /* read back, not timed again */
    CHECK(!strcmp(d.how, "cached") && d.ops == c.ops && strstr(d.why, path), "cached: %s %s (%s)", d.ops->isa, d.how,
          d.why);
    kernels_choose(NULL, &cpu, dir, KERNELS_RETIME, &d);
    CHECK(!strcmp(d.how, "timed"), "LFM2C_KERNEL_TIMING=again times again: %s", d.how);

    /* a line naming a table not usable here, a broken line, another CPU's line */
    char key_line[600];
    s = slurp();
    snprintf(key_line, sizeof key_line, "%s", s ? s : "");
    free(s);
    char *tab = strchr(key_line, '\t');
    CHECK(tab != NULL, "cache line has fields: %s", key_line);
    if (!tab) return;
    *tab = 0;
    char text[1400];
    snprintf(text, sizeof text,
             "v1 some other CPU|X 1 1|avx2\tavx2\tkept\nbroken line without fields\n%s\tneon-i8mm-9000\tnope\n",
             key_line);
    write_file(text);
    kernels_choose(NULL, &cpu, dir, 0, &d);
    CHECK(!strcmp(d.how, "timed") && is_candidate(d.ops), "a cached table not usable here is timed again: %s", d.how);
    s = slurp();
    CHECK(s && strstr(s, "v1 some other CPU|X 1 1|avx2\tavx2\tkept\n") && !strstr(s, "neon-i8mm-9000"),
          "other CPUs' lines kept, the stale one replaced: %s", s ? s : "(no file)");
    free(s);
    write_file("\x01\x02 garbage \xff\n\n\t\t\n");
    kernels_choose(NULL, &cpu, dir, 0, &d);
    CHECK(!strcmp(d.how, "timed"), "an unreadable cache is timed again: %s", d.how);
    kernels_choose(NULL, &cpu, dir, 0, &d);
    CHECK(!strcmp(d.how, "cached"), "and written anew: %s", d.how);

    remove(path);
    kernels_choose(NULL, &cpu, dir, KERNELS_NO_CACHE, &d);
    CHECK(!strcmp(d.how, "timed") && access(path, F_OK) != 0, "no cache: timed, nothing written");
    kernels_choose(NULL, &cpu, dir, KERNELS_NO_TIMING, &d);
    CHECK(!strcmp(d.how, "default") && d.ops == cand[n_cand - 1], "no timing: the list's default (%s)", d.ops->isa);
    /* a cache folder that cannot be made: still a choice */
    kernels_choose(NULL, &cpu, "/proc/lfm2c-no-such/dir", 0, &d);
    CHECK(!strcmp(d.how, "timed") && is_candidate(d.ops), "unwritable cache: %s", d.how);
}

/* The cache file as text with [from, to) replaced by repl: the plan is timed again, not read. */
static void retimed(const kernel_ops *x, const kernel_cpu *cpu, const char *text, const char *from, const char *to,
                    const char *repl, const char *what) {
    char buf[2048];
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(from - text), text, repl, to);
    write_file(buf);
    kernel_choice d;
    memset(&d, 0, sizeof d);
    kernels_choose_pf(NULL, x, cpu, dir, 0, &d);
    CHECK(!strcmp(d.pf_how, "timed"), "%s is timed again: %s", what, d.pf_how);
}

/* The decode stream's prefetch plan: forced by name, a name that matches none, no plans for a
 * table without an interleaved layout, the timing (every plan named with its GB/s, the choice a
 * plan), its cache line beside the table's (read back, timed again when asked or when it names
 * no plan), and no timing. */
static void test_plans(void) {
    kernel_choice c;
    memset(&c, 0, sizeof c);
    kernel_cpu cpu = {"TestVendor", 1, 3, ""};
    snprintf(cpu.name, sizeof cpu.name, "lfm2c plan test CPU %d", (int)getpid());
    kernels_choose_pf(NULL, kernels_scalar(), &cpu, dir, 0, &c);
    CHECK(!strcmp(c.pf_how, "none") && c.pf == 0 && !strcmp(c.pf_name, DEC_PF_PLANS[0].name), "scalar: %s (%s)",
          c.pf_how, c.pf_why);
    const kernel_ops *x = NULL;
    for (int i = 0; i < n_avail; i++)
        if (avail[i]->packed_type && avail[i]->packed_type(GGML_Q4_K, X16_ROWS) == GGML_Q4_K_X16) x = avail[i];
    if (!x) {
        printf("no table with an interleaved layout here: no plan to time\n");
        return;
    }
    for (int p = 0; p < DEC_PF_NPLANS; p++) {
        kernels_choose_pf(DEC_PF_PLANS[p].name, x, &cpu, dir, 0, &c);
        CHECK(c.pf == p && !strcmp(c.pf_how, "forced") && strstr(c.pf_why, DEC_PF_PLANS[p].name), "LFM2C_DEC_PF=%s: %s",
              DEC_PF_PLANS[p].name, c.pf_why);
    }
    kernels_choose_pf("t9x99", x, &cpu, dir, KERNELS_NO_TIMING, &c);
    CHECK(c.pf == 0 && !strcmp(c.pf_how, "default") && strstr(c.pf_why, "names no plan"), "no such plan: %s (%s)",
          c.pf_how, c.pf_why);
    remove(path);
    kernels_choose_pf(NULL, x, &cpu, dir, 0, &c);
    CHECK(!strcmp(c.pf_how, "timed") && c.pf >= 0 && c.pf < DEC_PF_NPLANS, "timed: %s", c.pf_how);
    for (int p = 0; p < DEC_PF_NPLANS; p++)
        CHECK(strstr(c.pf_why, DEC_PF_PLANS[p].name) != NULL, "the timing names %s: %s", DEC_PF_PLANS[p].name,
              c.pf_why);
    CHECK(dec_pf_plan == kernels_choice()->pf, "the timing leaves the process's plan as it was");
    printf("plans timed: %s (%s)\n", c.pf_name, c.pf_why);
    char *s = slurp();
    CHECK(s && strstr(s, cpu.name) && strstr(s, "decode prefetch") && strstr(s, c.pf_name),
          "the cache holds the plan: %s", s ? s : "(no file)");
    kernel_choice d;
    memset(&d, 0, sizeof d);
    kernels_choose_pf(NULL, x, &cpu, dir, 0, &d);
    CHECK(!strcmp(d.pf_how, "cached") && d.pf == c.pf, "read back: %s", d.pf_how);
    kernels_choose_pf(NULL, x, &cpu, dir, KERNELS_RETIME, &d);
    CHECK(!strcmp(d.pf_how, "timed"), "timed again when asked: %s", d.pf_how);
    char want[512]; /* the key names the plans timed */
    size_t wl = snprintf(want, sizeof want, "decode prefetch");
    for (int p = 0; p < DEC_PF_NPLANS && wl < sizeof want; p++)
        wl += snprintf(want + wl, sizeof want - wl, "%c%s", p ? ',' : ' ', DEC_PF_PLANS[p].name);
    char *key = s ? strstr(s, want) : NULL, *tab = key ? strchr(key, '\t') : NULL;
    CHECK(tab != NULL, "the cache line's key names every plan (%s): %s", want, s ? s : "(no file)");
    if (tab) { /* another build's list of plans is timed again */
        retimed(x, &cpu, s, key + strlen("decode prefetch"), tab, " nta2,hw", "a line for other plans");
        free(s);
        s = slurp(); /* the line as the timing wrote it again */
        key = s ? strstr(s, want) : NULL, tab = key ? strchr(key, '\t') : NULL;
    }
    char *end = tab ? strchr(tab + 1, '\t') : NULL; /* a line naming a plan that does not exist */
    if (end) retimed(x, &cpu, s, tab + 1, end, "bogus-plan", "a cached plan that does not exist");
    free(s);
    kernels_choose_pf(NULL, x, &cpu, dir, KERNELS_NO_TIMING, &d);
    CHECK(!strcmp(d.pf_how, "default") && d.pf == 0, "no timing: the first plan (%s)", d.pf_how);
}

/* Where the attention prefetches the cache: forced by name, a name that matches neither, the
 * timing (both named with their GB/s), its cache line (read back; timed again when asked), no
 * timing. */
static void test_attn_pf(void) {
    kernel_choice c;
    memset(&c, 0, sizeof c);
    kernel_cpu cpu = {"TestVendor", 1, 4, ""};
    snprintf(cpu.name, sizeof cpu.name, "lfm2c attention prefetch test CPU %d", (int)getpid());
    const kernel_ops *t = kernels_get();
    for (int p = 0; p < ATTN_PF_NLOC; p++) {
        kernels_choose_attn_pf(ATTN_PF_NAMES[p], t, &cpu, dir, 0, &c);
        CHECK(c.apf == p && !strcmp(c.apf_how, "forced") && strstr(c.apf_why, ATTN_PF_NAMES[p]), "LFM2C_ATTN_PF=%s: %s",
              ATTN_PF_NAMES[p], c.apf_why);
    }
    kernels_choose_attn_pf("t7", t, &cpu, dir, KERNELS_NO_TIMING, &c);
    CHECK(c.apf == ATTN_PF_NTA && !strcmp(c.apf_how, "default") && strstr(c.apf_why, "names neither"),
          "no such location: %s (%s)", c.apf_how, c.apf_why);
    remove(path);
    const int before = attn_pf_loc;
    kernels_choose_attn_pf(NULL, t, &cpu, dir, 0, &c);
    CHECK(!strcmp(c.apf_how, "timed") && c.apf >= 0 && c.apf < ATTN_PF_NLOC, "timed: %s", c.apf_how);
    for (int p = 0; p < ATTN_PF_NLOC; p++)
        CHECK(strstr(c.apf_why, ATTN_PF_NAMES[p]) != NULL && strstr(c.apf_why, "GB/s"), "the timing names %s: %s",
              ATTN_PF_NAMES[p], c.apf_why);
    CHECK(attn_pf_loc == before, "the timing leaves the process's location as it was");
    printf("attention prefetch timed: %s (%s)\n", c.apf_name, c.apf_why);
    char *s = slurp();
    CHECK(s && strstr(s, cpu.name) && strstr(s, "attention prefetch"), "the cache holds the location: %s",
          s ? s : "(no file)");
    free(s);
    kernel_choice d;
    memset(&d, 0, sizeof d);
    kernels_choose_attn_pf(NULL, t, &cpu, dir, 0, &d);
    CHECK(!strcmp(d.apf_how, "cached") && d.apf == c.apf && !strcmp(d.apf_name, ATTN_PF_NAMES[c.apf]), "read back: %s",
          d.apf_how);
    kernels_choose_attn_pf(NULL, t, &cpu, dir, KERNELS_RETIME, &d);
    CHECK(!strcmp(d.apf_how, "timed"), "timed again when asked: %s", d.apf_how);
    kernels_choose_attn_pf(NULL, t, &cpu, dir, KERNELS_NO_TIMING, &d);
    CHECK(!strcmp(d.apf_how, "default") && d.apf == ATTN_PF_NTA, "no timing: nta (%s)", d.apf_how);
}

int main(void) {
    n_avail = kernels_available(avail, 8);
    for (int i = 1; i < n_avail; i++)
        if (avail[i]->tile_invariant) cand[n_cand++] = avail[i];
    snprintf(dir, sizeof dir, "/tmp/lfm2c-test-choose-%d", (int)getpid());
    snprintf(path, sizeof path, "%s/kernels.tsv", dir);

    kernel_cpu me;
    kernels_cpu_id(&me);
    printf("this CPU: %s (%s family %d model %d); %d candidate tables\n", me.name, me.vendor, me.family, me.model,
           n_cand);
    CHECK(me.vendor[0] && me.name[0], "the CPU has a vendor and a name");
    const kernel_choice *k = kernels_choice();
    CHECK(k->ops == kernels_get() && k->ops && k->how && k->why[0], "the process's choice is kernels_get()'s");
    printf("this process: %s (%s: %s); decode prefetch %s (%s: %s)\n", k->ops->isa, k->how, k->why, k->pf_name,
           k->pf_how, k->pf_why);
    CHECK(k->pf_name && k->pf_how && dec_pf_plan == k->pf, "the process's plan is set");
    CHECK(k->apf_how && attn_pf_loc == k->apf, "the process's attention prefetch is set (%s: %s)", k->apf_how,
          k->apf_why);

    test_forced(&me);
    test_known();
    test_timed();
    test_plans();
    test_attn_pf();
    remove(path);
    rmdir(dir);
    TEST_MAIN_END();
}
