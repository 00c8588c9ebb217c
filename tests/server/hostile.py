#!/usr/bin/env python3
"""hostile.py — hostile and odd HTTP clients against `lfm2c serve` on loopback (used by
test_server.sh). Each subcommand prints one line "ok ..." or "FAIL ..." and exits 0 / 1.

  stalled-uploads PORT PID N    N unauthenticated uploads of 8 MB bodies that stall: RSS stays flat
  slowloris PORT KEY N IPS      N half-open connections from each of IPS loopback addresses
                                (127.0.0.1..), then /health and a chat from 127.0.0.1 must answer
  half-close PORT KEY           requests sent, then shutdown(SHUT_WR): the answers still arrive
  idle-close PORT SECONDS       a connection that never finishes its headers is closed in time
  big-bodies PORT PID KEY N MB  N long requests at once, each with a large JSON body that costs far
                                more parsed than sent: the server's RSS grows by less than MB
  memory-full PORT KEY N        N uploads that stall holding most of the request memory budget:
                                a further request gets 503 + Retry-After, and 200 once they are gone
  unread PORT KEY N SECONDS     N clients ask for ~10 MB answers and never read them: a new request is
                                still served (the oldest unread answers are cut for memory), and
                                every unread answer is cut once it is SECONDS (--idle-timeout) old
  slow-reader PORT KEY          opens a stream it never reads (for the shutdown test; holds it)
  abandon PORT KEY N SECONDS    N long requests (plain and streams) sent and closed at once: a normal
                                request is then served within SECONDS (their jobs were cancelled)
"""
import json
import resource
import socket
import sys
import time

from harness import Peak, rss_kb


def connect(port, src="127.0.0.1", timeout=10):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_response(s):
    """Reads one HTTP response (Content-Length or close-delimited); returns (status, body)."""
    data = b""
    while True:
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        # an interim 1xx answer (102 Processing: the server checking on a half-closed client)
        # comes before the final one: skip it, as HTTP/1.1 clients must
        if data.startswith(b"HTTP/1.1 1") and b"\r\n\r\n" in data:
            data = data.partition(b"\r\n\r\n")[2]
            continue
        break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if not lines or len(lines[0].split()) < 2:
        return 0, b""
    status = int(lines[0].split()[1])
    length = None
    chunked = False
    for h in lines[1:]:
        k, _, v = h.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
        if k.strip().lower() == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
    while True:
        if length is not None and len(body) >= length:
            break
        if chunked and body.endswith(b"0\r\n\r\n"):
            break
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, body


def request(method, path, body, headers):
    b = json.dumps(body).encode() if body is not None else b""
    h = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    h += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    h += f"Content-Length: {len(b)}\r\n\r\n"
    return h.encode() + b


def stalled_uploads(port, pid, n):
    before = rss_kb(pid)
    socks, statuses = [], []
    chunk = b"x" * 65536
    for _ in range(n):
        s = connect(port)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 8000000\r\n\r\n")
        s.setblocking(False)
        sent = 0
        try:  # push as much body as the server lets in, never the whole of it
            while sent < 7_000_000:
                sent += s.send(chunk)
        except (BlockingIOError, ConnectionError, OSError):
            pass
        socks.append(s)
    time.sleep(1.0)
    after = rss_kb(pid)
    for s in socks:
        s.setblocking(True)
        s.settimeout(5)
        try:
            st, _ = read_response(s)
        except OSError:
            st = -1  # reset: the server refused to read the body and closed
        statuses.append(st)
        s.close()
    grew = (after - before) / 1024
    answered = sum(1 for st in statuses if st == 401)
    ok = grew < 24 and answered + statuses.count(-1) == n and answered > 0
    print(f"{'ok' if ok else 'FAIL'} stalled uploads: RSS {before // 1024} -> {after // 1024} MB "
          f"(+{grew:.1f} MB), {answered}/{n} answered 401, {statuses.count(-1)} reset")
    return ok


def http_get_status(port, path, key=None, src="127.0.0.1", body=None, timeout=10):
    """(status, body) of one request; status -1 when the connection was refused or reset."""
    try:
        s = connect(port, src, timeout)
        hdr = {"Authorization": f"Bearer {key}"} if key else {}
        s.sendall(request("POST" if body is not None else "GET", path, body, hdr))
        st, b = read_response(s)
        s.close()
        return st, b
    except OSError:
        return -1, b""


