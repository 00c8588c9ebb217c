/* lora.h — LoRA adapters: low-rank updates W' = W + s B A of a model's weight matrices, loaded
 * from PEFT's folder (adapter_config.json + adapter_model.safetensors) or from a GGUF adapter
 * (llama.cpp's: general.type "adapter", adapter.type "lora", tensors "<base>.lora_a/.lora_b"),
 * checked against the model they adapt, and applied at run time by the backends that can
 * (BACKEND_CAP_LORA, backend.h; the CPU's: cpu/lora_apply.c) as y += s B (A x) after each
 * adapted product. A session holds the adapters its tokens use, so one batch may mix sequences
 * with different adapters. Internal to the library. */
#ifndef LFM2C_LORA_H
#define LFM2C_LORA_H
#include "core/model.h"
#include "core/lfm2_arch.h"

/* Ranks above this are refused (the run-time hook keeps A x of one row on the stack). */
enum { LORA_MAX_RANK = 1024 };
/* Adapter scales (alpha / r, alpha / sqrt(r)) beyond this are refused at load: no fine-tune has
 * them, and far past it the outputs overflow to NaN. */
#define LORA_MAX_SCALE 1e4f

/* One adapted matrix: A [n_exp][r][n_in], B transposed [n_exp][r][n_out] (an axpy per rank
 * component), and the adapter's own scale (alpha / r, or alpha / sqrt(r) with rsLoRA). */
typedef struct lora_mat {
    int r, n_exp;
    int64_t n_in, n_out;
    float scale;
    float *a, *bt;
} lora_mat;

struct lfm2c_lora {
    int n_layer;
    lora_mat *mats; /* [n_layer * LFM2_T_COUNT]; r == 0: that matrix is not adapted */
    int n_mats;
    char arch[32];  /* the base architecture it was checked against */
    size_t bytes;   /* of A and B */
    int n_ignored;  /* PEFT: tensors of modules the config does not target (not applied) */
    int n_unpaired; /* PEFT: modules (experts) with lora_A alone, left unchanged */
};

/* Building one (convert/ writes and synthesizes adapters): an empty adapter for m; the matrix
 * of (l, id) with rank r and scale, zeroed, after checking that m has that tensor (`what` names
 * it in messages; a second call must agree on the rank and returns the same matrix). */
struct lfm2c_lora *lora_new(const lfm2c_model *m);
lora_mat *lora_claim(struct lfm2c_lora *lo, const lfm2c_model *m, int l, int id, int r, float scale, const char *what,
                     lfm2c_error *err);
/* The model's tensor of table row id in layer l (a matrix LoRA may adapt), or NULL. */
const tensor *lora_base_tensor(const lfm2c_model *m, int l, int id);
/* The adapted matrix of tensor id in layer l, or NULL. */
const lora_mat *lora_get(const struct lfm2c_lora *lo, int l, int id);
/* The tensor ids an adapter may target (the linear projections of spec 2.3-2.6). */
bool lora_target_ok(int id);
/* Checks one side's dims (GGUF order: ne[0] fastest) against what the base wants (d0, d1, d2);
 * -1 with a message naming `what` when they differ. */
int lora_want_dims(const char *what, const int64_t *ne, int n_dims, int64_t d0, int64_t d1, int64_t d2,
                   lfm2c_error *err);
/* Every value finite (an adapter's A and B are checked as they are read). */
bool lora_finite(const float *v, size_t n);
/* Reads the PEFT folder dir into lo (lora_peft.c): PEFT's rules for which modules the config
 * targets and with which rank and scale; -1 with err set. */
int lora_load_peft(struct lfm2c_lora *lo, const lfm2c_model *m, const char *dir, lfm2c_error *err);

#endif
