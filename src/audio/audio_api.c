/* audio_api.c — the public audio API of include/lfm2c.h ("audio"): an audio mmproj opened for a
 * language model, a clip's bytes decoded (decode.c), down-mixed and resampled to 16 kHz
 * (resample.c), turned into log-mel features (mel.c) and encoded (conformer.c) into embedding
 * rows, and a prompt's text split at LFM2C_AUDIO_MARKER and tokenized part by part as libmtmd's
 * mtmd_tokenize does, each marker replaced by its clip's rows. A row's id is below 0: 31 bits of
 * SHA-256(the SHA-256 of the 16 kHz samples, the row's index), as an image's rows are named, so
 * the session's history (and prefix reuse, which compares it and reuses such a run of rows whole
 * or not at all) tells two clips apart. */
#include "audio/audio.h"
#include "base/error.h"
#include "base/sha256.h"
#include "core/model.h"
#include "formats/gguf.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lfm2c_audio_mmproj {
    aud_model *am;
    const lfm2c_model *model;
    threadpool *pool;   /* its own (as many threads as the model's): an encode may run beside the
                           model's forwards */
    pthread_mutex_t mu; /* one encode at a time on the pool */
};

struct lfm2c_audio {
    double seconds;
    char digest[65];
    int32_t *tokens;
    int n_rows;
    float *emb; /* n_rows x n_embd */
};

static aud_limits to_aud(const lfm2c_audio_limits *l) {
    return (aud_limits){l->max_bytes, l->max_seconds, l->max_channels, l->min_rate, l->max_rate, l->max_samples};
}

lfm2c_audio_limits lfm2c_audio_default_limits(void) {
    const aud_limits l = aud_default_limits();
    return (lfm2c_audio_limits){l.max_bytes, l.max_seconds, l.max_channels, l.min_rate, l.max_rate, l.max_samples};
}

int lfm2c_mmproj_kind(const char *path, lfm2c_error *err) {
    if (!path) return lfm2c_set_error(err, LFM2C_EINVAL, "NULL mmproj path"), -1;
    gguf_file *g = gguf_open(path, err);
    if (!g) return -1;
    char *arch = gguf_get_string(g, "general.architecture"), *pt = gguf_get_string(g, "clip.projector_type");
    if (!pt) pt = gguf_get_string(g, "clip.audio.projector_type");
    if (!pt) pt = gguf_get_string(g, "clip.vision.projector_type");
    int kind = -1;
    if (!arch || strcmp(arch, "clip"))
        lfm2c_set_error(err, LFM2C_EFORMAT, "not an mmproj: its architecture is '%s', not 'clip' (a model file?)",
                        arch ? arch : "(none)");
    else if (pt && !strcmp(pt, "lfm2a")) kind = LFM2C_MMPROJ_AUDIO;
    else if (pt && !strcmp(pt, "lfm2")) kind = LFM2C_MMPROJ_IMAGE;
    else
        lfm2c_set_error(err, LFM2C_EFORMAT,
                        "mmproj: projector type '%s' is neither LFM2-VL's 'lfm2' (images) nor LFM2-Audio's 'lfm2a'",
                        pt ? pt : "(none)");
    free(arch), free(pt);
    gguf_close(g);
    return kind;
}

lfm2c_audio_mmproj *lfm2c_audio_mmproj_open(const char *path, const lfm2c_model *model, lfm2c_error *err) {
    const encoder_ops *enc = encoder_for(model, "audio (the audio encoder)", err);
    aud_model *am = enc ? aud_open(path, enc, err) : NULL;
    if (!am) return NULL;
    if (model && am->hp.proj_dim != model->info.n_embd) {
        lfm2c_set_error(err, LFM2C_EFORMAT,
                        "the audio mmproj projects to a width of %d, the model's is %d: not its mmproj",
                        am->hp.proj_dim, model->info.n_embd);
        aud_close(am);
        return NULL;
    }
    lfm2c_audio_mmproj *mm = calloc(1, sizeof *mm);
    if (!mm) {
        aud_close(am);
        return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), NULL;
    }
    *mm = (lfm2c_audio_mmproj){am, model, NULL, PTHREAD_MUTEX_INITIALIZER};
    const int n = model && model->pool ? threadpool_size(model->pool) : 1;
    if (n > 1 && !(mm->pool = threadpool_new(n))) {
        lfm2c_audio_mmproj_free(mm);
        return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory for the encoder's threads"), NULL;
    }
    return mm;
}

