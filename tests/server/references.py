#!/usr/bin/env python3
"""references.py — one Responses request naming a stored item many times (item_reference) must stay
bounded (issue 72): against a `lfm2c serve --test-script` with a thinking template, a small
--max-request-memory, --max-messages and a large --max-body (test_server.sh starts it). A stored
answer with a ~7 KB reasoning item and a ~7 KB message is referenced tens of thousands of times:
by the message's id and by the response's id each reference adds a message, refused 400 naming
'input' once --max-messages is passed; by the reasoning item's id nothing is added but its text,
refused 413 once the budget is passed; four such requests at once are each refused (400 / 413, or
503 while others hold the budget). Every refusal comes quickly, and the server's RSS grows by
less than LIMIT_MB all along (without the bounds it grew by gigabytes). A few references still
work. usage: python3 references.py PORT PID MAX_MESSAGES LIMIT_MB"""
import json
import sys
import time
from harness import Peak, at_once, check, finish, request

port, pid, max_messages, limit_mb = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])


def post(body, timeout=120):
    return request(port, "POST", "/v1/responses", body, timeout=timeout)


def refs(rid, n):
    """A body of n references to rid (the bare form, an item with only an id: the shortest)."""
    one = json.dumps({"id": rid})
    return ('{"max_output_tokens":2,"input":[' + ",".join([one] * n) + "]}").encode()


def error_of(t):
    return t.get("error", {}) if isinstance(t, dict) else {}


# a stored answer: a reasoning item and a message of ~7 KB each (~1900 tokens each)
script = "<think>" + "the " * 1700 + "</think>" + "the " * 1700
s, first = post({"input": "hi", "max_output_tokens": 4000, "test_script": script})
items = {o["type"]: o["id"] for o in first.get("output", [])} if s == 200 else {}
check(s == 200 and "reasoning" in items and "message" in items, "the stored answer (%d %s)" % (s, str(first)[:200]))
if s != 200 or len(items) < 2:
    finish()
msg_id, rs_id, resp_id = items["message"], items["reasoning"], first["id"]

# a few references work: the referenced answer is in the prompt
s, plain = post({"input": [{"role": "user", "content": "And?"}], "max_output_tokens": 2})
s2, three = post({"input": [{"id": msg_id}, {"type": "item_reference", "id": resp_id}, {"id": rs_id},
                            {"role": "user", "content": "And?"}], "max_output_tokens": 2})
check(s == 200 and s2 == 200 and three["usage"]["input_tokens"] > plain["usage"]["input_tokens"] + 3000,
      "three references resolve (%d %d: %s)" % (s, s2, str(three)[:200]))

N = 60000
for name, rid, status in [("message", msg_id, 400), ("response", resp_id, 400), ("reasoning item", rs_id, 413)]:
    body = refs(rid, N)
    with Peak(pid) as p:
        t0 = time.time()
        s, t = post(body)
        dt = time.time() - t0
    e = error_of(t)
    what = ("input" in str(e.get("param")) and "max-messages" in e.get("message", "")) if status == 400 else \
        ("max-request-memory" in e.get("message", "") and e.get("code") == "request_too_large")
    check(s == status and what and dt < 20 and p.grown < limit_mb,
          "%d references to the %s -> %d in %.2f s, RSS %d -> peak %d MB (+%.0f, limit %.0f): %s"
          % (N, name, s, dt, p.base // 1024, p.peak // 1024, p.grown, limit_mb, str(t)[:300]))
    print("%d references to the %s: %d in %.2f s, RSS +%.0f MB" % (N, name, s, dt, p.grown))

# four at once, each of the three kinds: refused, none served, memory bounded
bodies = [refs(rid, N) for rid in (rs_id, rs_id, msg_id, resp_id)]
with Peak(pid) as p:
    got, dt = at_once(len(bodies), lambda i: post(bodies[i]))
got = [s for s, _ in got]
check(all(g in (400, 413, 503) for g in got) and dt < 30 and p.grown < limit_mb,
      "four at once -> %s in %.2f s, RSS +%.0f MB (limit %.0f)" % (got, dt, p.grown, limit_mb))
print("four at once: %s in %.2f s, RSS +%.0f MB" % (got, dt, p.grown))

# just within --max-messages, still served
n = max_messages - 1
s, t = post(refs(resp_id, n)[:-2] + b',{"role":"user","content":"And?"}]}')
check(s in (200, 400) and (s == 200 or error_of(t).get("code") == "context_length_exceeded"),
      "%d references (within --max-messages) -> %d %s" % (n, s, str(t)[:200]))
s, t = post({"input": "still fine?", "max_output_tokens": 2})
check(s == 200, "the server still answers (%d)" % s)

finish()
