#!/usr/bin/env python3
"""A second, independent LFM2 tokenizer in Python (split with the `regex` module, plain BPE by
repeated scanning for the best pair) used to make expected ids for our own test texts, plus
streaming-decode vectors (Python's bytes.decode("utf-8", "replace") is the oracle).

It first checks itself against the reference goldens (tests/data/tokenizer/cases.json) and refuses
to write anything if it disagrees. Writes tests/data/tokenizer/extra_cases.json.

usage: python3 scripts/gen_tokenizer_tests.py   (needs the `regex` module: python3-regex)
"""
import json
import os
import random
import struct
import sys

import regex

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DATA = os.path.join(ROOT, "tests", "data", "tokenizer")
MODEL = os.path.join(DATA, "lfm2-tok-multilingual.gguf")

SPLIT = regex.compile(
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|"
    r"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def read_gguf_kv(path):
    buf = open(path, "rb").read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("<Q")
        s = buf[pos:pos + n]
        pos += n
        return s

    scalar = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
              10: "<Q", 11: "<q", 12: "<d"}

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            at, n = take("<I"), take("<Q")
            return [value(at) for _ in range(n)]
        return take(scalar[t])

    assert buf[:4] == b"GGUF"
    pos = 8
    take("<Q")
    n_kv = take("<Q")
    kv = {}
    for _ in range(n_kv):
        k = string().decode()
        kv[k] = value(take("<I"))
    return kv


def byte_map():
    keep = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    fwd, extra = {}, 0
    for b in range(256):
        if b in keep:
            fwd[b] = chr(b)
        else:
            fwd[b] = chr(0x100 + extra)
            extra += 1
    return fwd


class Tokenizer:
    def __init__(self, path):
        kv = read_gguf_kv(path)
        self.tokens = [t.decode("utf-8") for t in kv["tokenizer.ggml.tokens"]]
        self.types = kv["tokenizer.ggml.token_type"]
        self.id_of = {t: i for i, t in enumerate(self.tokens)}
        self.rank = {}
        for i, m in enumerate(kv["tokenizer.ggml.merges"]):
            a, b = m.decode("utf-8").split(" ", 1)
            self.rank.setdefault((a, b), i)
        self.fwd = byte_map()
        self.inv = {c: b for b, c in self.fwd.items()}
        self.bos = kv["tokenizer.ggml.bos_token_id"]
        self.special = sorted((i for i, t in enumerate(self.types) if t in (2, 3, 4)),
                              key=lambda i: -len(self.tokens[i]))

    @staticmethod
    def lenient(data):
        """The reference's UTF-8 decoding (see tests/data/tokenizer/README.md)."""
        out, i = [], 0
        while i < len(data):
            b = data[i]
            need = 0 if b < 0x80 else -1 if b < 0xC0 else 1 if b < 0xE0 else 2 if b < 0xF0 else 3 if b < 0xF8 else -1
            if need == 0:
                out.append(b); i += 1; continue
            if need < 0 or i + need >= len(data) or \
                    any((data[i + k] & 0xC0) != 0x80 for k in range(1, need + 1)):
                out.append(0xFFFD); i += 1; continue
            cp = b & (0x1F if need == 1 else 0x0F if need == 2 else 0x07)
            for k in range(1, need + 1):
                cp = (cp << 6) | (data[i + k] & 0x3F)
            if cp > 0x10FFFF:
                out.append(0xFFFD); i += 1; continue
            out.append(cp)
            i += need + 1
        return "".join(chr(c) for c in out)

    def bpe(self, piece_bytes):
        word = "".join(self.fwd[b] for b in piece_bytes)
        if word in self.id_of:
            return [self.id_of[word]]
        syms = list(word)
        while len(syms) > 1:
            best, at = None, -1
            for i in range(len(syms) - 1):
                r = self.rank.get((syms[i], syms[i + 1]))
                if r is not None and (best is None or r < best):
                    best, at = r, i
            if best is None:
                break
            syms[at:at + 2] = [syms[at] + syms[at + 1]]
        return [self.id_of[s] for s in syms]

    def encode_fragment(self, data):
        text = self.lenient(data)
        ids = []
        for m in SPLIT.finditer(text):
            ids += self.bpe(m.group(0).encode("utf-8", "surrogatepass"))
        return ids

    def encode(self, data, add_bos, parse_special):
        frags = [data]   # bytes or int (token id)
        for sid in self.special:
            if not parse_special and self.types[sid] != 4:
                continue
            s = self.tokens[sid].encode("utf-8")
            nxt = []
            for f in frags:
                if isinstance(f, int):
                    nxt.append(f)
                    continue
                parts = f.split(s)
                for k, p in enumerate(parts):
                    if k:
                        nxt.append(sid)
                    if p:
                        nxt.append(p)
            frags = nxt
        ids = [self.bos] if add_bos else []
        for f in frags:
            ids += [f] if isinstance(f, int) else self.encode_fragment(f)
        return ids

    def token_bytes(self, i):
        if self.types[i] in (1, 6):
            return bytes(self.inv[c] for c in self.tokens[i])
        return self.tokens[i].encode("utf-8")


