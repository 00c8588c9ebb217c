#!/usr/bin/env python3
"""embed_side.py — embeddings side by side: `lfm2c serve` and llama.cpp's `llama-server --embedding`
on the same GGUF, threads and pooling, answering the same /v1/embeddings requests (a corpus of
texts of about --tokens tokens each, --batch inputs a request, --clients requests at once). Reports
each engine's input tokens per second (rounds alternated, best of each) and how far the two
engines' vectors agree (cosine of each text's pair; the same model read two ways should give
~1). Run it on a quiet machine; name the CPU beside the figures.

usage: python3 bench/embed_side.py --lfm2c build/lfm2c --llama PEER/build/bin --model M.gguf
       [--threads 2] [--pooling last|mean] [--texts 64] [--tokens 128] [--batch 16]
       [--clients 2] [--rounds 2]
"""
import argparse
import concurrent.futures as cf
import json
import math
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request

WORDS = ("the model reads every weight once a step so the speed follows the memory bandwidth of the "
         "machine while a batch of prompts shares that read and runs faster per token on any core "
         "convolution attention expert router cache token vector search document answer").split()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, body, timeout=600):
    req = urllib.request.Request("http://127.0.0.1:%d/v1/embeddings" % port, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


def wait_ready(port, proc, what):
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit("%s exited before it was ready" % what)
        try:
            post(port, {"input": "hi"}, timeout=5)
            return
        except Exception:
            time.sleep(0.5)
    sys.exit("%s was not ready in 300 s" % what)


def corpus(n, tokens, seed=7):
    rnd = random.Random(seed)
    # about 1.3 tokens a word for this vocabulary of common words
    return [" ".join(rnd.choice(WORDS) for _ in range(int(tokens / 1.3))) + "." for _ in range(n)]


def run(port, texts, batch, clients):
    """All texts in requests of `batch`, `clients` at once: (seconds, vectors, prompt tokens)."""
    chunks = [texts[i:i + batch] for i in range(0, len(texts), batch)]
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(clients) as ex:
        answers = list(ex.map(lambda c: post(port, {"input": c, "encoding_format": "float"}), chunks))
    dt = time.perf_counter() - t0
    vecs = [d["embedding"] for a in answers for d in sorted(a["data"], key=lambda d: d["index"])]
    tokens = sum(a.get("usage", {}).get("prompt_tokens", 0) for a in answers)
    return dt, vecs, tokens


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lfm2c", required=True)
    ap.add_argument("--llama", required=True, help="folder with llama-server")
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pooling", default="last", choices=["last", "mean"])
    ap.add_argument("--texts", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    texts = corpus(a.texts, a.tokens)
    ctx = 4 * max(a.tokens * 2, 512)
    log = open(os.environ.get("EMBED_SIDE_PEER_LOG", os.devnull), "w")
    cmds = {
        "lfm2c": [a.lfm2c, "serve", "-m", a.model, "-t", str(a.threads), "-c", str(ctx), "-np", "8", "--pooling",
                  a.pooling, "--port"],
        "llama.cpp": [os.path.join(a.llama, "llama-server"), "-m", a.model, "-t", str(a.threads), "-c", str(ctx * 8),
                      "-np", "8", "-b", str(ctx), "-ub", str(ctx), "--embedding", "--pooling", a.pooling, "--port"],
    }
    best = {"lfm2c": 0.0, "llama.cpp": 0.0}
    vec = {}
    for r in range(a.rounds):
        for name in ("lfm2c", "llama.cpp") if r % 2 == 0 else ("llama.cpp", "lfm2c"):
            # a fresh server each round: llama-server (c786e292) aborts reusing an LFM2 slot for a
            # second embedding request (GGML_ASSERT(!slot.is_processing()) in clear_slot)
            port = free_port()
            proc = subprocess.Popen(cmds[name] + [str(port)], stdout=log, stderr=log)
            try:
                wait_ready(port, proc, name)
                dt, v, tok = run(port, texts, a.batch, a.clients)
            except Exception as e:
                sys.exit("round %d: %s failed: %s" % (r + 1, name, e))
            finally:
                proc.terminate()
                proc.wait()
            tok = tok or (a.texts * a.tokens)
            best[name] = max(best[name], tok / dt)
            vec[name] = v
            print("round %d %-9s %6d tokens in %6.2f s: %8.1f tok/s" % (r + 1, name, tok, dt, tok / dt), flush=True)
    cos = [cosine(x, y) for x, y in zip(vec["lfm2c"], vec["llama.cpp"])]
    print("model %s, %d threads, pooling %s, %d texts (%d tokens with BOS), %d a request, %d clients"
          % (os.path.basename(a.model), a.threads, a.pooling, a.texts, tok, a.batch, a.clients))
    print("best: lfm2c %.1f tok/s, llama.cpp %.1f tok/s: %.2fx" %
          (best["lfm2c"], best["llama.cpp"], best["lfm2c"] / best["llama.cpp"]))
    print("agreement: cosine min %.5f mean %.5f over %d texts" % (min(cos), sum(cos) / len(cos), len(cos)))


if __name__ == "__main__":
    main()