def slowloris(port, key, n, n_ips):
    held = []
    t0 = time.time()
    refused = 0
    for ip in range(1, n_ips + 1):
        for _ in range(n):
            try:
                s = connect(port, f"127.0.0.{ip}", 5)
                s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")  # never ends its headers
                held.append(s)
            except OSError:
                refused += 1
    time.sleep(0.5)
    t1 = time.time()
    st1, _ = http_get_status(port, "/health", timeout=5)
    st2, b2 = http_get_status(port, "/v1/chat/completions", key,
                              body={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}, timeout=20)
    dt = time.time() - t1
    alive = 0  # how many of the attacker's sockets the server still keeps
    for s in held:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                continue
            alive += 1
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    for s in held:
        s.close()
    ok = st1 == 200 and st2 == 200 and dt < 10
    print(f"{'ok' if ok else 'FAIL'} slowloris: {len(held)} stalled sockets from {n_ips} addresses "
          f"({refused} refused at connect, {alive} still open) in {t1 - t0:.1f} s; then /health {st1}, "
          f"chat {st2} in {dt:.2f} s")
    return ok


def half_close(port, key):
    ok = True
    for stream in (False, True):
        s = connect(port, timeout=30)
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "stream": stream}
        s.sendall(request("POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {key}"}))
        s.shutdown(socket.SHUT_WR)
        st, b = read_response(s)
        s.close()
        good = st == 200 and ((b"[DONE]" in b) if stream else (b'"chat.completion"' in b))
        print(f"{'ok' if good else 'FAIL'} half-closed {'stream' if stream else 'request'}: {st} {len(b)} bytes")
        ok = ok and good
    return ok


def idle_close(port, seconds):
    s = connect(port, timeout=seconds + 10)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    t0 = time.time()
    try:
        got = s.recv(100)
    except OSError:
        got = b""
    dt = time.time() - t0
    ok = got == b"" and dt < seconds + 5
    print(f"{'ok' if ok else 'FAIL'} idle connection closed after {dt:.1f} s (idle timeout {seconds} s)")
    return ok


def slow_reader(port, key):
    s = connect(port, timeout=5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    body = {"messages": [{"role": "user", "content": "go"}], "max_tokens": 1900, "stream": True,
            "logit_bias": {"7": -100, "2": -100}}
    s.sendall(request("POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {key}"}))
    print("ok slow reader holding its stream", flush=True)
    time.sleep(60)  # never reads; the test kills it
    return True


LONG = {"max_tokens": 1500, "temperature": 1, "logit_bias": {"7": -100, "2": -100}}


def abandon(port, key, n, limit):
    """N long generations (every third a stream) sent at once and their connections closed."""
    t0 = time.time()
    socks = []
    for i in range(n):
        try:
            s = connect(port, timeout=10)
            body = dict(LONG, messages=[{"role": "user", "content": f"go {i}"}], stream=(i % 3 == 0))
            s.sendall(request("POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {key}"}))
            socks.append(s)
        except OSError:
            pass
    for s in socks:
        s.close()
    t_closed = time.time()
    status, tries = 0, 0
    while time.time() - t_closed < limit + 30:
        tries += 1
        try:
            s = connect(port, timeout=limit + 30)
            body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
            s.sendall(request("POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {key}"}))
            status, _ = read_response(s)
            s.close()
        except OSError:
            status = 0
        if status == 200:
            break
        time.sleep(0.05)
    dt = time.time() - t_closed
    ok = status == 200 and dt <= limit
    print(f"{'ok' if ok else 'FAIL'} {len(socks)} abandoned requests sent and closed in {t_closed - t0:.2f} s; "
          f"a normal request served {dt:.2f} s later (status {status}, {tries} tries, limit {limit} s)")
    return ok


def padded(i, kb):
    """A long chat request whose body carries ~kb KiB of small JSON values (ignored field)."""
    pad = "[" + ",".join(["{}"] * (kb * 1024 // 3)) + "]"
    body = json.dumps(dict(LONG, messages=[{"role": "user", "content": f"go {i}"}]))
    return body[:-1] + ',"x_pad":' + pad + "}"


def big_bodies(port, pid, key, n, limit_mb):
    with Peak(pid, every=0.01) as p:
        socks = []
        for i in range(n):
            b = padded(i, 400).encode()
            h = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n").encode()
            try:
                s = connect(port, timeout=30)
                s.sendall(h + b)
                socks.append(s)
            except OSError:
                pass
        statuses = []
        for s in socks:  # the held ones do not answer within the wait: their jobs run
            s.settimeout(3)
            try:
                st, _ = read_response(s)
            except OSError:
                st = 0
            statuses.append(st)
    for s in socks:
        s.close()
    ok = p.grown < limit_mb and all(st in (0, 200, 503) for st in statuses)
    print(f"{'ok' if ok else 'FAIL'} {len(socks)} long requests with 400 KiB bodies of small values: RSS "
          f"{p.base // 1024} MB -> peak {p.peak // 1024} MB (+{p.grown:.0f}, limit {limit_mb}); "
          f"{statuses.count(503)} refused 503, {statuses.count(200)} done, {statuses.count(0)} still held")
    return ok


def memory_full(port, key, n):
    """Stalled uploads hold the budget; Retry-After on the refusal; room again once they go."""
    held = []
    big = 1900 * 1024
    for _ in range(n):
        s = connect(port, timeout=30)
        s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {big + 100}\r\n\r\n").encode())
        s.sendall(b'{"x_pad":"' + b"a" * big)  # the rest never comes
        held.append(s)
    time.sleep(0.5)
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "x_pad": "a" * 300000}
    s = connect(port, timeout=30)
    s.sendall(request("POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {key}"}))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    st1 = int(data.split()[1]) if data.startswith(b"HTTP/") else 0
    retry = b"\r\nretry-after:" in data.lower()
    for h in held:
        h.close()
    time.sleep(0.5)
    s = connect(port, timeout=30)
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "x_pad": "a" * 300000}
    s.sendall(request("POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {key}"}))
    st2, _ = read_response(s)
    s.close()
    ok = st1 == 503 and retry and st2 == 200
    print(f"{'ok' if ok else 'FAIL'} {n} stalled uploads of 1.9 MB: a further request {st1} "
          f"(Retry-After {'sent' if retry else 'missing'}); after they closed: {st2}")
    return ok