OWN_TEXTS = {
    "en": "The quick brown fox doesn't jump; it's 3.14x faster than we'd THOUGHT!",
    "ar": "مرحبا بالعالم! كيف حالك اليوم؟ ١٢٣٤ هذا نص عربي.",
    "zh": "今天天气很好，我们去公园散步吧。北京是中国的首都。",
    "fr": "Où est la bibliothèque ? L'élève a reçu « 12,5 € » — c'est ça.",
    "de": "Größere Straßen führen über die Brücke. Äpfel & Öl: 1.000,50 €",
    "ja": "東京都は日本の首都です。カタカナとひらがな、漢字を混ぜる。",
    "ko": "서울특별시에 오신 것을 환영합니다. 한국어 텍스트 123개!",
    "es": "¿Dónde está el niño? ¡Mañana será otro día! Año 2024.",
    "pt": "A informação está disponível em português: coração, pão, ações.",
    "mixed": "LFM2 runs on-device: 東京 → Zürich → 서울 → القاهرة (naïve résumé café).",
    "code_py": "def f(x):\n    return [i**2 for i in range(x) if i % 2 == 0]  # squares\n",
    "code_c": "int main(void) {\n\tprintf(\"%d\\n\", a[i] >> 3 & 0xFF);\n\treturn 0;\n}\n",
    "code_js": "const x = {a: 1, 'b': [2, 3]};\nif (x?.a !== undefined) { console.log(`v=${x.a}`); }",
    "json": "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}}",
    "spaces_long": "a" + " " * 37 + "b" + "\t" * 9 + "c\n\n\n\n   \n  d" + " " * 64,
    "newlines": "\r\n\r\nline1\r\nline2\n\n\n \n\t\nend \n",
    "digits": "0 12 345 6789 1234567890 3.14159265 1e-10 +44 (0)20 7946 0958 ١٢٣ ４５６",
    "emoji": "I ❤️ LFM2 😀😀 👩‍👩‍👧‍👦 🇫🇷 👍🏽 ✨✨✨ done",
    "contractions": "I'M you'RE they'Ve she'LL he'D it'S don'T 'tis o'clock ''s",
    "unicode_space": "a\u00a0b\u2003c\u3000d\u2028e\u0085f\u200bg\ufeffh\u00adi\u180ej\u001ck",
    "combining": "e\u0301 n\u0303 a\u0308\u0304 \u0915\u094d\u0937 Z\u0351\u036b\u0343",
    "punct_runs": "...!!!??? --- *** ### $$$ %%% ^^^ &&& ((( ))) \"\"\" ''' ```",
    "specials_text": "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "rare_scripts": "Ελληνικά Русский עברית हिन्दी ไทย ქართული Հայերեն",
}


def random_text(rng, n):
    pools = ["abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " \t\n\r",
             "!?.,;:'\"-_()[]{}<>|/\\@#$%^&*+=~`", "éèàüöäßçñåø", "東京都北京日本語中文",
             "서울한국어", "مرحبا", "😀👍🏽❤️✨", "\u00a0\u2003\u3000\u0085\u200b\ufeff"]
    return "".join(rng.choice(rng.choice(pools)) for _ in range(n))


def main():
    tok = Tokenizer(MODEL)
    cases = json.load(open(os.path.join(DATA, "cases.json"), encoding="utf-8"))
    bad = 0
    for c in cases:
        raw = bytes.fromhex(c["text_hex"]) if "text_hex" in c else c["text"].encode("utf-8")
        if tok.encode(raw, c["add_bos"], c["parse_special"]) != c["ids"]:
            bad += 1
            print("python reference disagrees on", c["id"], file=sys.stderr)
    if bad:
        sys.exit("refusing to write: the python reference fails %d golden cases" % bad)

    rng = random.Random(20240601)
    out = {"encode": [], "detok": []}
    for name, text in OWN_TEXTS.items():
        for add_bos, parse_special in ((False, False), (True, True)):
            raw = text.encode("utf-8")
            out["encode"].append({"id": name, "text": text, "add_bos": add_bos,
                                  "parse_special": parse_special,
                                  "ids": tok.encode(raw, add_bos, parse_special)})
    for k in range(40):
        text = random_text(rng, rng.randint(1, 200))
        out["encode"].append({"id": "random_%d" % k, "text": text, "add_bos": False,
                              "parse_special": False, "ids": tok.encode(text.encode(), False, False)})
    for k in range(10):
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        out["encode"].append({"id": "random_bytes_%d" % k, "text_hex": raw.hex(), "add_bos": False,
                              "parse_special": False, "ids": tok.encode(raw, False, False)})
    # streaming decode: random token sequences, mostly byte tokens (ids 32..287) to cut characters
    n_vocab = len(tok.tokens)
    for k in range(60):
        ids = []
        for _ in range(rng.randint(1, 40)):
            r = rng.random()
            ids.append(rng.randrange(32, 288) if r < 0.5 else rng.randrange(0, 32) if r < 0.55
                       else rng.randrange(288, n_vocab))
        data = b"".join(tok.token_bytes(i) for i in ids)
        data_nospecial = b"".join(tok.token_bytes(i) for i in ids if tok.types[i] != 3)
        out["detok"].append({"ids": ids,
                             "special_hex": data.decode("utf-8", "replace").encode().hex(),
                             "nospecial_hex": data_nospecial.decode("utf-8", "replace").encode().hex()})
    with open(os.path.join(DATA, "extra_cases.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print("wrote %d encode and %d detok cases" % (len(out["encode"]), len(out["detok"])))


if __name__ == "__main__":
    main()
