/* image_api.c — the public image API of include/lfm2c.h ("images"): an mmproj opened for a
 * language model, an image file's bytes decoded (image.c), resized and cut (resample.c) and
 * encoded (tower.c) into embedding rows, and the tokens its placeholder becomes, as LFM2-VL's
 * processor builds them: <|image_start|>, then per tile <|img_row_R_col_C|> and its rows, then
 * <|img_thumbnail|> and the thumbnail's rows (a tiled image), or the one image's rows, then
 * <|image_end|>. The image's identity is the SHA-256 of its size and decoded pixels; a row's id
 * is below 0, 31 bits of the SHA-256 of that identity and the row's index, so the session's
 * history (and prefix reuse, which compares it and reuses an image's rows whole or not at all,
 * core/session.c) tells two images apart; lfm2c_prompt_images splices images into a tokenized
 * prompt. */
#include "vision/vision.h"
#include "base/error.h"
#include "base/sha256.h"
#include "core/model.h"
#include "text/tokenizer.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lfm2c_mmproj {
    vis_model *vm;
    const lfm2c_model *model;
    vis_prep_params pp;
    int32_t placeholder, start, end, thumb;
    threadpool *pool;   /* its own (as many threads as the model's): an encode may run beside the
                         model's forwards (the server encodes on a request's thread) */
    pthread_mutex_t mu; /* one encode at a time on the pool (callers on several threads) */
};

struct lfm2c_image {
    int w, h, cols, rows;
    uint8_t digest[32]; /* SHA-256 of the width, height (little-endian 32 bits each), pixels */
    int32_t *tokens;
    int n_tokens, n_rows;
    float *emb; /* n_rows x n_embd */
};

lfm2c_image_limits lfm2c_image_default_limits(void) {
    const vis_image_limits l = vis_image_default_limits();
    return (lfm2c_image_limits){l.max_bytes, l.max_pixels, l.max_side};
}

static int32_t find_tok(const lfm2c_model *m, const char *text) {
    return tokenizer_find_token(m->tok, text, strlen(text));
}

int32_t lfm2c_image_placeholder(const lfm2c_model *model) { return model ? find_tok(model, "<image>") : -1; }

lfm2c_mmproj *lfm2c_mmproj_open(const char *path, const lfm2c_model *model, lfm2c_error *err) {
    if (!model) { /* to describe it only */
        vis_model *vm = vis_open(path, err);
        lfm2c_mmproj *mm = vm ? calloc(1, sizeof *mm) : NULL;
        if (mm) *mm = (lfm2c_mmproj){.vm = vm, .pp = vis_prep_for(vm), .mu = PTHREAD_MUTEX_INITIALIZER};
        else if (vm) vis_close(vm), lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
        return mm;
    }
    const int32_t ph = find_tok(model, "<image>"), st = find_tok(model, "<|image_start|>"),
                  en = find_tok(model, "<|image_end|>"), th = find_tok(model, "<|img_thumbnail|>");
    if (ph < 0 || st < 0 || en < 0 || th < 0) {
        lfm2c_set_error(err, LFM2C_EUNSUPPORTED,
                        "the model's tokenizer has no image tokens (<image>, <|image_start|>, "
                        "<|image_end|>, <|img_thumbnail|>): not a vision-language model");
        return NULL;
    }
    const encoder_ops *enc = encoder_for(model, "images (the vision encoder)", err);
    vis_model *vm = enc ? vis_open_with(path, enc, err) : NULL;
    if (!vm) return NULL;
    if (vm->hp.proj_dim != model->info.n_embd) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "the mmproj projects to a width of %d, the model's is %d: not its mmproj",
                        vm->hp.proj_dim, model->info.n_embd);
        vis_close(vm);
        return NULL;
    }
    lfm2c_mmproj *mm = calloc(1, sizeof *mm);
    if (!mm) {
        vis_close(vm);
        return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), NULL;
    }
    *mm = (lfm2c_mmproj){vm, model, vis_prep_for(vm), ph, st, en, th, NULL, PTHREAD_MUTEX_INITIALIZER};
    const int n = model->pool ? threadpool_size(model->pool) : 1;
    if (n > 1 && !(mm->pool = threadpool_new(n))) {
        lfm2c_mmproj_free(mm);
        return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory for the encoder's threads"), NULL;
    }
    return mm;
}

void lfm2c_mmproj_free(lfm2c_mmproj *mm) {
    if (!mm) return;
    threadpool_free(mm->pool);
    pthread_mutex_destroy(&mm->mu);
    vis_close(mm->vm);
    free(mm);
}

