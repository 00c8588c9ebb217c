/* mmproj.c — an LFM2-VL mmproj GGUF opened and checked (vision.h): the header's clip.* keys
 * (projector type "lfm2", the tower's sizes, patch size, image mean / std, the unshuffle
 * factor) and every tensor the tower and projector use (v.patch_embd, v.position_embd,
 * v.blk.N.{ln1,attn_q,attn_k,attn_v,attn_out,ln2,ffn_up,ffn_down}, v.post_ln, mm.input_norm
 * (optional), mm.1, mm.2) against them: shapes, types the backend's encoder table multiplies
 * (core/encoder.h), vectors copied to F32. A file that fails any check is refused with a message
 * naming the key or tensor; nothing of it is trusted before. */
#include "vision/vision.h"
#include "base/error.h"
#include "formats/ggml_types.h"
#include "formats/mmproj_read.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The patch size and the unshuffle factor decide how many pixels every image is resized to (the
 * tile is 32 patches a side, a one-image side a multiple of patch x merge, at least 64 and at most
 * 256 tokens of merge^2 patches each): LFM2-VL's are 16 and 2. Bounded at 32 and 4, an image is
 * at most 10 tiles of 1024^2 and a thumbnail of 4 Mi pixels, 4096 patches (an mmproj of 64 and 8
 * made every image 67 Mi pixels and 16384 patches). */
enum { VIS_MAX_EMBD = 16384, VIS_MAX_LAYERS = 256, VIS_MAX_PATCH = 32, VIS_MAX_MERGE = 4, VIS_MAX_SIDE = 1024 };

#define FAIL(...) (lfm2c_set_error(err, LFM2C_EFORMAT, "mmproj: " __VA_ARGS__), -1)

static int read_mean_std(const gguf_file *g, vis_hparams *hp, lfm2c_error *err) {
    const char *keys[2] = {"clip.vision.image_mean", "clip.vision.image_std"};
    for (int k = 0; k < 2; k++) {
        const gguf_kv *kv = gguf_find(g, keys[k]);
        if (!kv || kv->type != GGUF_ARR || kv->n != 3) return FAIL("key %s must be 3 numbers", keys[k]);
        for (uint64_t i = 0; i < 3; i++) {
            double v;
            if (!gguf_arr_float(kv, i, &v) || !(v > -1e3 && v < 1e3) || (k == 1 && !(v > 1e-6)))
                return FAIL("key %s has a bad value at %d", keys[k], (int)i);
            (k ? hp->stdev : hp->mean)[i] = (float)v;
        }
    }
    return 0;
}

static int read_type(const gguf_file *g, lfm2c_error *err) {
    char *pt = gguf_get_string(g, "clip.projector_type");
    if (!pt) pt = gguf_get_string(g, "clip.vision.projector_type");
    bool vision = false, gelu = false;
    gguf_get_bool(g, "clip.has_vision_encoder", &vision);
    gguf_get_bool(g, "clip.use_gelu", &gelu);
    int rc = 0;
    if (!pt || strcmp(pt, "lfm2")) rc = FAIL("projector type '%s' is not LFM2-VL's 'lfm2'", pt ? pt : "(none)");
    else if (!vision) rc = FAIL("the file has no vision encoder (clip.has_vision_encoder)");
    else if (!gelu) rc = FAIL("the tower's activation is not GELU (clip.use_gelu)");
    free(pt);
    return rc;
}

