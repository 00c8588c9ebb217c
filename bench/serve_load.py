#!/usr/bin/env python3
"""serve_load.py — the concurrency part of serve_load.mjs for machines without node (the GPU
machines scripts/gpu_check.sh runs on have python3 only): starts `lfm2c serve` on loopback
(port 0), then for each concurrency level C runs C clients at once, each streaming one greedy
chat completion of --tokens tokens, and prints the same table as serve_load.mjs (total tok/s,
mean per-stream tok/s after the first token, TTFT p50/p90/p99, TPOT p50/p99: a request's time per
output token after its first). Standard library only; bounded: sum(levels) + 1 requests, each
with a timeout. --ctx: each slot's context (default 4096; 1,024 slots of 1,536 positions for the
issue's serving size); --prompt-max N: each client's prompt padded with a random number (1..N,
seeded by the client) of tokens of filler words (their tokens a word measured once through the
server's /tokenize), vLLM's benchmark's random prompts up to 1,024 tokens.

  python3 bench/serve_load.py --lfm2c build/lfm2c --model M.gguf [--np 32] [--tokens 64]
                              [--levels 1,8,32,128] [--threads N] [--device cpu|cuda] [--ctx 4096]
                              [--prompt-max N]
"""
import argparse
import http.client
import json
import re
import subprocess
import sys
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument('--lfm2c', default='build/lfm2c')
ap.add_argument('--model', default='tests/data/lfm2-kq-dense-f16.gguf')
ap.add_argument('--np', type=int, default=32)
ap.add_argument('--tokens', type=int, default=64)
ap.add_argument('--levels', default='1,8,32,128')
ap.add_argument('--threads')
ap.add_argument('--device')
ap.add_argument('--timeout', type=float, default=300, help='seconds per request')
ap.add_argument('--ctx', type=int, default=4096)
ap.add_argument('--prompt-max', type=int, default=0)
a = ap.parse_args()
levels = [int(x) for x in a.levels.split(',')]

cmd = [a.lfm2c, 'serve', '-m', a.model, '--port', '0', '-np', str(a.np), '-c', str(a.ctx), '--queue', '1024']
cmd += ['-t', a.threads] if a.threads else []
cmd += ['--device', a.device] if a.device else []
srv = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
port = None
deadline = time.time() + 600
while port is None and time.time() < deadline:
    line = srv.stdout.readline()
    if not line:
        sys.exit('server exited (%s)' % srv.wait())
    m = re.search(r'listening on 127\.0\.0\.1:(\d+)', line)
    if m:
        port = int(m.group(1))
threading.Thread(target=lambda: [None for _ in srv.stdout], daemon=True).start()   # keep its pipe drained


def stream_chat(content, max_tokens):
    """one streamed chat completion: (ttft, total, completion tokens)"""
    t0 = time.perf_counter()
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=a.timeout)
    body = json.dumps({'messages': [{'role': 'user', 'content': content}], 'max_tokens': max_tokens,
                       'temperature': 0, 'stream': True, 'stream_options': {'include_usage': True},
                       'logit_bias': {'7': -100, '2': -100}})
    c.request('POST', '/v1/chat/completions', body, {'Content-Type': 'application/json'})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError('HTTP %d: %s' % (r.status, r.read()[:200]))
    ttft, usage = None, None
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith('data: ') or line == 'data: [DONE]':
            continue
        j = json.loads(line[6:])
        if j.get('usage'):
            usage = j['usage']
        ch = j.get('choices') or [{}]
        if ch[0].get('delta', {}).get('content') and ttft is None:
            ttft = time.perf_counter() - t0
    total = time.perf_counter() - t0
    c.close()
    return (ttft if ttft is not None else total), total, usage['completion_tokens'] if usage else 0


WORDS = 'ocean river cloud stone light forest signal paper window garden number voice'.split()


def filler(r, n):
    return ' '.join(WORDS[(r >> 3) * (k + 1) % len(WORDS)] for k in range(n))


def tokens_per_word():
    """the model's tokens a filler word (the server's /tokenize over 200 of them)"""
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
    c.request('POST', '/tokenize', json.dumps({'content': filler(12345, 200)}), {'Content-Type': 'application/json'})
    n = len(json.loads(c.getresponse().read()).get('tokens', [])) or 200
    c.close()
    return n / 200.0


def prompt_of(i, c):
    """client i's prompt: the short question, and with --prompt-max a seeded run of filler words of
    1..prompt_max tokens"""
    q = 'Client %d of %d: write about the ocean.' % (i, c)
    if a.prompt_max <= 0:
        return q
    r = (i * 2654435761 + 12345) & 0xFFFFFFFF
    n = max(1, int((1 + r % a.prompt_max) / TPW))
    return filler(r, n) + '. ' + q


def pct(xs, p):
    s = sorted(xs)
    return s[min(len(s) - 1, int(p * len(s)))]


try:
    TPW = tokens_per_word() if a.prompt_max > 0 else 1.0
    stream_chat('warm up', 4)
    print('model %s, %d slots, %d tokens per request, greedy' % (a.model, a.np, a.tokens))
    print('\n| concurrency | requests | wall s | total tok/s | per-stream tok/s | TTFT p50 ms | TTFT p90 ms | TTFT p99 ms '
          '| TPOT p50 ms | TPOT p99 ms |')
    print('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for c in levels:
        res, errs = [None] * c, []

        def client(i, c=c, res=res, errs=errs):
            try:
                res[i] = stream_chat(prompt_of(i, c), a.tokens)
            except Exception as e:   # reported below, the level still completes
                errs.append(str(e))
        th = [threading.Thread(target=client, args=(i,)) for i in range(c)]
        t0 = time.perf_counter()
        for t in th:
            t.start()
        for t in th:
            t.join()
        wall = time.perf_counter() - t0
        ok = [r for r in res if r]
        if errs:
            print('concurrency %d: %d requests failed, first: %s' % (c, len(errs), errs[0]), file=sys.stderr)
        if not ok:
            continue
        toks = sum(r[2] for r in ok)
        per = sum((r[2] - 1) / max(r[1] - r[0], 1e-9) for r in ok) / len(ok)
        tt = [r[0] * 1000 for r in ok]
        tp = [(r[1] - r[0]) * 1000 / max(r[2] - 1, 1) for r in ok]
        print('| %d | %d | %.2f | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f | %.2f |' % (
              c, len(ok), wall, toks / wall, per, pct(tt, 0.5), pct(tt, 0.9), pct(tt, 0.99), pct(tp, 0.5), pct(tp, 0.99)))
        sys.stdout.flush()
finally:
    srv.terminate()
    try:
        srv.wait(30)
    except subprocess.TimeoutExpired:
        srv.kill()