int lfm2c_mmproj_describe(const lfm2c_mmproj *mm, char *buf, size_t cap) {
    if (!mm) return buf && cap ? (buf[0] = 0) : 0;
    const vis_hparams *h = &mm->vm->hp;
    return snprintf(buf, cap,
                    "LFM2-VL mmproj: tower %d blocks x %d wide (%d heads, FFN %d), patch %d, position grid %d x %d, "
                    "unshuffle %d, projector %d -> %d%s; images %d..%d tokens, tiles of %d px",
                    h->n_layer, h->n_embd, h->n_head, h->n_ff, h->patch, h->pos_side, h->pos_side, h->n_merge,
                    h->mm_hidden, h->proj_dim, mm->vm->mm_norm_w ? " (layer norm first)" : "", mm->pp.min_tokens,
                    mm->pp.max_tokens, mm->pp.tile);
}

static void put_le32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}

static void digest(const vis_image *im, uint8_t out[32]) {
    uint8_t size[8];
    put_le32(size, (uint32_t)im->w), put_le32(size + 4, (uint32_t)im->h);
    sha256_ctx c;
    sha256_init(&c);
    sha256_update(&c, size, 8);
    sha256_update(&c, im->rgb, (size_t)im->w * im->h * 3);
    sha256_final(&c, out);
}

/* Row `row`'s id: below 0, the first 31 bits of SHA-256(digest, row as little-endian 32 bits). */
static int32_t row_id(const uint8_t dig[32], int row) {
    uint8_t in[36], h[32];
    memcpy(in, dig, 32);
    put_le32(in + 32, (uint32_t)row);
    sha256_ctx c;
    sha256_init(&c);
    sha256_update(&c, in, sizeof in);
    sha256_final(&c, h);
    return (int32_t)(0x80000000u | ((uint32_t)h[0] << 23 | (uint32_t)h[1] << 15 | (uint32_t)h[2] << 7 | h[3] >> 1));
}

/* The placeholder's expansion for the prepared images (tile markers looked up by name). */
static int build_tokens(const lfm2c_mmproj *mm, const vis_prepared *pp, lfm2c_image *img, lfm2c_error *err) {
    const int tiles = pp->plan.cols * pp->plan.rows;
    img->tokens = malloc(sizeof(int32_t) * ((size_t)img->n_rows + tiles + 3));
    if (!img->tokens) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), -1;
    int n = 0, row = 0;
    img->tokens[n++] = mm->start;
    for (int k = 0; k < pp->n; k++) {
        if (k < tiles && tiles > 1) {
            char name[48];
            snprintf(name, sizeof name, "<|img_row_%d_col_%d|>", k / pp->plan.cols + 1, k % pp->plan.cols + 1);
            const int32_t t = find_tok(mm->model, name);
            if (t < 0) return lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "the model's tokenizer has no %s", name), -1;
            img->tokens[n++] = t;
        } else if (tiles > 1) {
            img->tokens[n++] = mm->thumb;
        }
        const int rows = vis_n_tokens(mm->vm, pp->img[k].w, pp->img[k].h);
        for (int r = 0; r < rows; r++, row++) img->tokens[n++] = row_id(img->digest, row);
    }
    img->tokens[n++] = mm->end;
    img->n_tokens = n;
    return 0;
}

/* The caller's memory budget (lfm2c_image_budget), charged before each stage allocates and
 * released as it frees; what is still held is released before the encode returns. */
typedef struct charge {
    const lfm2c_image_budget *b;
    size_t held;
} charge;

static int take(charge *c, size_t bytes, const char *what, lfm2c_error *err) {
    if (c->b && c->b->charge && c->b->charge(c->b->user, bytes)) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "the memory budget refused %zu MiB for %s", (bytes + (1u << 20) - 1) >> 20,
                        what);
        return -1;
    }
    c->held += bytes;
    return 0;
}

static void give(charge *c, size_t bytes) {
    if (bytes > c->held) bytes = c->held;
    c->held -= bytes;
    if (bytes && c->b && c->b->release) c->b->release(c->b->user, bytes);
}

/* Each prepared image normalised and encoded into its rows, one image at a time on the mmproj's
 * pool: the encoder's buffers (for the largest image) are charged once the turn is ours. */
