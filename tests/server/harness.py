"""harness.py — what the server suite's Python scripts share: the tally they print last (the
"N passed, M failed" line test_server.sh adds up), a process's resident memory, and one HTTP
request whose answer is parsed as JSON where it is JSON."""
import http.client
import json
import sys

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
