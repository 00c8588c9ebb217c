/* test_audio.c — LFM2-Audio's ears (src/audio/) against llama.cpp's libmtmd: the tiny synthetic
 * model and its audio mmproj in F32, F16 and Q8_0 (lfm2c synth --preset lfm2-audio-tiny, written
 * here: seeded, the same bytes the goldens were made from), and for each case of
 * data/audio/golden.json (clips of 1.3 to 35 s at 8, 16, 22.05, 44.1 and 48 kHz, mono and
 * stereo, 16-bit, 24-bit and float WAV, FLAC, MP3; tests/data/audio/README.md says how they were
 * made): the decoded, down-mixed, resampled samples are libmtmd's to the bit (MP3: its decoder
 * is not ours, within a stated bound), the log-mel features too, and the projected embeddings
 * within a tolerance per mmproj type; the last logits of a prompt with each clip (built from the
 * file's bytes through the public API) within a tolerance of llama.cpp's; a batch equals each
 * solo, prefix reuse tells clips apart; hostile audio (truncated, a huge declared length, 1000
 * channels, 500 Hz and 1 MHz, garbage behind a magic, too short, too long) and files the reader
 * must refuse are clear errors. */
#include "test.h"
#include "audio/audio.h"
#include "audio/clips.h"
#include "convert/synth.h"
#include "formats/ggml_types.h"

#include <jansson.h>
#include <pthread.h>
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
    gcase g = {json_string_value(json_object_get(c, "name")),
               json_string_value(json_object_get(c, "file")),
               json_integer_value(json_object_get(c, "n_samples")),
               json_integer_value(json_object_get(c, "n_frames")),
               (int)json_integer_value(json_object_get(c, "mel_stride")),
               (int)json_integer_value(json_object_get(c, "mel_frames_kept")),
               (int)json_integer_value(json_object_get(c, "n_tokens")),
               strtoull(json_string_value(json_object_get(c, "pcm_fnv1a")), NULL, 16)};
    return g;
}

/* The samples against libmtmd's (the bits; MP3 within a bound), then the mel features from them
 * (or, for MP3, from libmtmd's samples; over the pool, and the same bits on one thread) against
 * its kept frames. Returns the features. */
static float *check_front(const gcase *g, const aud_mel_params *mp, threadpool *pool) {
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
    const size_t nf = (size_t)mp->n_mel * (size_t)g->n_frames;
    float *mel = malloc(sizeof(float) * nf), *solo = malloc(sizeof(float) * nf);
    lfm2c_error err = {0};
    CHECK(aud_mel(mp, pool, pcm, n, mel, &err) == 0, "%s: mel: %s", g->name, err.msg);
    CHECK(aud_mel(mp, NULL, pcm, n, solo, &err) == 0, "%s: mel: %s", g->name, err.msg);
    CHECK(!memcmp(mel, solo, sizeof(float) * nf), "%s: the features over the pool differ from one thread's", g->name);
    free(pcm), free(solo);
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
    printf("  %s: %lld samples, %lld frames, mel max |diff| %.3g\n", g->name, (long long)n, (long long)g->n_frames,
           worst);
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
        float *mel = check_front(&g, &mp, pool);
        if (mel) check_encoder(am, pool, &g, mel);
        free(mel);
    }
    json_decref(gj);
    for (int k = 0; k < 3; k++) aud_close(am[k]);
}

/* ---- the language model with audio ------------------------------------------------------------ */

static lfm2c_model *open_lm(int threads) {
    lfm2c_model_params p = lfm2c_model_default_params();
    p.n_threads = threads;
    p.type_k = p.type_v = LFM2C_KV_F32;
    lfm2c_error err = {0};
    lfm2c_model *m = lfm2c_model_open(lm_path, &p, &err);
    CHECK(m != NULL, "%s", err.msg);
    return m;
}

static lfm2c_audio *encode_case(lfm2c_audio_mmproj *mm, const char *name, const char *file) {
    size_t nb = 0;
    uint8_t *b = case_bytes(name, file, &nb);
    lfm2c_error err = {0};
    lfm2c_audio *a = b ? lfm2c_audio_encode(mm, b, nb, NULL, NULL, NULL, &err) : NULL;
    CHECK(a != NULL, "%s: %s", name, err.msg);
    free(b);
    return a;
}

