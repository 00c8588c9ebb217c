/* clips.h — the synthetic clips the audio goldens were made from (tests/data/audio/README.md),
 * written as WAV bytes by the same integer formula here and in the goldens' maker, so the tests
 * need not ship them: a triangle wave (its period per channel) under a slow four-step envelope
 * plus LCG noise, as 16-bit, 24-bit or float samples. */
#ifndef LFM2C_TEST_CLIPS_H
#define LFM2C_TEST_CLIPS_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct clip_spec {
    const char *name;
    int rate, channels, bits; /* bits: 16, 24 or 32 (float) */
    int64_t frames;
} clip_spec;

static const clip_spec CLIPS[] = {
    {"short", 16000, 1, 16, 20800}, /* 1.3 s at the encoder's rate */
    {"mid", 44100, 2, 16, 441000},  /* 10 s, stereo, down-sampled */
    {"low", 8000, 1, 16, 24000},    /* 3 s, up-sampled */
    {"long", 16000, 1, 16, 560000}, /* 35 s: one clip of 438 tokens */
    {"wide", 48000, 2, 24, 72000},  /* 1.5 s, 24-bit stereo */
    {"float", 22050, 1, 32, 44100}, /* 2 s, float samples */
};
enum { N_CLIPS = sizeof CLIPS / sizeof *CLIPS };

/* sample (i, c) as a 16-bit value */
static inline int clip_s16(int64_t i, int c) {
    const uint32_t x = (uint32_t)((uint64_t)i * 1103515245u + (uint32_t)c * 12345u + 12345u) & 0x7fffffffu;
    const int noise = (int)((x >> 16) % 2001) - 1000;
    const int t = (int)((i * 53 + c * 17) % 400), tri = (t < 200 ? t : 400 - t) * 120 - 12000;
    const int env = (int)((i / 1600) % 4) + 1;
    return tri * env / 4 + noise;
}

static inline void clip_put16(uint8_t *p, unsigned v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static inline void clip_put32(uint8_t *p, uint32_t v) { clip_put16(p, v & 0xffff), clip_put16(p + 2, v >> 16); }

/* The clip as a WAV file (malloc'd, *n bytes). */
static inline uint8_t *clip_wav(const clip_spec *s, size_t *n) {
    const int bps = s->bits / 8;
    const size_t data = (size_t)s->frames * s->channels * bps;
    uint8_t *w = malloc(44 + data);
    if (!w) return NULL;
    memcpy(w, "RIFF", 4), clip_put32(w + 4, (uint32_t)(36 + data)), memcpy(w + 8, "WAVEfmt ", 8);
    clip_put32(w + 16, 16), clip_put16(w + 20, s->bits == 32 ? 3 : 1), clip_put16(w + 22, (unsigned)s->channels);
    clip_put32(w + 24, (uint32_t)s->rate), clip_put32(w + 28, (uint32_t)(s->rate * s->channels * bps));
    clip_put16(w + 32, (unsigned)(s->channels * bps)), clip_put16(w + 34, (unsigned)s->bits);
    memcpy(w + 36, "data", 4), clip_put32(w + 40, (uint32_t)data);
    uint8_t *p = w + 44;
    for (int64_t i = 0; i < s->frames; i++)
        for (int c = 0; c < s->channels; c++, p += bps) {
            const int v = clip_s16(i, c);
            if (s->bits == 16) clip_put16(p, (unsigned)(v & 0xffff));
            else if (s->bits == 24) {
                const int32_t v24 = v * 256 + (int)(i % 251);
                p[0] = (uint8_t)v24, p[1] = (uint8_t)(v24 >> 8), p[2] = (uint8_t)(v24 >> 16);
            } else {
                const float f = (float)v / 32768.0f;
                uint32_t u;
                memcpy(&u, &f, 4);
                clip_put32(p, u);
            }
        }
    *n = 44 + data;
    return w;
}
#endif