static int encode_all(lfm2c_mmproj *mm, const vis_prepared *pp, lfm2c_image *img, charge *c, lfm2c_error *err) {
    const vis_model *vm = mm->vm;
    size_t off = 0, need = 0;
    for (int k = 0; k < pp->n; k++) {
        const size_t b = vis_encode_bytes(vm, mm->pool, pp->img[k].w, pp->img[k].h);
        need = b > need ? b : need;
    }
    pthread_mutex_lock(&mm->mu);
    int rc = take(c, need, "encoding the image", err);
    for (int k = 0; k < pp->n && !rc; k++) {
        const vis_image *t = &pp->img[k];
        float *planes = malloc(sizeof(float) * (size_t)t->w * t->h * 3);
        if (!planes) {
            lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
            rc = -1;
            break;
        }
        vis_normalize(vm, t->rgb, t->w, t->h, planes);
        rc = vis_encode(vm, mm->pool, planes, t->w, t->h, img->emb + off, err);
        off += (size_t)vis_n_tokens(vm, t->w, t->h) * vm->hp.proj_dim;
        free(planes);
    }
    pthread_mutex_unlock(&mm->mu);
    if (!rc) give(c, need);
    return rc;
}

/* The image (its source of w x h) with its rows and tokens allocated, charged first. */
static lfm2c_image *image_new(const lfm2c_mmproj *mm, int w, int h, const vis_prepared *pp, charge *c,
                              lfm2c_error *err) {
    int rows = 0;
    for (int k = 0; k < pp->n; k++) rows += vis_n_tokens(mm->vm, pp->img[k].w, pp->img[k].h);
    const size_t emb = sizeof(float) * (size_t)rows * mm->vm->hp.proj_dim + 1;
    const size_t toks = sizeof(int32_t) * ((size_t)rows + (size_t)pp->plan.cols * pp->plan.rows + 3);
    if (take(c, sizeof(lfm2c_image) + emb + toks, "the image's rows", err)) return NULL;
    lfm2c_image *img = calloc(1, sizeof *img);
    if (img) {
        *img = (lfm2c_image){.w = w, .h = h, .cols = pp->plan.cols, .rows = pp->plan.rows, .n_rows = rows};
        img->emb = malloc(emb);
    }
    if (!img || !img->emb) {
        lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory for an image's rows");
        lfm2c_image_free(img), img = NULL;
    }
    return img;
}

/* The decoded image (freed here as soon as it is resized) -> its rows and tokens. */
static lfm2c_image *encode_decoded(lfm2c_mmproj *mm, vis_image *im, charge *c, lfm2c_error *err) {
    const size_t prep = vis_prepare_bytes(&mm->pp, im->w, im->h);
    const int w = im->w, h = im->h;
    vis_prepared pp;
    uint8_t dig[32];
    digest(im, dig);
    if (take(c, prep, "resizing the image", err) || vis_prepare(&mm->pp, im, &pp, err)) return NULL;
    const size_t kept = vis_prepared_bytes(&pp.plan, mm->pp.tile) + sizeof(vis_image) * (size_t)pp.cap;
    give(c, prep > kept ? prep - kept : 0);
    vis_image_free(im); /* the source's pixels: only the prepared images are needed now */
    give(c, (size_t)w * h * 3);
    lfm2c_image *img = image_new(mm, w, h, &pp, c, err);
    if (img) memcpy(img->digest, dig, sizeof dig);
    if (img && (build_tokens(mm, &pp, img, err) || encode_all(mm, &pp, img, c, err))) lfm2c_image_free(img), img = NULL;
    vis_prepared_free(&pp);
    return img;
}

lfm2c_image *lfm2c_image_encode_budget(lfm2c_mmproj *mm, const void *data, size_t n, const lfm2c_image_limits *lim,
                                       const lfm2c_image_budget *budget, lfm2c_error *err) {
    if (!mm) return lfm2c_set_error(err, LFM2C_EINVAL, "no mmproj: images need a vision model's mmproj file"), NULL;
    if (!mm->model) return lfm2c_set_error(err, LFM2C_EINVAL, "the mmproj was opened without its model"), NULL;
    const lfm2c_image_limits l = lim ? *lim : lfm2c_image_default_limits();
    const vis_image_limits vl = {l.max_bytes, l.max_pixels, l.max_side};
    vis_image_head hd;
    if (vis_image_probe(data, n, &vl, &hd, err)) return NULL; /* the header alone: nothing decoded yet */
    vis_prep_plan pl; /* the rows it will make (the turned size's; the same either way) */
    if (budget && budget->max_rows > 0 && !vis_plan(&mm->pp, (int)hd.w, (int)hd.h, &pl) && pl.tokens > budget->max_rows)
        return lfm2c_set_error(err, LFM2C_ECONTEXT, "the image would take %d positions, more than the %d left for it",
                               pl.tokens, budget->max_rows),
               NULL;
    charge c = {budget, 0};
    if (take(&c, vis_image_decode_bytes(&hd), "decoding the image", err)) return NULL;
    vis_image im;
    lfm2c_image *img = NULL;
    if (!vis_image_decode(data, n, &vl, &im, err)) {
        give(&c, c.held - (size_t)im.w * im.h * 3); /* the decoder's buffers are gone */
        img = encode_decoded(mm, &im, &c, err);
        vis_image_free(&im);
    }
    give(&c, c.held);
    return img;
}