typedef struct lm_prompt {
    int32_t *ids;
    float *rows;
    int n;
} lm_prompt;

static lm_prompt prompt_with(lfm2c_model *m, const char *text, lfm2c_audio *a) {
    lm_prompt p = {0};
    lfm2c_error err = {0};
    CHECK(lfm2c_prompt_audio(m, text, strlen(text), true, &a, a ? 1 : 0, &p.ids, &p.n, &p.rows, &err) == 0, "%s",
          err.msg);
    return p;
}

static float *last_logits(lfm2c_model *m, const lm_prompt *p) {
    lfm2c_error err = {0};
    lfm2c_session *s = lfm2c_session_new(m, 2048, &err);
    const int V = lfm2c_model_get_info(m)->n_vocab;
    float *l = malloc(sizeof(float) * V);
    CHECK(lfm2c_session_decode_embd(s, p->ids, p->rows, p->n, LFM2C_LOGITS_LAST, &err) == 0, "%s", err.msg);
    memcpy(l, lfm2c_session_logits(s, 0), sizeof(float) * V);
    lfm2c_session_free(s);
    return l;
}

/* Each case's prompt (golden.json's, the clip at the marker) from the file's bytes through the
 * public API: the last logits against llama.cpp's, for each mmproj type. */
static void test_logits(lfm2c_model *m) {
    json_error_t je;
    json_t *gj = json_load_file(ADATA("golden.json"), 0, &je);
    const char *text = json_string_value(json_object_get(gj, "prompt"));
    const int V = lfm2c_model_get_info(m)->n_vocab;
    const double tol[3] = {2e-3, 4e-3, 4e-2};
    for (int k = 0; k < 3; k++) {
        lfm2c_error err = {0};
        lfm2c_audio_mmproj *mm = lfm2c_audio_mmproj_open(mm_path[k], m, &err);
        CHECK(mm != NULL, "%s", err.msg);
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(gj, "cases"), i, c) {
            const gcase g = read_case(c);
            lfm2c_audio *a = mm ? encode_case(mm, g.name, g.file) : NULL;
            if (!a) continue;
            lm_prompt p = prompt_with(m, text, a);
            CHECK(p.n == 37 + g.n_tokens, "%s: %d positions", g.name, p.n);
            char path[128];
            snprintf(path, sizeof path, ADATA("%s.%s.logits.f32"), g.name, TYPES[k]);
            float *want = read_floats(path, (size_t)V), *got = p.ids ? last_logits(m, &p) : NULL;
            const double d = want && got ? test_maxabs(got, want, (size_t)V) : 1e9;
            /* MP3: libmpg123's samples are not dr_mp3's (1.6e-5 apart), the logits carry it */
            const double lim = tol[k] * (strcmp(g.file, "cmp.mp3") ? 1 : 3);
            printf("  %s %s: logits vs llama.cpp's %.2e (limit %.0e)\n", g.name, TYPES[k], d, lim);
            CHECK(d <= lim, "%s %s: logits %g from llama.cpp's", g.name, TYPES[k], d);
            free(want), free(got), free(p.ids), free(p.rows);
            lfm2c_audio_free(a);
        }
        lfm2c_audio_mmproj_free(mm);
    }
    json_decref(gj);
}

/* Two clip prompts and a text one in a batch equal each solo; the same clip reuses its prefix,
 * another clip of the same length does not, and the reused state gives the fresh logits. */
