#!/usr/bin/env python3
"""audio_bomb.py — hostile audio against a `lfm2c serve -m LM -mm AUDIO_MMPROJ --max-request-memory
BUDGET` (the tiny LFM2-Audio model), made here: WAV with the standard library, FLAC of silence with
a small writer of our own (CONSTANT subframes: 65535 samples in ~10 bytes, a decoder bomb of
~50,000:1):
- N transcriptions at once, each a FLAC of SECS s of 48 kHz stereo silence (a few KB whose decode
  and encode cost tens of MB): each clip is charged to the request memory budget from its header
  before a sample is decoded, so each answer is a 200 or a 503 naming the request memory, and the
  server's RSS grows by less than LIMIT_MB (without the charge, N decodes ran at once);
- a clip whose decode alone is over the whole budget (300 s of 48 kHz stereo) is a 413 at once,
  through /v1/audio/transcriptions and chat input_audio;
- the refusals, each a 4xx and never a 5xx or a crash: a WAV header declaring 4 GB in 44 bytes, FLAC
  declaring hours, FLAC that declares no length and runs past the limit, rates of 1 Hz and 500 kHz,
  0 and 300 channels, a WAV and an MP3 cut short, bytes that are no audio, a cut form, a form
  without a file, a body over --max-body;
- then a whole bomb and a small clip are answered 200 (the budget came back).
usage: python3 audio_bomb.py PORT PID N SECS LIMIT_MB MP3_FILE"""
import http.client
import io
import base64
import math
import struct
import sys
import time
import wave
from harness import Peak, at_once, check, finish, request, rss_kb

port, pid, n, secs = (int(a) for a in sys.argv[1:5])
limit_mb = float(sys.argv[5])
mp3 = open(sys.argv[6], "rb").read()


def crc8(b):
    c = 0
    for x in b:
        c ^= x
        for _ in range(8):
            c = ((c << 1) ^ 0x07) & 0xFF if c & 0x80 else (c << 1) & 0xFF
    return c


def crc16(b):
    c = 0
    for x in b:
        c ^= x << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x8005) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
    return c


def utf8_num(v):
    """FLAC's UTF-8-like coding of a frame number."""
    if v < 0x80:
        return bytes([v])
    n = 2 if v < 0x800 else 3 if v < 0x10000 else 4 if v < 0x200000 else 5
    out = [0x80 | ((v >> (6 * k)) & 0x3F) for k in range(n - 1)][::-1]
    return bytes([((0xFF00 >> n) & 0xFF) | (v >> (6 * (n - 1)))] + out)


def flac(rate, ch, total, declared=None, block=65535):
    """FLAC of `total` frames of silence (16-bit); STREAMINFO says `declared` (None: total; 0: unknown)."""
    declared = total if declared is None else declared
    si = struct.pack(">HH", 16, block) + b"\0" * 6
    bits = (rate << 44) | ((ch - 1) << 41) | (15 << 36) | declared
    si += bits.to_bytes(8, "big") + b"\0" * 16
    out = [b"fLaC", bytes([0x80, 0, 0, 34]), si]
    k = 0
    for start in range(0, total, block):
        bs = min(block, total - start)
        head = bytes([0xFF, 0xF8, 0x70, (ch - 1) << 4]) + utf8_num(k) + struct.pack(">H", bs - 1)
        head += bytes([crc8(head)])
        frame = head + b"\0\0\0" * ch  # per channel: a CONSTANT subframe of 0
        out.append(frame + struct.pack(">H", crc16(frame)))
        k += 1
    return b"".join(out)


def wav(rate, ch, secs, width=2):
    b = io.BytesIO()
    w = wave.open(b, "wb")
    w.setnchannels(ch), w.setsampwidth(width), w.setframerate(rate)
    w.writeframes(b"".join(struct.pack("<h", int(5000 * math.sin(i / 5))) for i in range(int(rate * secs) * ch)))
    w.close()
    return b.getvalue()


def wav_header(rate, ch, data_bytes, width=2):
    return (b"RIFF" + struct.pack("<I", min(36 + data_bytes, 0xFFFFFFFF)) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, ch, rate,
            rate * ch * width, ch * width, 8 * width) + b"data" + struct.pack("<I", data_bytes))


def form(fields, boundary="BoUnDaRy"):
    out = b""
    for name, value in fields:
        fn = '; filename="clip"' if name == "file" else ""
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{fn}\r\n\r\n').encode()
        out += (value if isinstance(value, bytes) else value.encode()) + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def transcribe(clip, extra=()):
    body = form([("file", clip), ("max_tokens", "2")] + list(extra))
    return request(port, "POST", "/v1/audio/transcriptions", body,
                   {"Content-Type": "multipart/form-data; boundary=BoUnDaRy"})