static int read_hparams(const gguf_file *g, vis_hparams *hp, lfm2c_error *err) {
    memset(hp, 0, sizeof *hp);
    double eps = 1e-6;
    if (read_type(g, err) || mmr_int(g, "clip.vision.embedding_length", 1, VIS_MAX_EMBD, -1, &hp->n_embd, err) ||
        mmr_int(g, "clip.vision.feed_forward_length", 1, 4 * VIS_MAX_EMBD, -1, &hp->n_ff, err) ||
        mmr_int(g, "clip.vision.attention.head_count", 1, 1024, -1, &hp->n_head, err) ||
        mmr_int(g, "clip.vision.block_count", 1, VIS_MAX_LAYERS, -1, &hp->n_layer, err) ||
        mmr_int(g, "clip.vision.patch_size", 1, VIS_MAX_PATCH, -1, &hp->patch, err) ||
        mmr_int(g, "clip.vision.projection_dim", 1, 4 * VIS_MAX_EMBD, -1, &hp->proj_dim, err) ||
        mmr_int(g, "clip.vision.projector.scale_factor", 1, VIS_MAX_MERGE, 2, &hp->n_merge, err) ||
        read_mean_std(g, hp, err))
        return -1;
    if (gguf_get_float(g, "clip.vision.attention.layer_norm_epsilon", &eps) && !(eps > 0 && eps < 1))
        return FAIL("clip.vision.attention.layer_norm_epsilon out of range");
    hp->eps = (float)eps;
    if (hp->n_embd % hp->n_head) return FAIL("head count %d does not divide the width %d", hp->n_head, hp->n_embd);
    /* llama.cpp's bounds for LFM2: 64 .. 1024 tokens after the unshuffle */
    hp->min_tokens = 64;
    hp->max_tokens = 1024;
    return 0;
}

/* ---- tensors ------------------------------------------------------------------------------- */

static float *vec(const gguf_file *g, const char *name, int64_t n, bool required, lfm2c_error *err, int *bad) {
    return mmr_vec(g, name, n, required, err, bad);
}

/* A matrix of n_out rows of n_in; the patch kernel is 4-D ({p, p, 3, E}: rows of 3 p^2). */
static int mat(const vis_model *vm, const char *name, int64_t n_in, int64_t n_out, vis_mat *m, lfm2c_error *err) {
    const gguf_tensor *t = gguf_find_tensor(vm->gguf, name);
    if (!t) return FAIL("tensor %s missing", name);
    const int64_t *ne = t->ne, p = vm->hp.patch;
    const bool flat = ne[0] == n_in && ne[1] == n_out && ne[2] == 1 && ne[3] == 1;
    const bool kernel =
        !strcmp(name, "v.patch_embd.weight") && ne[0] == p && ne[1] == p && ne[2] == 3 && ne[3] == n_out;
    if (!flat && !kernel)
        return FAIL("tensor %s has the wrong shape (%lld x %lld, expected %lld x %lld)", name, (long long)ne[0],
                    (long long)ne[1], (long long)n_in, (long long)n_out);
    const ggml_type_info *ti = ggml_type_get(t->type);
    if (!ti || !vm->enc->mat_ok(t->type, n_in, n_out))
        return FAIL("matrix %s has a type the CPU products cannot take (%s)", name, ti ? ti->name : "unknown");
    *m = (vis_mat){t->data, t->type, n_in, n_out, ggml_row_size(t->type, n_in)};
    return 0;
}

static int load_layer(vis_model *vm, int il, lfm2c_error *err) {
    const int E = vm->hp.n_embd, F = vm->hp.n_ff;
    vis_layer *L = &vm->layers[il];
    char nm[96];
    int bad = 0;
#define V(field, what, n) \
    (snprintf(nm, sizeof nm, "v.blk.%d.%s", il, what), L->field = vec(vm->gguf, nm, n, true, err, &bad))
#define M(field, what, ni, no) \
    (snprintf(nm, sizeof nm, "v.blk.%d.%s.weight", il, what), bad |= mat(vm, nm, ni, no, &L->field, err) != 0)
    V(ln1_w, "ln1.weight", E), V(ln1_b, "ln1.bias", E), V(ln2_w, "ln2.weight", E), V(ln2_b, "ln2.bias", E);
    V(q_b, "attn_q.bias", E), V(k_b, "attn_k.bias", E), V(v_b, "attn_v.bias", E), V(o_b, "attn_out.bias", E);
    V(up_b, "ffn_up.bias", F), V(down_b, "ffn_down.bias", E);
    if (!bad) M(q, "attn_q", E, E), M(k, "attn_k", E, E), M(v, "attn_v", E, E), M(o, "attn_out", E, E);
    if (!bad) M(up, "ffn_up", E, F), M(down, "ffn_down", F, E);
#undef V
#undef M
    return bad ? -1 : 0;
}