static void test_batch_reuse(lfm2c_model *m) {
    lfm2c_error err = {0};
    lfm2c_audio_mmproj *mm = lfm2c_audio_mmproj_open(mm_path[0], m, &err);
    CHECK(mm != NULL, "%s", err.msg);
    if (!mm) return;
    const char *text = "<|im_start|>user\nListen: " LFM2C_AUDIO_MARKER " what is it?<|im_end|>\n";
    size_t wn = 0; /* the header's facts and the memory a clip costs, before decoding */
    uint8_t *wb = clip_wav(&CLIPS[1], &wn);
    lfm2c_audio_facts f;
    CHECK(lfm2c_audio_probe(mm, wb, wn, NULL, &f, &err) == 0 && f.channels == 2 && f.rate == 44100 &&
              f.frames == 441000 && f.n_tokens == 126 && f.bytes > (size_t)441000 * 2 * 4 && f.bytes < (64u << 20),
          "probe: %s (%d tokens, %zu bytes)", err.msg, f.n_tokens, f.bytes);
    lfm2c_audio_limits lim = lfm2c_audio_default_limits();
    lim.max_seconds = 5;
    CHECK(lfm2c_audio_probe(mm, wb, wn, &lim, &f, &err) == -1 && err.code == LFM2C_ETOOLARGE, "probe over: %s",
          err.msg);
    free(wb);
    lfm2c_audio *a = encode_case(mm, "short", "wav"), *b = encode_case(mm, "cmp-flac", "cmp.flac");
    const clip_spec other = {"other", 16000, 1, 16, 20799}; /* short's length less a sample: same rows, other samples */
    size_t nb = 0;
    uint8_t *ob = clip_wav(&other, &nb);
    lfm2c_audio *c = lfm2c_audio_encode(mm, ob, nb, NULL, NULL, NULL, &err);
    free(ob);
    CHECK(a && b && c, "encode: %s", err.msg);
    if (!a || !b || !c) goto done;
    int na, nc;
    lfm2c_audio_tokens(a, &na), lfm2c_audio_tokens(c, &nc);
    CHECK(na == nc && strcmp(lfm2c_audio_digest(a), lfm2c_audio_digest(c)), "two clips of %d rows, two digests", na);
    lm_prompt pa = prompt_with(m, text, a), pb = prompt_with(m, text, b), pc = prompt_with(m, text, c);
    float *la = last_logits(m, &pa), *lb = last_logits(m, &pb);
    const int V = lfm2c_model_get_info(m)->n_vocab;
    lfm2c_session *ss[3];
    for (int i = 0; i < 3; i++) ss[i] = lfm2c_session_new(m, 1024, &err);
    const int32_t tx[] = {1, 108, 143, 143, 139, 90};
    const int32_t *toks[3] = {pa.ids, pb.ids, tx};
    const float *rows[3] = {pa.rows, pb.rows, NULL};
    const int n[3] = {pa.n, pb.n, 6}, mode[3] = {LFM2C_LOGITS_LAST, LFM2C_LOGITS_LAST, LFM2C_LOGITS_LAST};
    CHECK(lfm2c_decode_batch_embd(ss, toks, rows, n, mode, 3, &err) == 0, "batch: %s", err.msg);
    CHECK(test_maxabs(lfm2c_session_logits(ss[0], 0), la, (size_t)V) <= 1e-4 &&
              test_maxabs(lfm2c_session_logits(ss[1], 0), lb, (size_t)V) <= 1e-4,
          "batched == solo");
    int first = 0;
    while (first < pa.n && pa.ids[first] >= 0) first++;
    CHECK(lfm2c_session_reusable(ss[0], pc.ids, pc.n) <= first, "another clip reuses %d (its rows start at %d)",
          lfm2c_session_reusable(ss[0], pc.ids, pc.n), first);
    CHECK(lfm2c_session_reusable(ss[0], pa.ids, pa.n) >= first + na, "the same clip reuses its rows and more: %d",
          lfm2c_session_reusable(ss[0], pa.ids, pa.n));
    int reused = 0;
    CHECK(lfm2c_session_sync(ss[0], pc.ids, pc.n, &reused, &err) == 0, "sync: %s", err.msg);
    int skip = 0;
    for (int i = 0; i < reused; i++) skip += pc.ids[i] < 0;
    CHECK(lfm2c_session_decode_embd(ss[0], pc.ids + reused, pc.rows + (size_t)skip * lfm2c_model_get_info(m)->n_embd,
                                    pc.n - reused, LFM2C_LOGITS_LAST, &err) == 0,
          "after sync: %s", err.msg);
    float *lc = last_logits(m, &pc);
    CHECK(test_maxabs(lfm2c_session_logits(ss[0], 0), lc, (size_t)V) <= 1e-4, "reused state, fresh logits");
    for (int i = 0; i < 3; i++) lfm2c_session_free(ss[i]);
    free(la), free(lb), free(lc);
    free(pa.ids), free(pa.rows), free(pb.ids), free(pb.rows), free(pc.ids), free(pc.rows);
done:
    lfm2c_audio_free(a), lfm2c_audio_free(b), lfm2c_audio_free(c);
    lfm2c_audio_mmproj_free(mm);
}