def wait_idle(port, key, limit):
    """Until /metrics says no request runs or waits (at most limit seconds)."""
    end = time.time() + limit
    while time.time() < end:
        s = connect(port, timeout=10)
        s.sendall(request("GET", "/metrics", None, {"Authorization": f"Bearer {key}"}))
        st, body = read_response(s)
        s.close()
        text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
        busy = [ln for ln in text.splitlines()
                if ln.startswith(("vllm:num_requests_running ", "vllm:num_requests_waiting ")) and float(ln.split()[1]) > 0]
        if st == 404:   # a server without --metrics: nothing to wait on
            return False
        if st == 200 and not busy:
            return True
        time.sleep(0.25)
    return False


def unread(port, key, n, idle):
    """Answers of ~10 MB (16 choices with logprobs) asked for and never read."""
    body = dict(LONG, messages=[{"role": "user", "content": "go"}], n=16, logprobs=True, top_logprobs=20, max_tokens=300)
    held = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(60)
        s.connect(("127.0.0.1", port))
        s.sendall(request("POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {key}"}))
        held.append(s)
    time.sleep(0.5)
    t0 = time.time()
    s = connect(port, timeout=120)
    small = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    s.sendall(request("POST", "/v1/chat/completions", small, {"Authorization": f"Bearer {key}"}))
    st, _ = read_response(s)  # queued behind the big ones: served once they are done
    s.close()
    dt = time.time() - t0
    # the last big answers may still be generating (a slow build: ASan, a loaded machine): the
    # idle clock of an answer starts when it is written, so wait until nothing runs or waits
    wait_idle(port, key, 60)
    time.sleep(idle + 3)
    cut, kinds = 0, {}
    for h in held:
        data, eof = b"", False
        h.settimeout(5)
        try:
            while True:
                chunk = h.recv(1 << 20)
                if not chunk:
                    eof = True
                    break
                data += chunk
        except OSError as e:
            eof = not isinstance(e, socket.timeout)
        head, _, rest = data.partition(b"\r\n\r\n")
        m = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")]
        length = int(m[0].split(b":")[1]) if m else -1
        status = head[9:12].decode(errors="replace") or "-"
        was_cut = eof and status == "200" and len(rest) < length
        cut += was_cut
        k = status + ("/cut" if was_cut else "")
        kinds[k] = kinds.get(k, 0) + 1
        h.close()
    ok = st == 200 and cut == n
    print(f"{'ok' if ok else 'FAIL'} {n} unread ~10 MB answers: a new request served {st} in {dt:.2f} s; "
          f"{cut} of {n} unread answers cut (idle timeout {idle} s; seen: {kinds})")
    return ok


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # room for the stalled sockets
    want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    cmd, port = sys.argv[1], int(sys.argv[2])
    if cmd == "stalled-uploads":
        ok = stalled_uploads(port, int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "slowloris":
        ok = slowloris(port, sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif cmd == "half-close":
        ok = half_close(port, sys.argv[3])
    elif cmd == "idle-close":
        ok = idle_close(port, float(sys.argv[3]))
    elif cmd == "abandon":
        ok = abandon(port, sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    elif cmd == "big-bodies":
        ok = big_bodies(port, int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), float(sys.argv[6]))
    elif cmd == "memory-full":
        ok = memory_full(port, sys.argv[3], int(sys.argv[4]))
    elif cmd == "unread":
        ok = unread(port, sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    elif cmd == "slow-reader":
        ok = slow_reader(port, sys.argv[3])
    else:
        print(f"FAIL unknown subcommand {cmd}")
        ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