void lfm2c_audio_mmproj_free(lfm2c_audio_mmproj *mm) {
    if (!mm) return;
    threadpool_free(mm->pool);
    pthread_mutex_destroy(&mm->mu);
    aud_close(mm->am);
    free(mm);
}

int lfm2c_audio_mmproj_describe(const lfm2c_audio_mmproj *mm, char *buf, size_t cap) {
    if (!mm) {
        if (buf && cap) buf[0] = 0;
        return 0;
    }
    const aud_hparams *h = &mm->am->hp;
    return snprintf(
        buf, cap,
        "LFM2-Audio mmproj: Conformer %d blocks x %d wide (%d heads, feed-forward %d, depthwise kernel %d), "
        "%d mel bins at %d Hz, subsampling x8 (%d channels), adapter %d -> %d; clips up to %d tokens "
        "(%.1f s)",
        h->n_layer, h->n_embd, h->n_head, h->n_ff, h->kernel, h->n_mel, h->sample_rate, h->sub_ch, h->mm_hidden,
        h->proj_dim, h->max_tokens, h->max_tokens * 8.0 * h->hop / h->sample_rate);
}

int lfm2c_audio_probe(const lfm2c_audio_mmproj *mm, const void *data, size_t n, const lfm2c_audio_limits *lim,
                      lfm2c_audio_facts *out, lfm2c_error *err) {
    if (!mm || !out) return lfm2c_set_error(err, LFM2C_EINVAL, "NULL audio mmproj or facts"), -1;
    const lfm2c_audio_limits l = lim ? *lim : lfm2c_audio_default_limits();
    const aud_limits al = to_aud(&l);
    aud_info in;
    if (aud_probe(data, n, &al, &in, err)) return -1;
    const aud_hparams *h = &mm->am->hp;
    const int64_t m = aud_out_frames(in.rate, h->sample_rate, in.frames), frames = m / h->hop + 1;
    const int T = aud_n_tokens((int)(frames < 1 << 30 ? frames : 1 << 30)),
              nth = mm->pool ? threadpool_size(mm->pool) : 1;
    *out = (lfm2c_audio_facts){in.channels, in.rate, in.frames, (double)in.frames / in.rate, T, 0};
    out->bytes = (size_t)in.frames * in.channels * sizeof(float) * 2 + (size_t)m * sizeof(float) * 2 +
                 (size_t)h->n_mel * frames * sizeof(float) + aud_encode_bytes(mm->am, (int)frames, nth) +
                 (size_t)T * h->proj_dim * sizeof(float) * 2;
    if (T > h->max_tokens) {
        lfm2c_set_error(err, LFM2C_ETOOLARGE,
                        "audio of %.1f s makes %d audio tokens, more than the %d this mmproj allows", out->seconds, T,
                        h->max_tokens);
        return -1;
    }
    return 0;
}

/* Row `row`'s id: below 0, the first 31 bits of SHA-256(the clip's digest in hex, row as
 * little-endian 32 bits). */
static int32_t row_id(const char digest[65], int row) {
    uint8_t in[68], h[32];
    memcpy(in, digest, 64);
    for (int i = 0; i < 4; i++) in[64 + i] = (uint8_t)((uint32_t)row >> (8 * i));
    sha256_ctx c;
    sha256_init(&c);
    sha256_update(&c, in, sizeof in);
    sha256_final(&c, h);
    return (int32_t)(0x80000000u | ((uint32_t)h[0] << 23 | (uint32_t)h[1] << 15 | (uint32_t)h[2] << 7 | h[3] >> 1));
}

/* 16 kHz mono samples -> features -> rows (the mmproj's lock held by the caller). */
static lfm2c_audio *encode_mono(lfm2c_audio_mmproj *mm, const float *x, int64_t n, lfm2c_error *err) {
    const aud_model *am = mm->am;
    const aud_mel_params mp = aud_mel_for(am);
    const int64_t frames = aud_mel_frames(&mp, n);
    if (aud_n_tokens((int)(frames < 1 << 30 ? frames : 1 << 30)) > am->hp.max_tokens) {
        lfm2c_set_error(err, LFM2C_ETOOLARGE, "audio of %.1f s: more tokens than the %d this mmproj allows",
                        (double)n / mp.sample_rate, am->hp.max_tokens);
        return NULL;
    }
    const int T = aud_n_tokens((int)frames), E = am->hp.proj_dim;
    lfm2c_audio *a = calloc(1, sizeof *a);
    float *mel = malloc(sizeof(float) * (size_t)mp.n_mel * (size_t)frames);
    if (a) a->tokens = malloc(sizeof(int32_t) * (size_t)T), a->emb = malloc(sizeof(float) * (size_t)T * E);
    if (!a || !mel || !a->tokens || !a->emb) {
        free(mel), lfm2c_audio_free(a);
        return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory for an audio clip's rows"), NULL;
    }
    a->seconds = (double)n / mp.sample_rate, a->n_rows = T;
    aud_digest(x, n, mp.sample_rate, a->digest);
    if (aud_mel(&mp, mm->pool, x, n, mel, err) || aud_encode(am, mm->pool, mel, (int)frames, a->emb, err)) {
        free(mel), lfm2c_audio_free(a);
        return NULL;
    }
    free(mel);
    for (int r = 0; r < T; r++) a->tokens[r] = row_id(a->digest, r);
    return a;
}

