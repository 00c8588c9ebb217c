/* test_audio.c — LFM2-Audio's ears (src/audio/) against llama.cpp's libmtmd: the tiny synthetic
 * model and its audio mmproj in F32, F16 and Q8_0 (lfm2c synth --preset lfm2-audio-tiny, written
 * here: seeded, the same bytes the goldens were made from), and for each case of
 * data/audio/golden.json (clips of 1.3 to 35 s at 8, 16, 22.05, 44.1 and 48 kHz, mono and
 * stereo, 16-bit, 24-bit and float WAV, FLAC, MP3; tests/data/audio/README.md says how they were
 * made): the decoded, down-mixed, resampled samples are libmtmd's to the bit (MP3: its decoder
 * is not ours, within a stated bound), the log-mel features too, and the projected embeddings
 * within a tolerance per mmproj type; one thread or three give the same bits; files the reader
 * must refuse are, with a message. */
#include "test.h"
#include "audio/audio.h"
#include "audio/clips.h"
#include "convert/synth.h"
#include "formats/ggml_types.h"

#include <jansson.h>
#include <string.h>
#include <unistd.h>

#define ADATA(name) DATA("audio/" name)

static char mm_path[3][128], lm_path[128];
static const char *const TYPES[3] = {"f32", "f16", "q8_0"};

static void make_models(void) {
    synth_config lm;
    synth_audio_config ac;
    CHECK(synth_audio_preset("lfm2-audio-tiny", &lm, &ac), "the tiny preset");
    const uint32_t t[3] = {GGML_F32, GGML_F16, GGML_Q8_0};
    lfm2c_error err = {0};
    for (int k = 0; k < 3; k++) {
        snprintf(mm_path[k], sizeof mm_path[k], "/tmp/test_audio_%d_%s.gguf", (int)getpid(), TYPES[k]);
        CHECK(synth_audio_mmproj_write(&ac, t[k], 1, mm_path[k], &err), "synth %s: %s", TYPES[k], err.msg);
    }
    snprintf(lm_path, sizeof lm_path, "/tmp/test_audio_%d_lm.gguf", (int)getpid());
    synth_params sp = {.seed = 1, .n_threads = 1};
    synth_report rep;
    CHECK(synth_write(&lm, quant_ftype_find("f32"), &sp, lm_path, &rep, &err), "synth lm: %s", err.msg);
}

static float *read_floats(const char *path, size_t want) {
    size_t n = 0;
    float *f = test_read_file(path, &n);
    if (f && n != want * sizeof(float)) {
        free(f);
        return NULL;
    }
    return f;
}

static uint64_t fnv1a(const void *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ ((const uint8_t *)p)[i]) * 0x100000001b3ull;
    return h;
}

/* max |a - b| / max |b| */
static double rel_err(const float *a, const float *b, size_t n) {
    double scale = 0;
    for (size_t i = 0; i < n; i++) scale = fabs(b[i]) > scale ? fabs(b[i]) : scale;
    return test_maxabs(a, b, n) / (scale > 0 ? scale : 1);
}

/* The case's file bytes: a WAV written from clips.h, or a shipped file. */
static uint8_t *case_bytes(const char *name, const char *file, size_t *n) {
    if (strcmp(file, "wav")) {
        char p[128];
        snprintf(p, sizeof p, ADATA("%s"), file);
        return test_read_file(p, n);
    }
    for (int k = 0; k < N_CLIPS; k++)
        if (!strcmp(CLIPS[k].name, name)) return clip_wav(&CLIPS[k], n);
    return NULL;
}

/* The samples libmtmd hears: decoded, down-mixed, resampled to 16 kHz. */
static float *case_samples(const char *name, const char *file, int64_t *n) {
    size_t nb = 0;
    uint8_t *b = case_bytes(name, file, &nb);
    CHECK(b != NULL, "%s: no bytes", name);
    if (!b) return NULL;
    aud_pcm pcm;
    lfm2c_error err = {0};
    float *mono = NULL;
    if (aud_decode(b, nb, NULL, &pcm, &err) == 0) mono = aud_to_mono(&pcm, 16000, n);
    else CHECK(0, "%s: %s", name, err.msg);
    aud_pcm_free(&pcm);
    free(b);
    return mono;
}

typedef struct gcase {
    const char *name, *file;
    int64_t n_samples, n_frames;
    int stride, kept, n_tokens;
    uint64_t fnv;
} gcase;

static gcase read_case(json_t *c) {
    gcase g = {json_string_value(json_object_get(c, "name")), json_string_value(json_object_get(c, "file")),
               json_integer_value(json_object_get(c, "n_samples")), json_integer_value(json_object_get(c, "n_frames")),
               (int)json_integer_value(json_object_get(c, "mel_stride")),
               (int)json_integer_value(json_object_get(c, "mel_frames_kept")),
               (int)json_integer_value(json_object_get(c, "n_tokens")),
               strtoull(json_string_value(json_object_get(c, "pcm_fnv1a")), NULL, 16)};
    return g;
}

/* The samples against libmtmd's (the bits; MP3 within a bound), then the mel features from them
 * (or, for MP3, from libmtmd's samples) against its kept frames. Returns the features. */
