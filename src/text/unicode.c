/* unicode.c — code point classes and UTF-8 decoding (see unicode.h). */
#include "text/unicode.h"
#include "text/unicode_tables.h"

int unicode_class(uint32_t cp) {
    if (cp > 0x10FFFF) return UCLASS_OTHER;
    return unicode_class_rows[unicode_class_block[cp >> 8]][cp & 0xFF];
}

uint32_t utf8_decode_lenient(const uint8_t *s, size_t n, int *len) {
    uint8_t b = s[0];
    int need;
    uint32_t cp;
    if (b < 0x80) {
        *len = 1;
        return b;
    }
    if (b < 0xC0) goto bad; /* stray continuation byte */
    else if (b < 0xE0) {
        need = 1;
        cp = b & 0x1F;
    } else if (b < 0xF0) {
        need = 2;
        cp = b & 0x0F;
    } else if (b < 0xF8) {
        need = 3;
        cp = b & 0x07;
    } else goto bad;
    if ((size_t)need >= n) goto bad;
    for (int i = 1; i <= need; i++) {
        if ((s[i] & 0xC0) != 0x80) goto bad;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    /* The reference throws on values it cannot re-encode; we replace them instead. */
    if (cp > 0x10FFFF) goto bad;
    *len = need + 1;
    return cp;
bad:
    *len = 1;
    return 0xFFFD;
}

int utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int utf8_valid_prefix(const uint8_t *s, size_t n) {
    uint8_t b = s[0];
    if (b < 0x80) return 1;
    /* allowed range of the second byte, and the sequence length (Unicode table 3-7) */
    uint8_t lo = 0x80, hi = 0xBF;
    int len;
    if (b >= 0xC2 && b <= 0xDF) len = 2;
    else if (b >= 0xE0 && b <= 0xEF) {
        len = 3;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
    } else return -1;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return 0;
        uint8_t c = s[i];
        if (i == 1 ? (c < lo || c > hi) : (c & 0xC0) != 0x80) return -i;
    }
    return len;
}
