/* decode.c — an audio file's bytes to float samples (audio.h): WAV (PCM 8/16/24/32-bit, float),
 * FLAC, MP3 and Ogg (Vorbis, Opus) through libsndfile (1.1 and later read MP3 through libmpg123)
 * where the build found it (LFM2C_HAVE_SNDFILE; without it every file is refused naming the
 * package). The format is told by its magic bytes; the file's size is checked first, then the
 * header's channels, sample rate and length against the limits before a sample is decoded (a
 * small file declaring hours, or thousands of channels, is LFM2C_ETOOLARGE at once), and the
 * decoding itself stops at the declared length and at the limits, so a stream that decodes to
 * more than it declared cannot grow memory past them. Samples are libsndfile's normalised floats:
 * integer PCM divided by 2^(bits-1), as miniaudio converts them. MP3 goes to libmpg123 directly
 * where the build found it (libmpg123-dev), asked to be quiet: through libsndfile it prints its
 * resync notes on a damaged stream, and the library never prints; its length is mpg123's
 * estimate from the file's size and the first frame, the decoding bounded by the limits. */
#include "audio/audio.h"
#include "base/error.h"

#include <stdlib.h>
#include <string.h>
#ifdef LFM2C_HAVE_SNDFILE
#include <sndfile.h>
#endif
#ifdef LFM2C_HAVE_MPG123
#include <mpg123.h>
#endif

aud_limits aud_default_limits(void) {
    return (aud_limits){.max_bytes = 64u << 20,
                        .max_seconds = 300,
                        .max_channels = 8,
                        .min_rate = 1000,
                        .max_rate = 384000,
                        .max_samples = 300LL * 48000 * 2};
}

bool aud_have_decoder(void) {
#ifdef LFM2C_HAVE_SNDFILE
    return true;
#else
    return false;
#endif
}

int aud_sniff(const uint8_t *d, size_t n) {
    if (n >= 12 && (!memcmp(d, "RIFF", 4) || !memcmp(d, "RF64", 4)) && !memcmp(d + 8, "WAVE", 4)) return AUD_FMT_WAV;
    if (n >= 4 && !memcmp(d, "fLaC", 4)) return AUD_FMT_FLAC;
    if (n >= 4 && !memcmp(d, "OggS", 4)) return AUD_FMT_OGG;
    if (n >= 3 && !memcmp(d, "ID3", 3)) return AUD_FMT_MP3;
    if (n >= 2 && d[0] == 0xff && (d[1] & 0xe0) == 0xe0) return AUD_FMT_MP3; /* an MPEG frame's sync */
    return -1;
}

static const char *const FMT_NAMES[] = {"WAV", "FLAC", "MP3", "Ogg"};

#ifdef LFM2C_HAVE_SNDFILE
typedef struct mem_io {
    const uint8_t *d;
    sf_count_t n, at;
} mem_io;

static sf_count_t io_len(void *u) { return ((mem_io *)u)->n; }
static sf_count_t io_seek(sf_count_t off, int whence, void *u) {
    mem_io *m = u;
    const sf_count_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->at : m->n;
    if (off < -base || off > m->n - base) return -1;
    return m->at = base + off;
}
static sf_count_t io_read(void *p, sf_count_t count, void *u) {
    mem_io *m = u;
    if (count < 0) return 0;
    const sf_count_t k = count < m->n - m->at ? count : m->n - m->at;
    memcpy(p, m->d + m->at, (size_t)k);
    m->at += k;
    return k;
}
static sf_count_t io_write(const void *p, sf_count_t count, void *u) { return (void)p, (void)count, (void)u, 0; }
static sf_count_t io_tell(void *u) { return ((mem_io *)u)->at; }

static SNDFILE *open_mem(mem_io *m, SF_INFO *si, lfm2c_error *err) {
    static SF_VIRTUAL_IO io = {io_len, io_seek, io_read, io_write, io_tell};
    memset(si, 0, sizeof *si);
    SNDFILE *f = sf_open_virtual(&io, SFM_READ, si, m);
    if (!f) lfm2c_set_error(err, LFM2C_EFORMAT, "not a readable audio file (%s)", sf_strerror(NULL));
    return f;
}
#endif