static float *check_front(const gcase *g, const aud_mel_params *mp) {
    int64_t n = 0;
    float *pcm = case_samples(g->name, g->file, &n);
    if (!pcm) return NULL;
    CHECK(n == g->n_samples, "%s: %lld samples, libmtmd %lld", g->name, (long long)n, (long long)g->n_samples);
    if (!strcmp(g->file, "cmp.mp3")) {
        char p[128];
        snprintf(p, sizeof p, ADATA("%s.pcm.f32"), g->name);
        float *ref = read_floats(p, (size_t)g->n_samples);
        CHECK(ref != NULL, "%s missing", p);
        if (ref && n == g->n_samples) {
            const double e = test_maxabs(pcm, ref, (size_t)n);
            printf("  %s: libmpg123 vs miniaudio's dr_mp3, max |diff| %.3g\n", g->name, e);
            CHECK(e < 2e-2, "%s: MP3 samples %.3g apart", g->name, e);
        }
        free(pcm), pcm = ref, n = g->n_samples;
    } else if (n == g->n_samples) {
        CHECK(fnv1a(pcm, (size_t)n * sizeof(float)) == g->fnv, "%s: the samples differ from libmtmd's", g->name);
    }
    if (!pcm) return NULL;
    CHECK(aud_mel_frames(mp, n) == g->n_frames, "%s: %lld frames", g->name, (long long)aud_mel_frames(mp, n));
    float *mel = malloc(sizeof(float) * (size_t)mp->n_mel * (size_t)g->n_frames);
    lfm2c_error err = {0};
    CHECK(aud_mel(mp, pcm, n, mel, &err) == 0, "%s: mel: %s", g->name, err.msg);
    free(pcm);
    char p[128];
    snprintf(p, sizeof p, ADATA("%s.mel.f32"), g->name);
    float *ref = read_floats(p, (size_t)mp->n_mel * g->kept);
    CHECK(ref != NULL, "%s", p);
    double worst = 0;
    for (int m = 0; ref && m < mp->n_mel; m++)
        for (int k = 0; k < g->kept; k++) {
            const int64_t t = k == g->kept - 1 ? g->n_frames - 1 : (int64_t)k * g->stride;
            const double d = fabs(mel[m * g->n_frames + t] - ref[(size_t)m * g->kept + k]);
            worst = d > worst ? d : worst;
        }
    printf("  %s: %lld samples, %lld frames, mel max |diff| %.3g\n", g->name, (long long)n, (long long)g->n_frames, worst);
    CHECK(worst == 0, "%s: the mel features differ from libmtmd's by %.3g", g->name, worst);
    free(ref);
    return mel;
}

/* The embeddings of mel on each mmproj type against libmtmd's. */
static void check_encoder(aud_model *const am[3], threadpool *pool, const gcase *g, const float *mel) {
    const double tol[3] = {1e-3, 3e-3, 3e-2};
    for (int k = 0; k < 3; k++) {
        const int T = aud_n_tokens((int)g->n_frames), P = am[k]->hp.proj_dim;
        CHECK(T == g->n_tokens, "%s: %d tokens, libmtmd %d", g->name, T, g->n_tokens);
        float *out = malloc(sizeof(float) * (size_t)T * P);
        lfm2c_error err = {0};
        CHECK(aud_encode(am[k], pool, mel, (int)g->n_frames, out, &err) == 0, "%s: %s", g->name, err.msg);
        char p[128];
        snprintf(p, sizeof p, ADATA("%s.%s.embd.f32"), g->name, TYPES[k]);
        float *ref = read_floats(p, (size_t)T * P);
        CHECK(ref != NULL, "%s", p);
        if (ref) {
            const double e = rel_err(out, ref, (size_t)T * P);
            printf("  %s %s: %d tokens, embeddings rel err %.3g\n", g->name, TYPES[k], T, e);
            CHECK(e < tol[k], "%s %s: embeddings %.3g from libmtmd's (tolerance %g)", g->name, TYPES[k], e, tol[k]);
        }
        free(ref), free(out);
    }
}

static void test_goldens(threadpool *pool) {
    lfm2c_error err = {0};
    aud_model *am[3] = {0};
    for (int k = 0; k < 3; k++) {
        am[k] = aud_open(mm_path[k], encoder_for(NULL, NULL, NULL), &err);
        CHECK(am[k] != NULL, "%s: %s", mm_path[k], err.msg);
        if (!am[k]) return;
    }
    json_error_t je;
    json_t *gj = json_load_file(ADATA("golden.json"), 0, &je);
    CHECK(gj != NULL, "golden.json: %s", je.text);
    const aud_mel_params mp = aud_mel_for(am[0]);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(gj, "cases"), i, c) {
        const gcase g = read_case(c);
        float *mel = check_front(&g, &mp);
        if (mel) check_encoder(am, pool, &g, mel);
        free(mel);
    }
    json_decref(gj);
    for (int k = 0; k < 3; k++) aud_close(am[k]);
}

int main(void) {
    threadpool *pool = threadpool_new(3);
    make_models();
    test_goldens(pool);
    for (int k = 0; k < 3; k++) unlink(mm_path[k]);
    unlink(lm_path);
    threadpool_free(pool);
    TEST_MAIN_END();
}
