"""models_churn.py PORT KEY PID A B [CACHED] — the model registry of one `lfm2c serve` under
churn (issue 80), on loopback: the server serves models A and B (and the cached model CACHED,
pulled from the loopback Hub imitation) with --max-loaded 1, so every switch evicts. 24 clients
alternate A and B (a sixth of the requests name CACHED) through the OpenAI, Anthropic and Ollama
APIs, with Ollama keep_alive 0, -1, "1s" or none, a third of them streams closed after the first
chunk; meanwhile one client unloads models (an empty /api/generate with keep_alive 0, as `lfm2c
stop` sends), lists /api/ps, and deletes CACHED (DELETE /api/delete) and pulls it back (POST
/api/pull). Every request must be answered within its client's deadline (a request that is not
is a deadlock: the server then answers nothing more), 200 but for CACHED (404 while deleted,
500 when its files went while it was loading);
once the churn stops, each model must still answer. Then the churn again, and SIGTERM (to PID) in
the middle of it: the server must be gone within a few seconds and every client back.
models_churn.py busy PORT KEY A B — a server of A and B with --max-loaded 1 --load-timeout 1
--test-script: while a long stream runs on A, a request for B in each API waits for room and is
refused 503 after 1 s in that API's error shape, with Retry-After; once the stream is closed B
loads. The script prints what it saw and the "N passed, M failed" tally last."""
import http.client
import json
import os
import random
import signal
import sys
import threading
import time

from harness import check, finish

BUSY = sys.argv[1] == "busy"
if BUSY:
    PORT, KEY, A, B, PID, CACHED = int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], 0, None
else:
    PORT, KEY, PID, A, B = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    CACHED = sys.argv[6] if len(sys.argv) > 6 else None
CLIENTS = 24
CHURN_S = float(os.environ.get("LFM2C_CHURN_SECONDS", "15"))
DEADLINE_S = 30  # one request's client deadline: far past any wait but a stuck one
AUTH = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}
USER = [{"role": "user", "content": "hi"}]


class Tally:
    def __init__(self):
        self.mu = threading.Lock()
        self.n = {}
        self.bad = []

    def add(self, what, bad=None):
        with self.mu:
            self.n[what] = self.n.get(what, 0) + 1
            if bad and len(self.bad) < 8:
                self.bad.append(bad)


def post(path, body, stream_cut=False, method="POST"):
    """(status, text) of one request; a stream is closed after its first line when stream_cut.
    Raises on a timeout or a refused connection."""
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=DEADLINE_S)
    try:
        c.request(method, path, json.dumps(body), AUTH)
        r = c.getresponse()
        if stream_cut and r.status == 200:
            line = r.fp.readline()
            return r.status, line.decode("utf-8", "replace")
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def one_request(model, rng):
    """A request to model through one of the APIs, chosen at random: (status, text, label)."""
    kind = rng.randrange(6)
    ka = rng.choice([0, -1, "1s", None])
    if kind == 0:
        return post("/v1/chat/completions", {"model": model, "messages": USER, "max_tokens": 4}) + ("openai",)
    if kind == 1:
        body = {"model": model, "messages": USER, "max_tokens": 48, "stream": True}
        return post("/v1/chat/completions", body, stream_cut=True) + ("openai stream cut",)
    if kind == 2:
        return post("/v1/messages", {"model": model, "messages": USER, "max_tokens": 4}) + ("anthropic",)
    body = {"model": model, "options": {"num_predict": 4 if kind == 3 else 48}, "stream": kind != 3}
    if ka is not None:
        body["keep_alive"] = ka
    if kind == 5:
        body["prompt"] = "hi"
        return post("/api/generate", body, stream_cut=True) + ("ollama generate cut",)
    body["messages"] = USER
    return post("/api/chat", body, stream_cut=kind == 4) + ("ollama chat",)


def client(k, stop, t):
    rng = random.Random(k)
    turn = k % 2
    while not stop.is_set():
        model = CACHED if CACHED and rng.randrange(6) == 0 else (A, B)[turn]
        turn ^= 1
        try:
            status, text, label = one_request(model, rng)
        except (ConnectionError, OSError) as e:  # TimeoutError is an OSError
            if isinstance(e, TimeoutError) or "timed out" in str(e):
                t.add("timed out", "%s: no answer within %d s" % (model, DEADLINE_S))
                return
            if stop.is_set():
                return
            t.add("error", "%s: %s" % (model, e))
            continue
        if status == 200:
            t.add("200")
        elif status == 404 and model == CACHED:
            t.add("404 (deleted)")
        elif status == 500 and model == CACHED and "cannot open" in text:
            t.add("500 (deleted while loading)")
        else:
            t.add(str(status), "%s %s: %d %s" % (label, model, status, text[:200]))


def churner(stop, t):
    rng = random.Random(99)
    i = 0
    while not stop.is_set():
        time.sleep(0.1 + rng.random() * 0.2)
        i += 1
        try:
            s, _ = post("/api/generate", {"model": rng.choice([A, B]), "keep_alive": 0})
            t.add("unload %d" % s)
            c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=DEADLINE_S)
            c.request("GET", "/api/ps", headers=AUTH)
            c.getresponse().read()
            c.close()
            if CACHED and i % 6 == 0:
                s, _ = post("/api/delete", {"model": CACHED}, method="DELETE")
                t.add("delete %d" % s)
                s, _ = post("/api/pull", {"model": CACHED, "stream": False})
                t.add("pull %d" % s)
        except (ConnectionError, OSError) as e:
            if stop.is_set():
                return
            t.add("churn error", "churn: %s" % e)


