/* test_lfm2_arch.c — the architecture table (src/core/lfm2_arch.c) against the fixture GGUFs in
 * tests/data, whose hyper-parameters are taken from MANIFEST.json (not from the files or the
 * loader): every tensor the table wants is in the file with the table's shape, dimension count and
 * (for F32 rows) type; every tensor of the file is a row of the table for that layer's kind; the
 * {arch}.* metadata the table writes equals the file's, key for key. A deliberately broken copy of
 * a row must be caught, so the check itself is shown to fail. */
#include "core/lfm2_arch.h"
#include "formats/ggml_types.h"
#include "formats/gguf.h"
#include "formats/gguf_write.h"
#include "test.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int cfg_int(json_t *c, const char *k) { return (int)json_integer_value(json_object_get(c, k)); }

/* Hyper-parameters from a MANIFEST.json "config" object. */
static void manifest_hparams(json_t *c, lfm2_hparams *hp) {
    memset(hp, 0, sizeof *hp);
    hp->moe = !strcmp(json_string_value(json_object_get(c, "arch")), "lfm2moe");
    hp->n_layer = cfg_int(c, "n_layer");
    hp->n_embd = cfg_int(c, "hidden");
    hp->n_head = cfg_int(c, "n_head");
    hp->head_dim = hp->n_embd / hp->n_head;
    hp->n_ctx = cfg_int(c, "ctx");
    hp->n_vocab = cfg_int(c, "vocab");
    hp->l_cache = cfg_int(c, "l_cache");
    hp->n_ff = cfg_int(c, "ffn");
    hp->n_expert = cfg_int(c, "n_expert");
    hp->n_expert_used = cfg_int(c, "n_expert_used");
    hp->n_ff_exp = cfg_int(c, "ffn_exp");
    hp->n_dense = hp->moe ? cfg_int(c, "n_dense") : hp->n_layer;
    hp->rope_theta = (float)json_number_value(json_object_get(c, "rope_theta"));
    hp->norm_eps = (float)json_number_value(json_object_get(c, "eps"));
    hp->tied = json_is_true(json_object_get(c, "tied"));
    hp->expert_bias = hp->moe;
    json_t *attn = json_object_get(c, "attn_layers");
    for (size_t i = 0; i < json_array_size(attn); i++) {
        int l = (int)json_integer_value(json_array_get(attn, i));
        hp->is_attn[l] = true;
        hp->n_head_kv[l] = cfg_int(c, "n_head_kv");
    }
}

/* The row of `rows` named `name` in the file (layer in *l, -1 for a global tensor). */
static const lfm2_tensor *row_of(const lfm2_tensor *rows, const char *name, int *l) {
    int nc = 0;
    const char *rest = name;
    *l = -1;
    if (sscanf(name, "blk.%d.%n", l, &nc) == 1 && nc > 0) rest = name + nc;
    else *l = -1;
    for (int i = 0; i < LFM2_T_COUNT; i++) {
        const lfm2_tensor *t = &rows[i];
        if (lfm2_tensor_is_layer(t) != (*l >= 0)) continue;
        if (!strcmp(rest, t->gguf) || (t->gguf_alias && !strcmp(rest, t->gguf_alias))) return t;
    }
    return NULL;
}

/* One wanted row of layer l against the file; returns the number of mismatches. */
static int check_row(const gguf_file *g, const lfm2_tensor *row, const lfm2_hparams *hp, int l, const char *what,
                     bool quiet) {
    char name[128], alias[128];
    const gguf_tensor *gt = gguf_find_tensor(g, lfm2_tensor_name(row, l, false, name, sizeof name));
    if (!gt && row->gguf_alias) gt = gguf_find_tensor(g, lfm2_tensor_name(row, l, true, alias, sizeof alias));
    if (!gt) {
        if (!quiet) fprintf(stderr, "  %s: missing %s\n", what, name);
        return 1;
    }
    int64_t ne[3];
    int nd = lfm2_tensor_shape(row, hp, l, ne);
    bool ok = (int)gt->n_dims == nd && gt->ne[0] == ne[0] && gt->ne[1] == ne[1] && gt->ne[2] == ne[2] && gt->ne[3] == 1;
    if (!ok && !quiet)
        fprintf(stderr, "  %s: %s is %u-D [%lld, %lld, %lld], the table says %d-D [%lld, %lld, %lld]\n", what, name,
                gt->n_dims, (long long)gt->ne[0], (long long)gt->ne[1], (long long)gt->ne[2], nd, (long long)ne[0],
                (long long)ne[1], (long long)ne[2]);
    if ((row->flags & LFM2_TF_F32) && gt->type != GGML_F32) {
        if (!quiet) fprintf(stderr, "  %s: %s is not F32\n", what, name);
        ok = false;
    }
    return !ok;
}

