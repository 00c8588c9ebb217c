#!/usr/bin/env python3
"""fake_hub.py PORTFILE STATEDIR — an imitation of the Hugging Face Hub's HTTP API for the pull
tests, on 127.0.0.1 only (port chosen by the system, written to PORTFILE).

Endpoints, as the Hub documents them:
  GET /api/models/{org}/{name}/revision/{rev}  -> {"id", "sha", "siblings": [{"rfilename"}]}
  GET /api/models/{org}/{name}/tree/{rev}      -> [{"type": "file", "path", "size", "oid", "lfs": {"oid", "size"}}]
  GET /{org}/{name}/resolve/{rev}/{file}       -> 302 to /cdn/{sha256}?... with X-Repo-Commit,
                                                  X-Linked-Etag and X-Linked-Size (LFS files)
  GET /cdn/{sha256}                            -> the bytes, with Range support (206 / 416)
Faults, chosen by the contents of STATEDIR/mode (read at each request): "drop" (a request for the
whole file gets the full Content-Length but half the body, then the connection closes), "corrupt"
(one byte of the body flipped), "slow" (the body in 16 KiB pieces, 30 ms apart), "5xx-once" (the
first CDN request answers 503), "long" (4 KB more than the file), "api-down" (every /api request
answers 503), "api-hang" (/api requests are never answered). Every request is logged to STATEDIR/requests.log with its Range.
Repos: test/tiny-GGUF (Q4_0, Q8_0, F32 of the tiny fixture), test/kq-GGUF (Q4_K_M, F16),
test/gated-GGUF (files need "Authorization: Bearer hf_good"), test/split-GGUF (a file in 3 parts),
test/vl-GGUF (the tiny LFM2-VL model with an F16 and a Q8_0 mmproj), test/vl1-GGUF (with a Q8_0 one);
with $FAKE_HUB_AUDIO (a folder holding lm.gguf, mm-f16.gguf and mm-q8_0.gguf: the tiny LFM2-Audio
model and its audio mmproj, which tests/test_pull.sh writes with synth), test/audio-GGUF laid out as
LiquidAI's LFM2.5-Audio repositories are: the model, an audio mmproj per type, and the speech-output
files (tokenizer-*, an lfm2 GGUF itself, and vocoder-*), which are not models, listed first;
and any LiquidAI/NAME-GGUF (the names the docs use, for tests/test_docs.sh): NAME-Q4_K_M, -Q8_0,
-Q4_0 and -F16 .gguf, each the tiny Q4_0 fixture (it prints noise, but every command runs)."""
import hashlib, json, os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")
portfile, state = sys.argv[1], sys.argv[2]
blobs = {}      # sha256 -> bytes
repos = {}      # repo -> {"sha": commit, "files": {path: sha256 or None (non-LFS)}, "gated": bool}
plain = {}      # non-LFS contents: (repo, path) -> bytes


def add_repo(name, files, gated=False):
    entry = {"sha": hashlib.sha1(name.encode()).hexdigest(), "files": {}, "gated": gated}
    for path, data in files.items():
        if path.endswith(".gguf"):
            h = hashlib.sha256(data).hexdigest()
            blobs[h] = data
            entry["files"][path] = h
        else:
            plain[(name, path)] = data
            entry["files"][path] = None
    repos[name] = entry


def fixture(name):
    with open(os.path.join(DATA, name), "rb") as f:
        return f.read()


tiny_q4, tiny_q8 = fixture("lfm2-tiny-dense-q4_0.gguf"), fixture("lfm2-tiny-dense-q8_0.gguf")
add_repo("test/tiny-GGUF", {"README.md": b"# tiny\n", "tiny-Q4_0.gguf": tiny_q4,
                            "tiny-Q8_0.gguf": tiny_q8, "tiny-F32.gguf": fixture("lfm2-tiny-dense-f32.gguf")})
add_repo("test/kq-GGUF", {"kq-Q4_K_M.gguf": fixture("lfm2-kq-dense-q4_k_m.gguf"),
                          "mmproj-kq-F16.gguf": b"not a model",
                          "kq-F16.gguf": fixture("lfm2-kq-dense-f16.gguf")})
add_repo("test/vl-GGUF", {"vl-F32.gguf": fixture("vision/lfm2-vl-tiny-f32.gguf"),
                          "mmproj-vl-Q8_0.gguf": fixture("vision/mmproj-tiny-q8_0.gguf"),
                          "mmproj-vl-F16.gguf": fixture("vision/mmproj-tiny-f16.gguf")})
add_repo("test/vl1-GGUF", {"vl1-F32.gguf": fixture("vision/lfm2-vl-tiny-f32.gguf"),
                           "mmproj-vl1-Q8_0.gguf": fixture("vision/mmproj-tiny-q8_0.gguf")})
if os.environ.get("FAKE_HUB_AUDIO"):
    audio = os.environ["FAKE_HUB_AUDIO"]
    add_repo("test/audio-GGUF", {"tokenizer-audio-Q8_0.gguf": tiny_q8, "vocoder-audio-Q8_0.gguf": b"not a model",
                                 "audio-Q8_0.gguf": open(os.path.join(audio, "lm.gguf"), "rb").read(),
                                 "mmproj-audio-F16.gguf": open(os.path.join(audio, "mm-f16.gguf"), "rb").read(),
                                 "mmproj-audio-Q8_0.gguf": open(os.path.join(audio, "mm-q8_0.gguf"), "rb").read()})