def chat(clip):
    body = {"max_tokens": 1, "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(clip).decode(), "format": "wav"}}]}]}
    return request(port, "POST", "/v1/chat/completions", body)


bomb = flac(48000, 2, secs * 48000)
print("bomb: %d s of 48 kHz stereo in %d bytes" % (secs, len(bomb)))

# ---- N bombs at once, the RSS sampled -------------------------------------------------------------
with Peak(pid) as p:
    got, dt = at_once(n, lambda i: transcribe(bomb))
grown = p.grown
statuses = [s for s, _ in got]
print("%d bombs at once: %s in %.1f s, RSS %d -> peak %d MB (+%.0f, limit %.0f)"
      % (n, statuses, dt, p.base // 1024, p.peak // 1024, grown, limit_mb))
check(grown < limit_mb, "RSS grew by %.0f MB (limit %.0f)" % (grown, limit_mb))
busy = [b for s, b in got if s == 503]
check(statuses.count(200) >= 1 and statuses.count(200) + len(busy) == n and
      all("max-request-memory" in str(b) for b in busy),
      "each bomb transcribed or refused for memory: %s %s" % (statuses, [str(b)[:200] for s, b in got][:2]))

# ---- over the whole budget: 413 at once --------------------------------------------------------
whole = flac(48000, 2, 300 * 48000)
for name, fn in (("transcriptions", transcribe), ("chat input_audio", chat)):
    t0 = time.time()
    s, b = fn(whole)
    check(s == 413 and "max-request-memory" in str(b) and time.time() - t0 < 10,
          "%s: a clip over the whole budget -> %d %s" % (name, s, str(b)[:300]))

# ---- hostile files: a 4xx each, quickly, never a 5xx ------------------------------------------------
cut_wav = wav(16000, 1, 1.0)
bad = [
    ("a WAV declaring 4 GB in 44 bytes", wav_header(8000, 1, 0xFFFFFFF0), "at most 300 s|holds no samples|too"),
    ("FLAC declaring 10 hours", flac(48000, 2, 48000, declared=36000 * 48000), "at most 300 s"),
    ("a rate of 1 Hz", wav_header(1, 1, 100) + b"\0" * 100, "rate"),
    ("a rate of 500 kHz", wav_header(500000, 1, 1000) + b"\0" * 1000, "rate"),
    ("0 channels", wav_header(8000, 0, 100) + b"\0" * 100, ""),
    ("300 channels", wav_header(8000, 300, 6000) + b"\0" * 6000, "channel"),
    ("no audio at all", b"plain text, not a clip" * 10, "not an audio file"),
    ("an empty RIFF", b"RIFF\x04\0\0\0WAVE", ""),
]
for what, clip, why in bad:
    t0 = time.time()
    s, b = transcribe(clip)
    msg = str(b)
    check(400 <= s < 500 and (not why or any(w in msg for w in why.split("|"))) and time.time() - t0 < 10,
          "%s -> %d %s" % (what, s, msg[:300]))
# cut short, or no declared length: decoded as far as they go (a 200), or refused; never a 5xx
for what, clip in (("a WAV cut short", cut_wav[:len(cut_wav) // 3]), ("an MP3 cut short", mp3[:len(mp3) // 2]),
                   ("FLAC of no declared length past 300 s", flac(48000, 1, 310 * 48000, declared=0))):
    s, b = transcribe(clip)
    check(s == 200 or 400 <= s < 500, "%s -> %d %s" % (what, s, str(b)[:300]))
# the forms
hdr = {"Content-Type": "multipart/form-data; boundary=BoUnDaRy"}
for what, body, status in (
        ("a cut form", form([("file", cut_wav)])[:200], 400),
        ("a form without a file", form([("model", "x")]), 400),
        ("a part without a name", b"--BoUnDaRy\r\nContent-Type: audio/wav\r\n\r\nx\r\n--BoUnDaRy--", 400),
        ("an over-long header", b"--BoUnDaRy\r\nX: " + b"a" * 9000 + b"\r\n\r\n\r\n--BoUnDaRy--", 400)):
    s, b = request(port, "POST", "/v1/audio/transcriptions", body, hdr)
    check(s == status, "%s -> %d %s" % (what, s, str(b)[:300]))
# a body over --max-body: refused from its Content-Length, before a byte of it is read
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
c.putrequest("POST", "/v1/audio/transcriptions")
c.putheader("Content-Type", "multipart/form-data; boundary=BoUnDaRy")
c.putheader("Content-Length", str(64 << 20))
c.endheaders()
r = c.getresponse()
check(r.status == 413 and b"max-body" in r.read(), "a form over --max-body -> %d" % r.status)
c.close()
s, b = request(port, "POST", "/v1/audio/transcriptions", form([("file", cut_wav)]),
               {"Content-Type": "multipart/form-data; boundary=\"a<b\""})
check(s == 400 and "boundary" in str(b), "a malformed boundary -> %d %s" % (s, str(b)[:200]))

# ---- the budget came back ------------------------------------------------------------------------
for what, clip in (("a whole bomb", bomb), ("a small clip", wav(16000, 1, 0.5))):
    s, b = transcribe(clip)
    check(s == 200 and isinstance(b, dict) and "text" in b, "%s once they are over -> %d %s" % (what, s, str(b)[:200]))
print("RSS at the end: %d MB" % (rss_kb(pid) // 1024))
finish()