/* The whole tensor table (`rows`, a copy of LFM2_TENSORS or a broken one) against a file. */
static int check_tensors(const gguf_file *g, const lfm2_tensor *rows, const lfm2_hparams *hp, const char *what,
                         bool quiet) {
    int bad = 0, wanted = 0;
    for (int i = 0; i < LFM2_T_FIRST_LAYER; i++)
        if (lfm2_tensor_wanted(&rows[i], hp, -1)) wanted++, bad += check_row(g, &rows[i], hp, -1, what, quiet);
    for (int l = 0; l < hp->n_layer; l++)
        for (int i = LFM2_T_FIRST_LAYER; i < LFM2_T_COUNT; i++)
            if (lfm2_tensor_wanted(&rows[i], hp, l)) wanted++, bad += check_row(g, &rows[i], hp, l, what, quiet);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        int l;
        const lfm2_tensor *row = row_of(rows, g->tensors[i].name, &l);
        if (!row || (l >= 0 && (l >= hp->n_layer || !lfm2_tensor_in_layer(row, hp, l)))) {
            if (!quiet) fprintf(stderr, "  %s: %s is not in the table for its layer\n", what, g->tensors[i].name);
            bad++;
        }
    }
    if ((uint64_t)wanted != g->n_tensors) {
        if (!quiet)
            fprintf(stderr, "  %s: the table wants %d tensors, the file has %llu\n", what, wanted,
                    (unsigned long long)g->n_tensors);
        bad++;
    }
    return bad;
}

static bool same_kv(const gguf_kv *a, const gguf_kv *b) {
    if (a->type != b->type || a->n != b->n) return false;
    if (a->type == GGUF_ARR) {
        if (a->arr_type != b->arr_type) return false;
        return !memcmp(a->data, b->data, gguf_vtype_size(a->arr_type) * a->n);
    }
    return !memcmp(a->data, b->data, gguf_vtype_size(a->type));
}

/* The metadata rows written from hp (file type as in the fixture) against the fixture's keys. */
static void check_meta(const gguf_file *g, lfm2_hparams *hp, const char *what) {
    const char *arch = lfm2_arch_name(hp->moe);
    int64_t ft = 0;
    CHECK(gguf_get_int(g, "general.file_type", &ft), "%s: general.file_type", what);
    hp->file_type = (uint32_t)ft;
    char path[] = "/tmp/lfm2c_test_arch_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    close(fd);
    lfm2c_error err = {0};
    gguf_writer *w = gguf_writer_new();
    bool ok = lfm2_meta_write(w, hp, LFM2_WRITE_ALL) && gguf_writer_open(w, path, &err) && gguf_writer_finish(w, &err);
    gguf_writer_free(w);
    CHECK(ok, "%s: writing the metadata: %s", what, err.msg);
    gguf_file *m = ok ? gguf_open(path, &err) : NULL;
    unlink(path);
    CHECK(m != NULL, "%s: reading it back: %s", what, err.msg);
    if (!m) return;
    for (uint64_t i = 0; i < m->n_kv; i++) {
        const gguf_kv *f = gguf_find(g, m->kv[i].key);
        CHECK(f && same_kv(f, &m->kv[i]), "%s: the table writes %s, the fixture %s", what, m->kv[i].key,
              f ? "differs" : "lacks it");
    }
    size_t n = strlen(arch);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (!strncmp(g->kv[i].key, arch, n) && g->kv[i].key[n] == '.')
            CHECK(gguf_find(m, g->kv[i].key) != NULL, "%s: the fixture's %s is not in the table", what, g->kv[i].key);
    CHECK(lfm2_meta_first_missing(g, arch) < 0, "%s: a required key is missing", what);
    int64_t v;
    CHECK(!hp->moe ||
              (lfm2_meta_int(g, arch, LFM2_KEY_GATING_FUNC, &v) && v == (int64_t)LFM2_META[LFM2_KEY_GATING_FUNC].def),
          "%s: expert_gating_func", what);
    gguf_close(m);
}