def churn(seconds, sigterm_at=None):
    """The clients and the churner for `seconds`, or until SIGTERM at `sigterm_at`: the tally, the
    time every thread took to come back after the stop, and (with SIGTERM) the server's exit time."""
    t, stop = Tally(), threading.Event()
    threads = [threading.Thread(target=client, args=(k, stop, t), daemon=True) for k in range(CLIENTS)]
    threads.append(threading.Thread(target=churner, args=(stop, t), daemon=True))
    for th in threads:
        th.start()
    exited = None
    if sigterm_at is not None:
        time.sleep(sigterm_at)
        stop.set()
        t0 = time.monotonic()
        os.kill(PID, signal.SIGTERM)
        while time.monotonic() - t0 < 15 and server_alive():
            time.sleep(0.05)
        exited = time.monotonic() - t0 if not server_alive() else None
    else:
        time.sleep(seconds)
        stop.set()
    t0 = time.monotonic()
    for th in threads:
        th.join(max(0.1, DEADLINE_S + 5 - (time.monotonic() - t0)))
    back = time.monotonic() - t0
    stuck = sum(th.is_alive() for th in threads)
    return t, back, stuck, exited


def server_alive():
    try:
        with open("/proc/%d/stat" % PID) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def busy_main():
    """A long stream holds A; B is refused 503 after --load-timeout in every API's shape."""
    state = {}

    def stream():
        c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=DEADLINE_S)
        script = " ".join("w%d" % i for i in range(3000))
        body = {"model": A, "messages": USER, "stream": True, "max_tokens": 3000, "test_script": script}
        c.request("POST", "/v1/chat/completions", json.dumps(body), AUTH)
        r = c.getresponse()
        for _ in r:
            state["chunks"] = state.get("chunks", 0) + 1
            if state.get("stop"):
                break
        state["ended"] = True
        c.close()

    th = threading.Thread(target=stream, daemon=True)
    th.start()
    while state.get("chunks", 0) < 2 and th.is_alive():
        time.sleep(0.05)
    shapes = {
        "/v1/chat/completions": lambda j: j["error"]["code"] == "server_overloaded",
        "/v1/messages": lambda j: j["type"] == "error" and j["error"]["type"] == "overloaded_error",
        "/api/chat": lambda j: isinstance(j["error"], str),
    }
    for path, shape in shapes.items():
        body = {"model": B, "messages": USER, "max_tokens": 2, "stream": False}
        c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=DEADLINE_S)
        t0 = time.monotonic()
        c.request("POST", path, json.dumps(body), AUTH)
        r = c.getresponse()
        text = r.read().decode()
        took, retry = time.monotonic() - t0, r.getheader("Retry-After")
        c.close()
        try:
            j = json.loads(text)
            msg = j["error"] if isinstance(j["error"], str) else j["error"]["message"]
            ok = shape(j) and "no room to load" in msg and "--load-timeout" in msg
        except (ValueError, KeyError, TypeError):
            ok = False
        check(r.status == 503 and retry == "1" and ok and 0.9 < took < 5,
              "%s for %s while %s is busy: 503 after --load-timeout in its shape (%d after %.2f s, Retry-After %s: %s)"
              % (path, B, A, r.status, took, retry, text[:300]))
    check(not state.get("ended"), "the stream on %s ran all along (%d chunks)" % (A, state.get("chunks", 0)))
    state["stop"] = True
    th.join(DEADLINE_S)
    s, text = post("/api/chat", {"model": B, "messages": USER, "stream": False, "options": {"num_predict": 2}})
    check(s == 200, "once the stream is closed %s loads: %d %s" % (B, s, text[:200]))
    finish()


def main():
    if CACHED:
        s, text = post("/api/pull", {"model": CACHED, "stream": False})
        check(s == 200, "pull %s before the churn: %d %s" % (CACHED, s, text[:200]))
    t, back, stuck, _ = churn(CHURN_S)
    print("churn %.0f s, %d clients over %s and %s%s: %s" % (CHURN_S, CLIENTS, A, B, " and " + CACHED if CACHED else "",
                                                            json.dumps(t.n, sort_keys=True)))
    for b in t.bad:
        print("  " + b, file=sys.stderr)
    total = sum(v for k, v in t.n.items() if k[0].isdigit())
    check(stuck == 0 and t.n.get("timed out", 0) == 0,
          "every request answered (%d clients still waiting %.0f s after the churn; %d timed out)" %
          (stuck, back, t.n.get("timed out", 0)))
    check(total > 100 and t.n.get("200", 0) > total * 0.9, "the churn ran: %d requests, %d answered 200" %
          (total, t.n.get("200", 0)))
    check(not [k for k in t.n if k[0].isdigit() and k not in ("200", "404 (deleted)", "500 (deleted while loading)")],
          "no request refused but the deleted model's: %s" % t.bad[:3])
    check(t.n.get("unload 200", 0) > 0, "explicit unloads ran")
    if CACHED:
        check(t.n.get("delete 200", 0) > 0 and t.n.get("pull 200", 0) > 0, "deletes and pulls ran")
    for m in (A, B):
        try:
            s, text = post("/v1/chat/completions", {"model": m, "messages": USER, "max_tokens": 2})
        except OSError as e:
            s, text = 0, str(e)
        check(s == 200, "after the churn %s still answers: %d %s" % (m, s, text[:200]))

    t, back, stuck, exited = churn(None, sigterm_at=3)
    print("SIGTERM 3 s into the churn: %s; the server exited after %s s, clients back after %.1f s" %
          (json.dumps(t.n, sort_keys=True), "%.1f" % exited if exited is not None else "(not yet)", back))
    check(exited is not None and exited < 4.5, "SIGTERM during the churn: the server exits at once (%s s)" % exited)
    check(stuck == 0 and back < 10, "every client back after the SIGTERM (%d stuck)" % stuck)
    finish()


busy_main() if BUSY else main()