#ifdef LFM2C_HAVE_MPG123
/* An MP3 handle over the whole file (fed once), quiet, float output; its format and length. */
static mpg123_handle *mp3_open(const uint8_t *d, size_t n, aud_info *in, lfm2c_error *err) {
    int e = 0;
    mpg123_handle *mh = mpg123_new(NULL, &e);
    if (!mh) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory for the MP3 decoder"), NULL;
    const long *rates;
    size_t nr = 0;
    mpg123_rates(&rates, &nr);
    mpg123_param(mh, MPG123_ADD_FLAGS, MPG123_QUIET, 0);
    mpg123_format_none(mh);
    for (size_t i = 0; i < nr; i++) mpg123_format(mh, rates[i], MPG123_MONO | MPG123_STEREO, MPG123_ENC_FLOAT_32);
    long rate = 0;
    int ch = 0, enc = 0;
    if (mpg123_open_feed(mh) != MPG123_OK || mpg123_set_filesize(mh, (off_t)n) != MPG123_OK ||
        mpg123_feed(mh, d, n) != MPG123_OK || mpg123_getformat(mh, &rate, &ch, &enc) != MPG123_OK ||
        enc != MPG123_ENC_FLOAT_32) {
        lfm2c_set_error(err, LFM2C_EFORMAT, "not a readable MP3 stream (%s)", mpg123_strerror(mh));
        mpg123_delete(mh);
        return NULL;
    }
    const off_t len = mpg123_length(mh);
    *in = (aud_info){AUD_FMT_MP3, ch, (int)rate, len > 0 ? (int64_t)len : 0};
    return mh;
}

/* The whole MP3 into out, at most cap frames (more: LFM2C_ETOOLARGE). */
static int mp3_decode(mpg123_handle *mh, const aud_info *in, int64_t cap, aud_pcm *out, lfm2c_error *err) {
    size_t have = 0, room = 65536;
    float *x = malloc(room * sizeof *x);
    int rc = MPG123_OK;
    while (x && rc == MPG123_OK) {
        if (have + 16384 > room) {
            float *g = realloc(x, (room *= 2) * sizeof *x);
            if (!g) break;
            x = g;
        }
        size_t done = 0;
        rc = mpg123_read(mh, (unsigned char *)(x + have), 16384 * sizeof *x, &done);
        have += done / sizeof *x;
        if ((int64_t)(have / (size_t)in->channels) > cap) {
            free(x);
            return lfm2c_set_error(err, LFM2C_ETOOLARGE, "the MP3 stream decodes to more than the limits allow"), -1;
        }
        if (rc == MPG123_NEW_FORMAT) rc = MPG123_OK; /* the first frame's, announced again */
    }
    const int64_t frames = (int64_t)(have / (size_t)in->channels);
    if (!x || frames == 0) {
        free(x);
        return lfm2c_set_error(err, x ? LFM2C_EFORMAT : LFM2C_ENOMEM,
                               x ? "the MP3 file holds no samples" : "out of memory"),
               -1;
    }
    *out = (aud_pcm){in->channels, in->rate, frames, x};
    return 0;
}
#endif

/* The header's facts against the limits. */
static int check_info(const aud_info *in, const aud_limits *l, lfm2c_error *err) {
    if (in->channels < 1 || in->rate < 1)
        return lfm2c_set_error(err, LFM2C_EFORMAT, "audio header without channels or sample rate"), -1;
    if (in->channels > l->max_channels)
        return lfm2c_set_error(err, LFM2C_ETOOLARGE, "audio with %d channels: at most %d", in->channels,
                               l->max_channels),
               -1;
    if (in->rate < l->min_rate || in->rate > l->max_rate)
        return lfm2c_set_error(err, LFM2C_ETOOLARGE, "audio sampled at %d Hz: the rate must be %d..%d Hz", in->rate,
                               l->min_rate, l->max_rate),
               -1;
    const double secs = (double)in->frames / in->rate;
    if (secs > l->max_seconds || (double)in->frames * in->channels > (double)l->max_samples)
        return lfm2c_set_error(err, LFM2C_ETOOLARGE, "audio of %.1f s (%d channels at %d Hz): at most %.0f s", secs,
                               in->channels, in->rate, l->max_seconds),
               -1;
    return 0;
}