static int load_globals(vis_model *vm, lfm2c_error *err) {
    const vis_hparams *hp = &vm->hp;
    const int E = hp->n_embd, P = hp->patch, merged = E * hp->n_merge * hp->n_merge;
    const gguf_tensor *pos = gguf_find_tensor(vm->gguf, "v.position_embd.weight");
    if (!pos || pos->ne[0] != E) return FAIL("v.position_embd.weight missing or not %d wide", E);
    int side = 1;
    while ((int64_t)side * side < pos->ne[1] && side < VIS_MAX_SIDE) side++;
    if ((int64_t)side * side != pos->ne[1])
        return FAIL("v.position_embd.weight: %lld positions are not a square grid", (long long)pos->ne[1]);
    vm->hp.pos_side = side;
    const gguf_tensor *m1 = gguf_find_tensor(vm->gguf, "mm.1.weight");
    if (!m1 || m1->ne[1] < 1 || m1->ne[1] > 8 * VIS_MAX_EMBD) return FAIL("tensor mm.1.weight missing or too wide");
    vm->hp.mm_hidden = (int)m1->ne[1];
    int bad = 0;
    vm->patch_b = vec(vm->gguf, "v.patch_embd.bias", E, true, err, &bad);
    if (!bad) vm->pos = vec(vm->gguf, "v.position_embd.weight", (int64_t)side * side * E, true, err, &bad);
    if (!bad) vm->post_w = vec(vm->gguf, "v.post_ln.weight", E, true, err, &bad);
    if (!bad) vm->post_b = vec(vm->gguf, "v.post_ln.bias", E, true, err, &bad);
    if (!bad) vm->mm_norm_w = vec(vm->gguf, "mm.input_norm.weight", merged, false, err, &bad);
    if (!bad) vm->mm_norm_b = vec(vm->gguf, "mm.input_norm.bias", merged, false, err, &bad);
    if (!bad) vm->mm1_b = vec(vm->gguf, "mm.1.bias", hp->mm_hidden, true, err, &bad);
    if (!bad) vm->mm2_b = vec(vm->gguf, "mm.2.bias", hp->proj_dim, true, err, &bad);
    if (bad) return -1;
    if (mat(vm, "v.patch_embd.weight", 3 * P * P, E, &vm->patch_w, err) ||
        mat(vm, "mm.1.weight", merged, hp->mm_hidden, &vm->mm1, err) ||
        mat(vm, "mm.2.weight", hp->mm_hidden, hp->proj_dim, &vm->mm2, err))
        return -1;
    return 0;
}

vis_model *vis_open_gguf(gguf_file *g, const encoder_ops *enc, lfm2c_error *err) {
    vis_model *vm = calloc(1, sizeof *vm);
    if (!vm) {
        gguf_close(g);
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return NULL;
    }
    vm->gguf = g;
    vm->enc = enc;
    if (read_hparams(g, &vm->hp, err) || load_globals(vm, err)) goto fail;
    if (!(vm->layers = calloc((size_t)vm->hp.n_layer, sizeof *vm->layers))) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        goto fail;
    }
    for (int il = 0; il < vm->hp.n_layer; il++)
        if (load_layer(vm, il, err)) goto fail;
    return vm;
fail:
    vis_close(vm);
    return NULL;
}

vis_model *vis_open_with(const char *path, const encoder_ops *enc, lfm2c_error *err) {
    gguf_file *g = gguf_open(path, err);
    return g ? vis_open_gguf(g, enc, err) : NULL;
}

vis_model *vis_open(const char *path, lfm2c_error *err) {
    return vis_open_with(path, encoder_for(NULL, NULL, NULL), err);
}

void vis_close(vis_model *vm) {
    if (!vm) return;
    for (int il = 0; vm->layers && il < vm->hp.n_layer; il++) {
        vis_layer *L = &vm->layers[il];
        float *v[] = {L->ln1_w, L->ln1_b, L->ln2_w, L->ln2_b, L->q_b, L->k_b, L->v_b, L->o_b, L->up_b, L->down_b};
        for (size_t i = 0; i < sizeof v / sizeof *v; i++) free(v[i]);
    }
    free(vm->layers);
    float *g[] = {vm->patch_b, vm->pos, vm->post_w, vm->post_b, vm->mm_norm_w, vm->mm_norm_b, vm->mm1_b, vm->mm2_b};
    for (size_t i = 0; i < sizeof g / sizeof *g; i++) free(g[i]);
    gguf_close(vm->gguf);
    free(vm);
}