lfm2c_image *lfm2c_image_encode(lfm2c_mmproj *mm, const void *data, size_t n, const lfm2c_image_limits *lim,
                                lfm2c_error *err) {
    return lfm2c_image_encode_budget(mm, data, n, lim, NULL, err);
}

void lfm2c_image_free(lfm2c_image *img) {
    if (!img) return;
    free(img->tokens);
    free(img->emb);
    free(img);
}

const int32_t *lfm2c_image_tokens(const lfm2c_image *img, int *n) {
    if (n) *n = img ? img->n_tokens : 0;
    return img ? img->tokens : NULL;
}

const float *lfm2c_image_rows(const lfm2c_image *img, int *n_rows) {
    if (n_rows) *n_rows = img ? img->n_rows : 0;
    return img ? img->emb : NULL;
}

void lfm2c_image_info(const lfm2c_image *img, int *w, int *h, int *cols, int *rows, unsigned char dig[32]) {
    static const lfm2c_image none;
    if (!img) img = &none;
    if (w) *w = img->w;
    if (h) *h = img->h;
    if (cols) *cols = img->cols;
    if (rows) *rows = img->rows;
    if (dig) memcpy(dig, img->digest, 32);
}

int lfm2c_prompt_images(const lfm2c_model *model, const int32_t *tokens, int n, lfm2c_image *const *images,
                        int n_images, int32_t **out, int *n_out, float **rows, lfm2c_error *err) {
    if (!out || !n_out || !rows) return lfm2c_set_error(err, LFM2C_EINVAL, "NULL output"), -1;
    *out = NULL, *rows = NULL, *n_out = 0;
    if (!model || (!tokens && n > 0) || n < 0 || n_images < 0 || (!images && n_images > 0))
        return lfm2c_set_error(err, LFM2C_EINVAL, "NULL model, tokens or images"), -1;
    for (int k = 0; k < n_images; k++)
        if (!images[k]) return lfm2c_set_error(err, LFM2C_EINVAL, "NULL image %d", k), -1;
    const int32_t ph = lfm2c_image_placeholder(model);
    int found = 0;
    size_t n_tok = (size_t)n, n_row = 0;
    for (int i = 0; i < n; i++) {
        if (tokens[i] != ph || ph < 0) continue;
        if (found < n_images) n_tok += (size_t)images[found]->n_tokens - 1, n_row += (size_t)images[found]->n_rows;
        found++;
    }
    if (found != n_images) {
        lfm2c_set_error(err, LFM2C_EINVAL, "the prompt has %d image placeholder%s for %d image%s", found,
                        found == 1 ? "" : "s", n_images, n_images == 1 ? "" : "s");
        return -1;
    }
    const size_t H = (size_t)model->info.n_embd;
    *out = malloc(sizeof(int32_t) * (n_tok + 1));
    *rows = n_row ? malloc(sizeof(float) * n_row * H) : NULL;
    if (!*out || (n_row && !*rows)) {
        free(*out), free(*rows), *out = NULL, *rows = NULL;
        return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), -1;
    }
    size_t t = 0, r = 0;
    for (int i = 0, k = 0; i < n; i++) {
        if (tokens[i] != ph) {
            (*out)[t++] = tokens[i];
            continue;
        }
        const lfm2c_image *im = images[k++];
        memcpy(*out + t, im->tokens, sizeof(int32_t) * (size_t)im->n_tokens);
        memcpy(*rows + r * H, im->emb, sizeof(float) * (size_t)im->n_rows * H);
        t += (size_t)im->n_tokens, r += (size_t)im->n_rows;
    }
    *n_out = (int)t;
    return 0;
}
