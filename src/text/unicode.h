/* unicode.h — the little Unicode the tokenizer needs: code point classes for the pre-tokenizer
 * split, UTF-8 decoding the way the reference tokenizer does it (lenient), and UTF-8 repair for
 * text that must be valid (streaming output). */
#ifndef LFM2C_UNICODE_H
#define LFM2C_UNICODE_H
#include <stddef.h>
#include <stdint.h>

enum { UCLASS_OTHER = 0, UCLASS_LETTER = 1, UCLASS_NUMBER = 2, UCLASS_SPACE = 3 };

/* \p{L}, \p{N}, White_Space or other (code points above U+10FFFF: other). */
int unicode_class(uint32_t cp);

/* Decodes one code point at s[0..n) (n >= 1) leniently, as the reference tokenizer does: a lead
 * byte followed by the right number of continuation bytes is one code point (overlong forms and
 * surrogates accepted as decoded); anything else (stray continuation byte, truncated sequence,
 * 0xF8..0xFF, a value above U+10FFFF) consumes one byte and gives U+FFFD. *len gets the bytes used. */
uint32_t utf8_decode_lenient(const uint8_t *s, size_t n, int *len);

/* Writes cp (<= 0x10FFFF; surrogates too) as UTF-8, returns 1..4. */
int utf8_encode(uint32_t cp, char out[4]);

/* Length of the well-formed UTF-8 sequence at s[0..n): 1..4, 0 if s starts a valid but
 * incomplete sequence that more bytes could complete, -k if the first k bytes (k >= 1) are
 * ill-formed (a "maximal subpart", replaced by one U+FFFD, as Python's errors="replace"). */
int utf8_valid_prefix(const uint8_t *s, size_t n);
#endif