add_repo("test/gated-GGUF", {"gated-Q4_0.gguf": tiny_q4}, gated=True)
third = (len(tiny_q8) + 2) // 3
add_repo("test/split-GGUF", {"split-Q8_0-%05d-of-00003.gguf" % (i + 1): tiny_q8[i * third:(i + 1) * third]
                             for i in range(3)})
lock = threading.Lock()
failed_once = set()


def mode():
    try:
        with open(os.path.join(state, "mode")) as f:
            return f.read().strip()
    except OSError:
        return ""


class Hub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send_json(self, code, obj, extra=None):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def repo_of(self, parts, gate):
        """parts start with org, name: the repo entry or an error answer (None). As on the Hub, a
        gated repo's metadata and file list are public; its files need the token (gate)."""
        if len(parts) < 2:
            self.send_json(404, {"error": "Repository not found"})
            return None, None
        name = parts[0] + "/" + parts[1]
        if parts[0] == "LiquidAI" and parts[1].endswith("-GGUF"):
            base = parts[1][:-len("-GGUF")]
            with lock:
                if name not in repos:
                    add_repo(name, {"%s-%s.gguf" % (base, q): tiny_q4 for q in ("Q4_K_M", "Q8_0", "Q4_0", "F16")})
        repo = repos.get(name)
        if repo is None:
            self.send_json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return None, None
        if gate and repo["gated"] and self.headers.get("Authorization") != "Bearer hf_good":
            self.send_json(401, {"error": "Access to model %s is restricted. You must have access to it and be authenticated to access it. Please log in." % name},
                           {"X-Error-Code": "GatedRepo"})
            return None, None
        return name, repo

    def do_GET(self):
        with lock, open(os.path.join(state, "requests.log"), "a") as f:
            f.write("%s %s\n" % (self.path, self.headers.get("Range", "-")))
        path = self.path.split("?", 1)[0]
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "models"] and mode() in ("api-down", "api-hang"):
            if mode() == "api-hang":
                time.sleep(30)
            return self.send_json(503, {"error": "the Hub is down"})
        if parts[:2] == ["api", "models"]:
            name, repo = self.repo_of(parts[2:], False)
            if not repo:
                return
            rest = parts[4:]
            if len(rest) == 2 and rest[0] in ("revision", "tree") and rest[1] not in ("main", repo["sha"]):
                return self.send_json(404, {"error": "Invalid rev id: " + rest[1]}, {"X-Error-Code": "RevisionNotFound"})
            if len(rest) == 2 and rest[0] == "revision":
                return self.send_json(200, {"id": name, "modelId": name, "sha": repo["sha"], "private": False,
                                            "gated": "manual" if repo["gated"] else False,
                                            "siblings": [{"rfilename": p} for p in repo["files"]]})
            if len(rest) == 2 and rest[0] == "tree":
                out = []
                for p, h in repo["files"].items():
                    data = blobs[h] if h else plain[(name, p)]
                    e = {"type": "file", "oid": hashlib.sha1(data).hexdigest(), "size": len(data), "path": p}
                    if h:
                        e["lfs"] = {"oid": h, "size": len(data), "pointerSize": 134}
                    out.append(e)
                return self.send_json(200, out)
            return self.send_json(404, {"error": "not found"})
        if parts and parts[0] == "cdn" and len(parts) == 2:
            return self.serve_blob(parts[1])
        if len(parts) >= 5 and parts[2] == "resolve":
            name, repo = self.repo_of(parts, True)
            if not repo:
                return
            rev, file = parts[3], "/".join(parts[4:])
            if rev not in ("main", repo["sha"]) or file not in repo["files"]:
                return self.send_json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
            h = repo["files"][file]
            if h is None:
                data = plain[(name, file)]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Repo-Commit", repo["sha"])
                self.end_headers()
                self.wfile.write(data)
                return
            self.send_response(302)
            self.send_header("Location", "/cdn/%s?X-Amz-Signature=fake" % h)
            self.send_header("X-Repo-Commit", repo["sha"])
            self.send_header("X-Linked-Etag", '"%s"' % h)
            self.send_header("X-Linked-Size", str(len(blobs[h])))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_json(404, {"error": "not found"})

    def serve_blob(self, h):
        data = blobs.get(h)
        if data is None:
            return self.send_json(404, {"error": "no such object"})
        m = mode()
        if m == "5xx-once" and h not in failed_once:
            failed_once.add(h)
            return self.send_json(503, {"error": "try again"})
        start, rng = 0, self.headers.get("Range")
        if rng:
            if not rng.startswith("bytes=") or not rng[6:].rstrip("-").isdigit():
                return self.send_json(400, {"error": "bad range"})
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % len(data))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = data[start:]
        if m == "long":
            body = body + b"trailing bytes the tree did not announce" * 100
        if m == "corrupt" and body:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", '"%s"' % h)
        self.end_headers()
        if m == "drop" and not rng:
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if m == "slow":
            for i in range(0, len(body), 16384):
                try:
                    self.wfile.write(body[i:i + 16384])
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.03)
            return
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass   # a client that hangs up (Ctrl-C, a dropped connection) is part of the tests


srv = Server(("127.0.0.1", 0), Hub)
with open(portfile + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(portfile + ".tmp", portfile)
srv.serve_forever()