static int need_model(const lfm2c_audio_mmproj *mm, lfm2c_error *err) {
    if (!mm)
        return lfm2c_set_error(err, LFM2C_EINVAL, "no audio mmproj: audio needs an LFM2-Audio model's mmproj file"), -1;
    if (!mm->model) return lfm2c_set_error(err, LFM2C_EINVAL, "the audio mmproj was opened without its model"), -1;
    return 0;
}

/* pcm to 16 kHz mono, then its rows; the encoder reports its blocks to progress. The mmproj's lock
 * is held from setting progress to clearing it: one encode at a time, each with its own callback. */
static lfm2c_audio *encode_pcm(lfm2c_audio_mmproj *mm, const aud_pcm *pcm, void (*progress)(void *ud, double done),
                               void *ud, lfm2c_error *err) {
    int64_t n = 0;
    float *mono = aud_to_mono(pcm, mm->am->hp.sample_rate, &n);
    if (!mono) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory resampling audio"), NULL;
    pthread_mutex_lock(&mm->mu);
    mm->am->progress = progress, mm->am->progress_ud = ud;
    lfm2c_audio *a = encode_mono(mm, mono, n, err);
    mm->am->progress = NULL, mm->am->progress_ud = NULL;
    pthread_mutex_unlock(&mm->mu);
    if (mono != pcm->x) free(mono);
    return a;
}

lfm2c_audio *lfm2c_audio_encode_pcm(lfm2c_audio_mmproj *mm, const float *x, int64_t frames, int channels, int rate,
                                    lfm2c_error *err) {
    if (need_model(mm, err)) return NULL;
    const aud_limits l = aud_default_limits();
    if (frames < 1 || channels < 1 || channels > l.max_channels || rate < l.min_rate || rate > l.max_rate ||
        (double)frames / rate > l.max_seconds)
        return lfm2c_set_error(err, LFM2C_EINVAL, "audio of %lld frames, %d channels at %d Hz: out of bounds",
                               (long long)frames, channels, rate),
               NULL;
    const aud_pcm pcm = {channels, rate, frames, (float *)x};
    return encode_pcm(mm, &pcm, NULL, NULL, err);
}

lfm2c_audio *lfm2c_audio_encode(lfm2c_audio_mmproj *mm, const void *data, size_t n, const lfm2c_audio_limits *lim,
                                void (*progress)(void *ud, double done), void *ud, lfm2c_error *err) {
    if (need_model(mm, err)) return NULL;
    lfm2c_audio_facts facts;
    if (lfm2c_audio_probe(mm, data, n, lim, &facts, err)) return NULL;
    const lfm2c_audio_limits l = lim ? *lim : lfm2c_audio_default_limits();
    const aud_limits al = to_aud(&l);
    aud_pcm pcm;
    if (aud_decode(data, n, &al, &pcm, err)) return NULL;
    if (progress) progress(ud, 0.1);
    lfm2c_audio *a = encode_pcm(mm, &pcm, progress, ud, err);
    aud_pcm_free(&pcm);
    if (a && progress) progress(ud, 1.0);
    return a;
}

void lfm2c_audio_free(lfm2c_audio *a) {
    if (!a) return;
    free(a->tokens);
    free(a->emb);
    free(a);
}

const int32_t *lfm2c_audio_tokens(const lfm2c_audio *a, int *n) {
    if (n) *n = a ? a->n_rows : 0;
    return a ? a->tokens : NULL;
}

const float *lfm2c_audio_rows(const lfm2c_audio *a, int *n_rows) {
    if (n_rows) *n_rows = a ? a->n_rows : 0;
    return a ? a->emb : NULL;
}