int aud_probe(const uint8_t *data, size_t n, const aud_limits *lim, aud_info *info, lfm2c_error *err) {
    const aud_limits l = lim ? *lim : aud_default_limits();
    if (n > l.max_bytes)
        return lfm2c_set_error(err, LFM2C_ETOOLARGE, "audio file of %zu bytes: at most %zu", n, l.max_bytes), -1;
    const int fmt = aud_sniff(data, n);
    if (fmt < 0)
        return lfm2c_set_error(err, LFM2C_EFORMAT,
                               "not an audio file this build reads (WAV, FLAC, MP3, Ogg Vorbis / Opus)"),
               -1;
#ifdef LFM2C_HAVE_MPG123
    if (fmt == AUD_FMT_MP3) {
        mpg123_handle *mh = mp3_open(data, n, info, err);
        if (!mh) return -1;
        mpg123_delete(mh);
        if (info->frames <= 0) info->frames = (int64_t)(l.max_seconds * info->rate); /* unknown: the limit rules */
        return check_info(info, &l, err);
    }
#endif
#ifdef LFM2C_HAVE_SNDFILE
    mem_io m = {data, (sf_count_t)n, 0};
    SF_INFO si;
    SNDFILE *f = open_mem(&m, &si, err);
    if (!f) return -1;
    sf_close(f);
    *info = (aud_info){fmt, si.channels, si.samplerate, si.frames == SF_COUNT_MAX ? -1 : (int64_t)si.frames};
    if (info->frames < 0) info->frames = (int64_t)(l.max_seconds * si.samplerate) + 1; /* unknown: the limit rules */
    return check_info(info, &l, err);
#else
    (void)info;
    return lfm2c_set_error(err, LFM2C_EUNSUPPORTED, "this build cannot decode %s audio (install libsndfile1-dev)",
                           FMT_NAMES[fmt]),
           -1;
#endif
}

int aud_decode(const uint8_t *data, size_t n, const aud_limits *lim, aud_pcm *out, lfm2c_error *err) {
    memset(out, 0, sizeof *out);
    aud_info in;
    if (aud_probe(data, n, lim, &in, err)) return -1;
#ifdef LFM2C_HAVE_MPG123
    if (in.format == AUD_FMT_MP3) { /* decoded to the limits, not to mpg123's estimate */
        const aud_limits l = lim ? *lim : aud_default_limits();
        const int64_t cap = (int64_t)(l.max_seconds * in.rate) < l.max_samples / in.channels
                                ? (int64_t)(l.max_seconds * in.rate)
                                : l.max_samples / in.channels;
        mpg123_handle *mh = mp3_open(data, n, &in, err);
        const int rc = mh ? mp3_decode(mh, &in, cap, out, err) : -1;
        mpg123_delete(mh);
        return rc;
    }
#endif
#ifdef LFM2C_HAVE_SNDFILE
    mem_io m = {data, (sf_count_t)n, 0};
    SF_INFO si;
    SNDFILE *f = open_mem(&m, &si, err);
    if (!f) return -1;
    sf_command(f, SFC_SET_NORM_FLOAT, NULL, SF_TRUE);
    const int64_t cap = in.frames; /* checked against the limits */
    float *x = malloc(sizeof(float) * (size_t)(cap > 0 ? cap : 1) * (size_t)in.channels);
    int64_t got = 0;
    while (x && got < cap) {
        const sf_count_t want = cap - got < 65536 ? cap - got : 65536;
        const sf_count_t r = sf_readf_float(f, x + got * in.channels, want);
        if (r <= 0) break;
        got += r;
    }
    const int ferr = sf_error(f);
    sf_close(f);
    if (!x) return lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory for %lld audio frames", (long long)cap), -1;
    if (got == 0) {
        free(x);
        return lfm2c_set_error(err, LFM2C_EFORMAT, "the %s file holds no samples%s", FMT_NAMES[in.format],
                               ferr ? " (corrupt)" : ""),
               -1;
    }
    *out = (aud_pcm){in.channels, in.rate, got, x};
    return 0;
#else
    return -1; /* aud_probe refused */
#endif
}

void aud_pcm_free(aud_pcm *p) {
    if (!p) return;
    free(p->x);
    p->x = NULL;
}
