#!/usr/bin/env python3
"""render_gate.py — the renders of a server share one memory bound (jinja's per-process bound,
512 MiB): N chat requests at once against a `lfm2c serve --chat-template-file` whose template
builds ~120 MB of strings while it renders (test_server.sh writes it). Without the bound they held
N x 120 MB at once; with it the server's RSS grows by less than LIMIT_MB, the renders past the
bound are refused with a clear 4xx naming it (on a loaded machine others may pass the render's
time budget, refused as clearly; none is a 5xx, none hangs), and once they are over a render is
served again (the bound's bytes came back).
usage: python3 render_gate.py PORT PID N LIMIT_MB"""
import http.client
import json
import sys
import threading
import time
from harness import check, finish, rss_kb

port, pid, n, limit_mb = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])


def chat():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", "/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    text = r.read().decode("utf-8", "replace")
    c.close()
    return r.status, text


base = peak = rss_kb(pid)
stop = False


def sample():
    global peak
    while not stop:
        peak = max(peak, rss_kb(pid))
        time.sleep(0.005)


got = [None] * n


def one(i):
    try:
        got[i] = chat()
    except OSError as e:
        got[i] = (-1, str(e))


sampler = threading.Thread(target=sample)
sampler.start()
t0 = time.time()
ths = [threading.Thread(target=one, args=(i,)) for i in range(n)]
for th in ths:
    th.start()
for th in ths:
    th.join()
dt = time.time() - t0
stop = True
sampler.join()
grown = (peak - base) / 1024
statuses = [s for s, _ in got]
refused = [t for s, t in got if s in (400, 503) and "renders in progress" in t]
slow = [t for s, t in got if s == 400 and "time budget" in t]
print("%d renders at once: %s in %.1f s, RSS %d -> peak %d MB (+%.0f, limit %.0f); %d refused by the bound, %d by the time budget"
      % (n, statuses, dt, base // 1024, peak // 1024, grown, limit_mb, len(refused), len(slow)))
check(grown < limit_mb, "RSS grew by %.0f MB (limit %.0f)" % (grown, limit_mb))
check(len(refused) >= 1 and statuses.count(200) + len(refused) + len(slow) == n,
      "each render served or refused by the bound: %s %s" % (statuses, [t[:200] for s, t in got if s != 200][:2]))
s, t = chat()
check(s == 200, "a render once they are over -> %d %s" % (s, t[:200]))
finish()
