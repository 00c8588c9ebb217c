#!/usr/bin/env python3
"""image_bomb.py — decompression-bomb images against the request memory budget (issue 80 item 2),
made here with zlib (rows of zeros compress ~1000:1):
- N chat requests at once, each with a PNG of a few KB whose header says SIDE x SIDE and whose
  pixel data stops short of the last rows (the decoder fills SIDE^2 x 3 bytes, then finds the end:
  a 400), to a `lfm2c serve -mm ... --max-request-memory BUDGET`: each decode is charged to the
  budget from the header before a pixel is decoded, so each answer is that 400 or a 503 naming the
  request memory (no other status), and the server's RSS grows by less than LIMIT_MB (before the
  charge, the N decodes ran at once: N x SIDE^2 x 3 bytes);
- one image whose decode alone is over the whole budget (BIG_SIDE) is a 413 at once, through each
  API's image shape (OpenAI, Responses, Anthropic, Ollama);
- then a whole bomb of MID_SIDE and a small image are answered 200 (decoded, tiled, encoded within
  the budget; the budget came back).
usage: python3 image_bomb.py PORT PID N SIDE BIG_SIDE MID_SIDE LIMIT_MB"""
import base64
import struct
import sys
import time
import zlib
from harness import Peak, at_once, check, finish, request

port, pid, n, side, big_side, mid_side = (int(a) for a in sys.argv[1:7])
limit_mb = float(sys.argv[7])


def png(w, h, rows=None):
    """An RGB PNG of w x h black pixels whose data holds the first `rows` rows (all: None)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    z = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * w)  # filter byte 0, then the row
    idat = b"".join(z.compress(row) for _ in range(h if rows is None else rows)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def data_url(img):
    return "data:image/png;base64," + base64.b64encode(img).decode()


def chat(img):
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "what is it?"},
                                                      {"type": "image_url", "image_url": {"url": data_url(img)}}]}],
            "max_tokens": 1}
    return request(port, "POST", "/v1/chat/completions", body)


bomb, big = png(side, side, side - 8), png(big_side, big_side)
print("bombs: %d x %d in %d bytes, %d x %d in %d bytes" % (side, side, len(bomb), big_side, big_side, len(big)))

with Peak(pid) as p:
    got, dt = at_once(n, lambda i: chat(bomb))
grown = p.grown
statuses = [s for s, _ in got]
print("%d bombs at once: %s in %.1f s, RSS %d -> peak %d MB (+%.0f, limit %.0f)"
      % (n, statuses, dt, p.base // 1024, p.peak // 1024, grown, limit_mb))
check(grown < limit_mb, "RSS grew by %.0f MB (limit %.0f)" % (grown, limit_mb))
busy = [b for s, b in got if s == 503]
short = [b for s, b in got if s == 400 and "corrupt PNG" in str(b)]
check(len(short) + len(busy) == n and all("max-request-memory" in str(b) for b in busy),
      "each bomb decoded to its end or refused for memory: %s %s" % (statuses, [str(b)[:200] for s, b in got][:2]))

# one image whose decode alone passes the whole budget: 413 at once, in each API's shape
url = data_url(big)
b64 = url.split(",", 1)[1]
routes = [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}]}], "max_tokens": 1}),
    ("/v1/responses", {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": url}]}],
                       "max_output_tokens": 16}),
    ("/v1/messages", {"model": "vl", "max_tokens": 1, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64}}]}]}),
    ("/api/chat", {"model": "vl", "stream": False, "messages": [{"role": "user", "content": "hi", "images": [b64]}]}),
]
for path, body in routes:
    t0 = time.time()
    s, b = request(port, "POST", path, body)
    check(s == 413 and "max-request-memory" in str(b) and time.time() - t0 < 10,
          "%s: an image over the whole budget -> %d %s" % (path, s, str(b)[:300]))

for w in (mid_side, 64):
    s, b = chat(png(w, w * 3 // 4))
    check(s == 200, "a whole %d x %d image once they are over -> %d %s" % (w, w * 3 // 4, s, str(b)[:200]))
finish()
