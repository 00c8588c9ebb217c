"""harness.py — what the server suite's Python scripts share: the tally they print last (the
"N passed, M failed" line test_server.sh adds up), a process's resident memory and its peak
while a block runs, one HTTP request whose answer is parsed as JSON where it is JSON, and n calls
made at once."""
import http.client
import json
import sys
import threading
import time

_count = {"passed": 0, "failed": 0}


def check(cond, what):
    """Counts one check; a failed one is said on stderr with what it checked."""
    if cond:
        _count["passed"] += 1
    else:
        _count["failed"] += 1
        print("FAIL " + what, file=sys.stderr)


def finish():
    """Prints the tally and exits, non-zero when a check failed."""
    print("%d passed, %d failed" % (_count["passed"], _count["failed"]))
    sys.exit(1 if _count["failed"] else 0)


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Peak:
    """The peak RSS of the process pid while a `with` block runs, sampled every `every` s: base and
    peak (KB), grown (MB) once the block is over."""

    def __init__(self, pid, every=0.005):
        self.pid, self.every = pid, every

    def __enter__(self):
        self.base = self.peak = rss_kb(self.pid)
        self.stop = False
        self.th = threading.Thread(target=self.sample)
        self.th.start()
        return self

    def sample(self):
        while not self.stop:
            self.peak = max(self.peak, rss_kb(self.pid))
            time.sleep(self.every)

    def __exit__(self, *a):
        self.stop = True
        self.th.join()
        self.grown = (self.peak - self.base) / 1024


def at_once(n, fn):
    """fn(i) for i < n, each on its own thread, all started before any is waited for: (their
    results, a socket error's as (-1, its text); the seconds from the first start to the last end)."""
    got = [None] * n

    def one(i):
        try:
            got[i] = fn(i)
        except OSError as e:
            got[i] = (-1, str(e))

    ths = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t0 = time.time()
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    return got, time.time() - t0


def request(port, method, path, body=None, headers=None, timeout=120, host="127.0.0.1"):
    """(status, the answer parsed as JSON, or its text where it is not JSON)."""
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
    c.request(method, path, data, h)
    r = c.getresponse()
    text = r.read().decode("utf-8", "replace")
    c.close()
    try:
        return r.status, json.loads(text)
    except ValueError:
        return r.status, text
