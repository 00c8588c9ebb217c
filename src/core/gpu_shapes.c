/* gpu_shapes.c — the model checks and the scratch widths both GPU backends use (gpu_shapes.h):
 * what a forward on a device needs of a model, and how wide its rows are, in one place. */
#include "core/gpu_shapes.h"

#include "base/error.h"
#include "core/backend.h"
#include "formats/ggml_types.h"

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

int64_t gpu_big_width(int64_t H, int64_t nq, int64_t ff_max) { return max64(max64(3 * H, nq), ff_max); }

int64_t gpu_hid_width(int64_t H, int64_t nq, int64_t kv_dim) { return max64(max64(nq, H), 2 * kv_dim); }

gpu_widths gpu_widths_of(const lfm2c_model *m) {
    const lfm2c_model_info *in = &m->info;
    const int64_t H = in->n_embd, nq = (int64_t)in->n_head * in->head_dim;
    int64_t ff = 0, fe = 0;
    for (int l = 0; l < in->n_layer; l++) { /* from the tensors themselves */
        const layer *L = &m->layers[l];
        if (L->ffn_gate.data) ff = max64(ff, L->ffn_gate.ne[1]);
        if (L->gate_exps.data) fe = max64(fe, L->gate_exps.ne[1]);
    }
    gpu_widths w;
    w.kv_dim = in->n_head_kv_max * in->head_dim;
    w.big = (int)gpu_big_width(H, nq, ff);
    w.hid = (int)gpu_hid_width(H, nq, w.kv_dim);
    w.ff_exp = (int)fe;
    return w;
}

void gpu_layer_matrices(const layer *L, const tensor *out[GPU_LAYER_MATS]) {
    const tensor *t[GPU_LAYER_MATS] = {&L->conv_in,   &L->conv_out, &L->wq,       &L->wk,       &L->wv,
                                       &L->wo,        &L->ffn_gate, &L->ffn_up,   &L->ffn_down, &L->router,
                                       &L->gate_exps, &L->up_exps,  &L->down_exps};
    for (int i = 0; i < GPU_LAYER_MATS; i++) out[i] = t[i];
}

void gpu_layer_vectors(const layer *L, const tensor *out[GPU_LAYER_VECS]) {
    const tensor *t[GPU_LAYER_VECS] = {&L->attn_norm, &L->ffn_norm, &L->conv_w,
                                       &L->q_norm,    &L->k_norm,   &L->expert_bias};
    for (int i = 0; i < GPU_LAYER_VECS; i++) out[i] = t[i];
}

/* A matrix the backend's products take: its type's row has the backend's bit (the type table,
 * formats/ggml_types.h; the refusal names the backends of this build that run it), and its rows
 * are whole blocks of a multiple of 8 weights (both GPUs dequantize 8 weights at a time). */
static int check_matrix(const gpu_rules *r, const tensor *t, lfm2c_error *err) {
    if (!t->data) return 0;
    const ggml_type_info *ti = ggml_type_get(t->type);
    const bool runs = ti && (ti->runs & r->run);
    if (!runs || t->ne[0] % 8 || t->ne[0] % ti->block_size) {
        char who[96] = "";
        if (ti && !runs) backend_type_runners(t->type, who, sizeof who);
        if (ti)
            lfm2c_set_error(
                err, LFM2C_EUNSUPPORTED, "%s backend: tensor '%s' (%s, %lld wide) is not supported (%s%s%s)", r->name,
                t->name, ti->name, (long long)t->ne[0],
                runs ? "rows of whole blocks, a multiple of 8 weights" : ti->name, runs ? "" : " runs on: ", who);
        else
            lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "%s backend: tensor '%s' (type %u, %lld wide) is not supported",
                            r->name, t->name, t->type, (long long)t->ne[0]);
        return -1;
    }
    return r->matrix ? r->matrix(r->ctx, t, err) : 0;
}

static int check_f32(const gpu_rules *r, const tensor *t, lfm2c_error *err) {
    if (!t->data || t->type == GGML_F32) return 0;
    lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "%s backend: '%s' is not F32", r->name, t->name);
    return -1;
}

static int check_layer(const gpu_rules *r, const layer *L, lfm2c_error *err) {
    const tensor *mats[GPU_LAYER_MATS], *vecs[GPU_LAYER_VECS];
    gpu_layer_matrices(L, mats);
    gpu_layer_vectors(L, vecs);
    for (int i = 0; i < GPU_LAYER_MATS; i++)
        if (check_matrix(r, mats[i], err)) return -1;
    for (int i = 0; i < GPU_LAYER_VECS; i++)
        if (check_f32(r, vecs[i], err)) return -1;
    return 0;
}

int gpu_check_model(const lfm2c_model *m, const gpu_rules *r, lfm2c_error *err) {
    const lfm2c_model_info *in = &m->info;
    for (int i = 0; i < 2; i++) {
        const int t = i ? m->type_v : m->type_k;
        if (t != LFM2C_KV_F16 && t != LFM2C_KV_F32) {
            lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "%s backend: the KV cache is f16 or f32 (-ctk / -ctv), not %s",
                            r->name, lfm2c_kv_type_name(t));
            return -1;
        }
    }
    if (in->head_dim > 256 || in->head_dim % 2) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "%s backend: head dimension %d (even, at most 256)", r->name,
                        in->head_dim);
        return -1;
    }
    if (check_matrix(r, &m->tok_embd, err) || check_matrix(r, &m->output, err) || check_f32(r, &m->out_norm, err))
        return -1;
    for (int l = 0; l < in->n_layer; l++)
        if (check_layer(r, &m->layers[l], err)) return -1;
    return 0;
}
