#!/usr/bin/env python3
"""render_gate.py — the renders of a server share one memory bound (jinja's per-process bound,
512 MiB): N chat requests at once against a `lfm2c serve --chat-template-file` whose template
builds ~120 MB of strings while it renders (test_server.sh writes it). Without the bound they held
N x 120 MB at once; with it the server's RSS grows by less than LIMIT_MB, the renders past the
bound are refused with a clear 4xx naming it (on a loaded machine others may pass the render's
time budget, refused as clearly; none is a 5xx, none hangs), and once they are over a render is
served again (the bound's bytes came back).
usage: python3 render_gate.py PORT PID N LIMIT_MB"""
import sys
from harness import Peak, at_once, check, finish, request

port, pid, n, limit_mb = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])


def chat():
    s, b = request(port, "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
    return s, str(b)


with Peak(pid) as p:
    got, dt = at_once(n, lambda i: chat())
grown = p.grown
statuses = [s for s, _ in got]
refused = [t for s, t in got if s in (400, 503) and "renders in progress" in t]
slow = [t for s, t in got if s == 400 and "time budget" in t]
print("%d renders at once: %s in %.1f s, RSS %d -> peak %d MB (+%.0f, limit %.0f); %d refused by the bound, %d by the time budget"
      % (n, statuses, dt, p.base // 1024, p.peak // 1024, grown, limit_mb, len(refused), len(slow)))
check(grown < limit_mb, "RSS grew by %.0f MB (limit %.0f)" % (grown, limit_mb))
check(len(refused) >= 1 and statuses.count(200) + len(refused) + len(slow) == n,
      "each render served or refused by the bound: %s %s" % (statuses, [t[:200] for s, t in got if s != 200][:2]))
s, t = chat()
check(s == 200, "a render once they are over -> %d %s" % (s, t[:200]))
finish()