/* Broken copies of the table must fail the tensor check on a MoE fixture. */
static void check_broken_rows(const gguf_file *g, const lfm2_hparams *hp) {
    lfm2_tensor rows[LFM2_T_COUNT];
    memcpy(rows, LFM2_TENSORS, sizeof rows);
    CHECK(check_tensors(g, rows, hp, "copy", true) == 0, "an intact copy passes");
    rows[LFM2_T_Q].ne[1] = LFM2_D_KV; /* wrong shape */
    CHECK(check_tensors(g, rows, hp, "shape", true) > 0, "a wrong shape is caught");
    memcpy(rows, LFM2_TENSORS, sizeof rows);
    rows[LFM2_T_UP].gguf = "ffn_upp.weight"; /* wrong name */
    CHECK(check_tensors(g, rows, hp, "name", true) > 0, "a wrong name is caught");
    memcpy(rows, LFM2_TENSORS, sizeof rows);
    rows[LFM2_T_ROUTER].kinds = LFM2_DENSE; /* wrong layer kind */
    CHECK(check_tensors(g, rows, hp, "kind", true) > 0, "a wrong layer kind is caught");
    memcpy(rows, LFM2_TENSORS, sizeof rows);
    rows[LFM2_T_GATE_EXPS].n_dims = 2; /* wrong dimension count */
    CHECK(check_tensors(g, rows, hp, "dims", true) > 0, "a wrong dimension count is caught");
    memcpy(rows, LFM2_TENSORS, sizeof rows);
    rows[LFM2_T_ATTN_NORM].cond = LFM2_IF_UNTIED; /* tied fixtures: the norm would not be wanted */
    CHECK(check_tensors(g, rows, hp, "cond", true) > 0, "a wrong condition is caught");
}

static void check_fixtures(void) {
    json_error_t je;
    json_t *man = json_load_file(DATA("MANIFEST.json"), 0, &je);
    CHECK(man != NULL, "MANIFEST.json: %s", je.text);
    json_t *entries = json_object_get(man, "entries");
    int n_checked = 0, n_moe = 0;
    for (size_t i = 0; i < json_array_size(entries); i++) {
        json_t *e = json_array_get(entries, i);
        const char *model = json_string_value(json_object_get(e, "model"));
        char path[256];
        snprintf(path, sizeof path, "data/%s", model);
        if (access(path, R_OK)) continue; /* kept gzipped (the F16 MoE master) */
        lfm2_hparams hp;
        manifest_hparams(json_object_get(e, "config"), &hp);
        lfm2c_error err = {0};
        gguf_file *g = gguf_open(path, &err);
        CHECK(g != NULL, "%s: %s", path, err.msg);
        if (!g) continue;
        CHECK(check_tensors(g, LFM2_TENSORS, &hp, model, false) == 0, "%s: tensors match the table", model);
        check_meta(g, &hp, model);
        if (hp.moe && !n_moe++) check_broken_rows(g, &hp);
        gguf_close(g);
        n_checked++;
    }
    CHECK(n_checked >= 10 && n_moe >= 4, "%d fixtures checked (%d MoE)", n_checked, n_moe);
    json_decref(man);
}

/* The converter's type rule is the reference's, by name: 1-D tensors, "_norm.weight",
 * ffn_gate_inp, shortconv.conv and non-".weight" names stay F32. The table's F32 flag must pick
 * the same tensors, and every name must find its own row again. */
static void check_rows(void) {
    for (int i = 0; i < LFM2_T_COUNT; i++) {
        const lfm2_tensor *t = &LFM2_TENSORS[i];
        CHECK(t->id == (lfm2_tensor_id)i, "row %d is in its id's place", i);
        size_t n = strlen(t->gguf);
        bool by_name = t->n_dims <= 1 || (n > 12 && !strcmp(t->gguf + n - 12, "_norm.weight")) ||
                       strstr(t->gguf, "ffn_gate_inp") || strstr(t->gguf, "shortconv.conv") ||
                       strcmp(t->gguf + n - 7, ".weight");
        CHECK(by_name == (t->n_dims <= 1 || (t->flags & LFM2_TF_F32) != 0), "%s: F32 flag vs the reference's name rule",
              t->gguf);
        char name[128];
        int l;
        CHECK(lfm2_tensor_by_gguf(lfm2_tensor_name(t, 7, false, name, sizeof name), &l) == t &&
                  l == (lfm2_tensor_is_layer(t) ? 7 : -1),
              "%s: found by its GGUF name", t->gguf);
        if (t->gguf_alias)
            CHECK(lfm2_tensor_by_gguf(lfm2_tensor_name(t, 3, true, name, sizeof name), &l) == t,
                  "%s: found by its alias", t->gguf);
        if (!(t->flags & LFM2_TF_EXPERTS))
            CHECK(lfm2_tensor_by_hf(t->hf, lfm2_tensor_is_layer(t)) == t, "%s: found by its HF name", t->hf);
        else CHECK(strchr(t->hf, '*') != NULL, "%s: per-expert HF names have the expert as '*'", t->hf);
        if (t->hf_alias)
            CHECK(lfm2_tensor_by_hf(t->hf_alias, lfm2_tensor_is_layer(t)) == t, "%s: found by its HF alias",
                  t->hf_alias);
    }
    for (int i = 0; i < LFM2_KEY_COUNT; i++)
        CHECK(LFM2_META[i].id == (lfm2_meta_id)i, "metadata row %d is in its id's place", i);
}

int main(void) {
    check_rows();
    check_fixtures();
    TEST_MAIN_END();
}