typedef struct enc_thread {
    lfm2c_audio_mmproj *mm;
    pthread_t self;
    int calls, foreign;
    lfm2c_audio *a;
} enc_thread;

static void on_progress(void *ud, double done) {
    enc_thread *t = ud;
    (void)done;
    t->calls++;
    t->foreign += !pthread_equal(t->self, pthread_self()); /* another encode's callback: a race */
}

static void *encode_thread(void *arg) {
    enc_thread *t = arg;
    t->self = pthread_self();
    size_t n = 0;
    uint8_t *b = clip_wav(&CLIPS[2], &n);
    lfm2c_error err = {0};
    for (int k = 0; k < 3; k++) {
        lfm2c_audio_free(t->a);
        t->a = lfm2c_audio_encode(t->mm, b, n, NULL, on_progress, t, &err);
    }
    free(b);
    return NULL;
}

/* Two threads encoding at once on one mmproj: each clip whole, each callback its own. */
static void test_concurrent(lfm2c_model *m) {
    lfm2c_error err = {0};
    lfm2c_audio_mmproj *mm = lfm2c_audio_mmproj_open(mm_path[0], m, &err);
    CHECK(mm != NULL, "%s", err.msg);
    if (!mm) return;
    enc_thread t[2] = {{.mm = mm}, {.mm = mm}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, encode_thread, &t[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    int na = 0, nb = 0;
    CHECK(t[0].a && t[1].a && t[0].calls > 6 && t[1].calls > 6 && !t[0].foreign && !t[1].foreign,
          "concurrent encodes: %d / %d callbacks, %d / %d foreign", t[0].calls, t[1].calls, t[0].foreign, t[1].foreign);
    if (t[0].a && t[1].a) {
        const float *ra = lfm2c_audio_rows(t[0].a, &na), *rb = lfm2c_audio_rows(t[1].a, &nb);
        CHECK(na == nb && !memcmp(ra, rb, sizeof(float) * (size_t)na * 64), "the same clip, the same rows");
    }
    lfm2c_audio_free(t[0].a), lfm2c_audio_free(t[1].a);
    lfm2c_audio_mmproj_free(mm);
}

/* Markers and clips that do not match, a guarded marker, mmproj files that are not this one. */
static void test_refusals(lfm2c_model *m) {
    lfm2c_error err = {0};
    int32_t *ids;
    float *rows;
    int n;
    const char *two = "a " LFM2C_AUDIO_MARKER " b " LFM2C_AUDIO_MARKER;
    CHECK(lfm2c_prompt_audio(m, two, strlen(two), true, NULL, 0, &ids, &n, &rows, &err) == -1 &&
              strstr(err.msg, "2 audio markers for 0 clips"),
          "%s", err.msg);
    size_t gl = 0;
    char *g = lfm2c_guard_text(m, two, strlen(two), &gl); /* request text: its markers stay text */
    CHECK(g && lfm2c_prompt_audio(m, g, gl, true, NULL, 0, &ids, &n, &rows, &err) == 0 && n > 4 && !rows, "%s",
          err.msg);
    if (g && n > 4) free(ids);
    free(g);
    CHECK(!lfm2c_audio_mmproj_open(DATA("vision/mmproj-tiny-f32.gguf"), m, &err) && strstr(err.msg, "lfm2a"),
          "the image mmproj: %s", err.msg);
    CHECK(!lfm2c_audio_mmproj_open(lm_path, m, &err) && strstr(err.msg, "projector type"), "a model: %s", err.msg);
    lfm2c_model_params p = lfm2c_model_default_params();
    lfm2c_model *wide = lfm2c_model_open(DATA("lfm2-kq-dense-q4_k_m.gguf"), &p, &err);
    CHECK(wide && !lfm2c_audio_mmproj_open(mm_path[0], wide, &err) && strstr(err.msg, "width"), "%s", err.msg);
    lfm2c_model_free(wide);
    lfm2c_audio_mmproj *mm = lfm2c_audio_mmproj_open(mm_path[0], NULL, &err);
    char d[512];
    CHECK(mm && lfm2c_audio_mmproj_describe(mm, d, sizeof d) > 0 && strstr(d, "2 blocks x 512"), "describe: %s", d);
    CHECK(mm && !lfm2c_audio_encode(mm, "RIFF", 4, NULL, NULL, NULL, &err), "encode without the model");
    lfm2c_audio_mmproj_free(mm);
}

/* decode bytes with lim: -1 and the code and a message, or 0 with the frames */
static int try_decode(const uint8_t *b, size_t n, const aud_limits *lim, int64_t *frames, lfm2c_error *err) {
    aud_pcm pcm;
    memset(err, 0, sizeof *err);
    const int rc = aud_decode(b, n, lim, &pcm, err);
    if (!rc) *frames = pcm.frames, aud_pcm_free(&pcm);
    return rc;
}

/* Hostile audio: every refusal is a clear error (its code and message), never a crash or memory. */
static void test_hostile(void) {
    size_t n = 0;
    uint8_t *w = clip_wav(&CLIPS[0], &n); /* short: 1.3 s, 16 kHz mono */
    lfm2c_error err;
    int64_t frames = 0;
    const aud_limits def = aud_default_limits();
    CHECK(try_decode(w, n, NULL, &frames, &err) == 0 && frames == CLIPS[0].frames, "the clip: %s", err.msg);
    CHECK(try_decode(w, n / 2, NULL, &frames, &err) == 0 && frames < CLIPS[0].frames && frames > 0,
          "a truncated WAV decodes what it holds: %lld frames", (long long)frames);
    CHECK(try_decode(w, 30, NULL, &frames, &err) == -1 && err.code == LFM2C_EFORMAT, "a cut header: %s", err.msg);
    aud_limits l = def;
    l.max_seconds = 1.0;
    CHECK(try_decode(w, n, &l, &frames, &err) == -1 && err.code == LFM2C_ETOOLARGE && strstr(err.msg, "at most 1 s"),
          "over the duration: %s", err.msg);
    l = def, l.max_bytes = 1000;
    CHECK(try_decode(w, n, &l, &frames, &err) == -1 && err.code == LFM2C_ETOOLARGE, "over the bytes: %s", err.msg);
    uint8_t h[44];
    memcpy(h, w, 44);
    clip_put32(h + 40, 0xfffffff0u), clip_put32(h + 4, 0xffffffffu); /* 4 GB declared in 44 bytes */
    CHECK(try_decode(h, 44, NULL, &frames, &err) == -1 && err.msg[0], "a huge declared length: %s", err.msg);
    memcpy(h, w, 44);
    clip_put16(h + 22, 1000), clip_put16(h + 32, 2000); /* 1000 channels */
    CHECK(try_decode(h, 44, NULL, &frames, &err) == -1 && err.msg[0], "1000 channels: %s", err.msg);
    uint8_t *odd = malloc(n);
    const uint32_t rates[] = {500, 1000000};
    for (int k = 0; k < 2; k++) { /* odd rates: refused from the header */
        memcpy(odd, w, n);
        clip_put32(odd + 24, rates[k]), clip_put32(odd + 28, rates[k] * 2);
        CHECK(try_decode(odd, n, NULL, &frames, &err) == -1 && err.code == LFM2C_ETOOLARGE && strstr(err.msg, "Hz"),
              "%u Hz: %s", rates[k], err.msg);
    }
    memcpy(odd, w, n);
    clip_put16(odd + 22, 3), clip_put16(odd + 32, 6); /* 3 channels: decoded and mixed down */
    CHECK(try_decode(odd, n - n % 6, NULL, &frames, &err) == 0 && frames > 0, "3 channels: %s", err.msg);
    memcpy(odd, "ID3", 3); /* MP3 by its tag, garbage after it */
    CHECK(try_decode(odd, n, NULL, &frames, &err) == -1 && err.msg[0], "garbage after an ID3 tag: %s", err.msg);
    CHECK(try_decode((const uint8_t *)"hello world!", 12, NULL, &frames, &err) == -1 &&
              strstr(err.msg, "not an audio file"),
          "%s", err.msg);
    free(odd);
    free(w);
    /* too short to hear (libmtmd asserts), too long for the code table: clear errors */
    const aud_mel_params mp = {16000, 512, 400, 160, 128};
    float x[300] = {0}, mel[128 * 2];
    CHECK(aud_mel(&mp, NULL, x, 300, mel, &err) == -1 && strstr(err.msg, "at least 320"), "%s", err.msg);
    aud_model *am = aud_open(mm_path[0], encoder_for(NULL, NULL, NULL), &err);
    CHECK(am && aud_encode(am, NULL, mel, 8 * am->hp.max_tokens + 1, NULL, &err) == -1 && err.code == LFM2C_ETOOLARGE,
          "more tokens than the code table: %s", err.msg);
    aud_close(am);
}

/* A tone loud enough that some bins' power is infinite: mel.c sums every bin of such a frame as
 * libmtmd does, and inf times a zero weight is NaN, which mel.c's fmax floors to 2^-24 in every
 * frame: the features are 0 wherever they are finite (sums that skip the bins without weight give
 * finite values there). libmtmd's std::max keeps the NaN: a difference on such input only. */
static void test_loud(threadpool *pool) {
    const aud_mel_params mp = {16000, 512, 400, 160, 128};
    enum { N = 16000 };
    static float x[N], mel[128 * (N / 160 + 1)];
    for (int i = 0; i < N; i++) x[i] = 1e19f * sinf(2 * 3.14159265f * 1000 * (float)i / 16000);
    lfm2c_error err = {0};
    CHECK(aud_mel(&mp, pool, x, N, mel, &err) == 0, "%s", err.msg);
    int finite = 0, off = 0;
    for (size_t i = 0; i < sizeof mel / sizeof *mel; i++)
        if (isfinite(mel[i])) finite++, off += mel[i] != 0;
    CHECK(finite > 0 && off == 0, "a loud tone: %d of %d finite features are not 0", off, finite);
}

/* The encoder table's SiLU: x / (1 + exp(-x)) to a few float roundings, the same bits however the
 * values are cut into calls. */
static void test_silu(void) {
    enum { N = 1000 };
    float a[N], b[N], x[N];
    for (int i = 0; i < N; i++) a[i] = b[i] = x[i] = -30.0f + 60.0f * (float)i / N;
    const encoder_ops *e = encoder_for(NULL, NULL, NULL);
    e->silu(a, N);
    e->silu(b, 37), e->silu(b + 37, 500), e->silu(b + 537, N - 537);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        const double want = x[i] / (1.0 + exp(-(double)x[i]));
        const double d = fabs(a[i] - want) / (fabs(want) > 1e-30 ? fabs(want) : 1);
        worst = d > worst ? d : worst;
    }
    CHECK(worst < 1e-6, "silu: %.3g from x / (1 + exp(-x))", worst);
    CHECK(!memcmp(a, b, sizeof a), "silu: cut into three calls, other bits");
}

int main(void) {
    threadpool *pool = threadpool_new(3);
    make_models();
    test_hostile();
    test_loud(pool);
    test_silu();
    test_goldens(pool);
    lfm2c_model *m = open_lm(2);
    if (m) test_logits(m), test_batch_reuse(m), test_refusals(m), test_concurrent(m);
    lfm2c_model_free(m);
    for (int k = 0; k < 3; k++) unlink(mm_path[k]);
    unlink(lm_path);
    threadpool_free(pool);
    TEST_MAIN_END();
}