double lfm2c_audio_seconds(const lfm2c_audio *a) { return a ? a->seconds : 0; }
const char *lfm2c_audio_digest(const lfm2c_audio *a) { return a ? a->digest : NULL; }

/* The next unguarded marker in t[at..len) (one the guard marked is text), or -1. */
static int64_t next_marker(const char *t, size_t len, size_t at) {
    const size_t ml = sizeof LFM2C_AUDIO_MARKER - 1, gl = sizeof LFM2C_GUARD_MARK - 1;
    for (const char *p = t + at; (p = memmem(p, len - (size_t)(p - t), LFM2C_AUDIO_MARKER, ml)); p += ml)
        if (p - t < (int64_t)gl || memcmp(p - gl, LFM2C_GUARD_MARK, gl)) return p - t;
    return -1;
}

/* Appends the ids of text[0..n) (tokenized as lfm2c_tokenize_prompt does) to *ids. */
static int add_text(const lfm2c_model *m, const char *text, size_t n, bool bos, int32_t **ids, size_t *len, size_t *cap,
                    lfm2c_error *err) {
    int k = 0;
    int32_t *t = lfm2c_tokenize_prompt(m, text, n, bos, &k, err);
    if (!t) return -1;
    if (*len + (size_t)k > *cap) {
        const size_t c = (*len + (size_t)k) * 2 + 16;
        int32_t *g = realloc(*ids, c * sizeof *g);
        if (!g) return free(t), lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), -1;
        *ids = g, *cap = c;
    }
    memcpy(*ids + *len, t, sizeof *t * (size_t)k);
    *len += (size_t)k;
    free(t);
    return 0;
}

int lfm2c_prompt_audio(const lfm2c_model *model, const char *text, size_t len, bool add_bos, lfm2c_audio *const *audio,
                       int n_audio, int32_t **out, int *n_out, float **rows, lfm2c_error *err) {
    if (!out || !n_out || !rows) return lfm2c_set_error(err, LFM2C_EINVAL, "NULL output of lfm2c_prompt_audio"), -1;
    *out = NULL, *rows = NULL, *n_out = 0;
    if (!model || (!text && len) || n_audio < 0 || (n_audio && !audio))
        return lfm2c_set_error(err, LFM2C_EINVAL, "NULL model, text or clips"), -1;
    for (int k = 0; k < n_audio; k++)
        if (!audio[k]) return lfm2c_set_error(err, LFM2C_EINVAL, "clip %d is NULL", k), -1;
    int found = 0;
    size_t n_row = 0;
    for (int64_t at = 0; (at = next_marker(text, len, (size_t)at)) >= 0; at += sizeof LFM2C_AUDIO_MARKER - 1) {
        if (found < n_audio) n_row += (size_t)audio[found]->n_rows;
        found++;
    }
    if (found != n_audio)
        return lfm2c_set_error(err, LFM2C_EINVAL, "the prompt has %d audio marker%s for %d clip%s", found,
                               found == 1 ? "" : "s", n_audio, n_audio == 1 ? "" : "s"),
               -1;
    const size_t H = (size_t)model->info.n_embd;
    size_t nt = 0, cap = 0, r = 0, from = 0;
    int32_t *ids = NULL;
    *rows = n_row ? malloc(sizeof(float) * n_row * H) : NULL;
    if (n_row && !*rows) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory"), -1;
    for (int k = 0; k <= n_audio; k++) { /* the text before marker k (after the last one: the rest) */
        const int64_t at = k < n_audio ? next_marker(text, len, from) : (int64_t)len;
        if (add_text(model, text + from, (size_t)at - from, add_bos && k == 0, &ids, &nt, &cap, err)) goto fail;
        if (k == n_audio) break;
        const lfm2c_audio *a = audio[k];
        if (nt + (size_t)a->n_rows > cap) {
            const size_t c = nt + (size_t)a->n_rows + 64;
            int32_t *g = realloc(ids, c * sizeof *g);
            if (!g) goto oom;
            ids = g, cap = c;
        }
        memcpy(ids + nt, a->tokens, sizeof(int32_t) * (size_t)a->n_rows);
        memcpy(*rows + r * H, a->emb, sizeof(float) * (size_t)a->n_rows * H);
        nt += (size_t)a->n_rows, r += (size_t)a->n_rows;
        from = (size_t)at + sizeof LFM2C_AUDIO_MARKER - 1;
    }
    *out = ids, *n_out = (int)nt;
    return 0;
oom:
    lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
fail:
    free(ids), free(*rows), *rows = NULL;
    return -1;
}
