#!/usr/bin/env python3
"""run_docs.py LFM2C — the code blocks of README.md and docs/*.md, run as a reader runs them.

Every fenced block names its language. `sh` blocks run in bash (errexit, pipefail) as written;
`c` blocks are compiled against the build and run with a model file as their argument; `python`
blocks run with python3 and the package importable; `js` blocks run as ES modules with node
(tests/server's packages). `text` (and json, yaml, jinja) blocks are prose: not run. A block
without a language fails the test, so no snippet goes unchecked by accident.

An HTML comment on the line before a fence changes what happens to the block:
  <!-- doctest: skip REASON -->  not run; the reason is printed (needs a GPU, minutes, ...)
  <!-- doctest: file NAME -->    written to NAME in the reader's folder (the prose compiles it)
  <!-- doctest: serves -->       a block whose last command is a server: it passes once the
                                 server says it listens, and stays up for the rest of the file's
                                 blocks (a client snippet below talks to it), then is stopped

The reader's machine is a sandbox: a folder mirroring the repository (its `build` is LFM2C's
build, `./build/lfm2c` as the README says), HOME in the sandbox (`~/.local` installs land
there), `lfm2c` on PATH (the build's), the Hugging Face Hub played by tests/hub/fake_hub.py on
127.0.0.1 (every LiquidAI/NAME-GGUF exists and holds a tiny fixture), a model file of every
`.gguf` name a block reads (the tiny fixture: it prints noise), no package index for pip.
Stand-ins on PATH: `cmake -S . -B DIR` does nothing where DIR is configured (the build is done;
`cmake --build` and `--install` run for real), `apt-get` installs nothing, `python3` is Debian's
(/usr/bin/python3, what scripts/setup.sh equips) where there is one. Servers listen on a
free port: a block's `lfm2c serve` without --port gets --port P, and 127.0.0.1:8080 / :11434 in a
block read 127.0.0.1:P (the test runs beside others). Each block has a time limit.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURE = os.path.join(SRC, "tests", "data", "lfm2-tiny-dense-q4_0.gguf")
PROSE = {"text", "json", "yaml", "jinja"}
CODE = {"sh", "c", "python", "js"}
LIMIT_S = 240
FENCE = re.compile(r"^(\s*)(```+)\s*(\S*)\s*$")
DIRECTIVE = re.compile(r"^\s*<!--\s*doctest:\s*(\S+)\s*(.*?)\s*-->\s*$")


def blocks_of(path):
    """(line, language, directive, argument, text) of every fenced block of a Markdown file."""
    out, lines, i = [], open(path, encoding="utf-8").read().split("\n"), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = len(m.group(1)), m.group(2), m.group(3)
        j, body = i + 1, []
        while j < len(lines) and not (lines[j].strip() == fence and FENCE.match(lines[j])):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        d = DIRECTIVE.match(lines[k]) if k >= 0 else None
        out.append((i + 1, lang, d.group(1) if d else "", d.group(2) if d else "", "\n".join(body) + "\n"))
        i = j + 1
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Sandbox:
    def __init__(self, lfm2c, tmp):
        self.build = os.path.dirname(os.path.abspath(lfm2c))
        self.tmp, self.repo, self.home = tmp, os.path.join(tmp, "repo"), os.path.join(tmp, "home")
        self.port, self.hub = free_port(), None
        os.makedirs(self.repo)
        os.makedirs(self.home)
        for name in os.listdir(SRC):
            if name not in (".git", "build"):
                os.symlink(os.path.join(SRC, name), os.path.join(self.repo, name))
        os.symlink(self.build, os.path.join(self.repo, "build"))
        self.shims(os.path.join(tmp, "bin"), os.path.abspath(lfm2c))
        self.env = dict(os.environ, HOME=self.home, HF_HOME=os.path.join(tmp, "hf"), PORT=str(self.port),
                        PATH=os.path.join(tmp, "bin") + ":" + os.path.join(self.home, ".local", "bin") + ":" +
                        os.environ["PATH"], PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
                        PIP_NO_INPUT="1", PYTHONDONTWRITEBYTECODE="1", PYTHONPATH="",
                        PYTEST_ADDOPTS="-p no:cacheprovider")
        for k in ("LFM2C_LIB", "HF_TOKEN", "HF_HUB_OFFLINE", "HF_HUB_CACHE", "PKG_CONFIG_PATH", "VIRTUAL_ENV"):
            self.env.pop(k, None)

    def shims(self, d, lfm2c):
        os.makedirs(d)
        cmake = shutil.which("cmake") or "cmake"
        shims = {
            "lfm2c": 'exec "%s" "$@"\n' % lfm2c,
            # configuring a configured build dir: nothing to do (the build under test is made)
            "cmake": 'for a in "$@"; do prev=${cur:-}; cur=$a\n'
                     '  [ "$prev" = -B ] && [ -f "$a/CMakeCache.txt" ] && { echo "(doctest: $a is configured)"; exit 0; }\n'
                     'done\nexec "%s" "$@"\n' % cmake,
            "apt-get": 'echo "(doctest: apt-get $* not run)"\n',
            "sudo": 'exec "$@"\n',
        }
        if os.access("/usr/bin/python3", os.X_OK):  # Debian's, where scripts/setup.sh installs pytest
            shims["python3"] = 'exec /usr/bin/python3 "$@"\n'
        for name, body in shims.items():
            with open(os.path.join(d, name), "w") as f:
                f.write("#!/usr/bin/env bash\n" + body)
            os.chmod(os.path.join(d, name), 0o755)

    def start_hub(self):
        state = os.path.join(self.tmp, "hubstate")
        os.makedirs(state)
        portfile = os.path.join(self.tmp, "hubport")
        self.hub = subprocess.Popen([sys.executable, os.path.join(SRC, "tests", "hub", "fake_hub.py"), portfile, state])
        for _ in range(200):
            if os.path.exists(portfile) and open(portfile).read().strip():
                break
            time.sleep(0.05)
        self.env["HF_ENDPOINT"] = "http://127.0.0.1:" + open(portfile).read().strip()

    def models_for(self, text):
        """A model file (the fixture) for every bare .gguf name a block reads but does not write."""
        written = set(re.findall(r"(?:-o|--output|>)\s*(\S+\.gguf)\b", text))
        for name in set(re.findall(r"(?<![\w/.~-])([\w.-]*\w\.gguf)\b", text)) - written:
            path = os.path.join(self.repo, name)
            if not os.path.lexists(path):
                os.symlink(FIXTURE, path)

    def ports(self, text):
        """127.0.0.1:8080 / :11434 read as the free port; `lfm2c serve` without --port gets it."""
        text = re.sub(r"127\.0\.0\.1:(8080|11434)\b", "127.0.0.1:%d" % self.port, text)

        def add_port(m):
            cmd, comment = m.group(1), m.group(2) or ""
            return cmd if "--port" in cmd else "%s --port %d%s" % (cmd.rstrip(), self.port, comment)
        return re.sub(r"^([^#\n]*\blfm2c serve\b[^#\n]*?)(\s+#.*)?$", add_port, text, flags=re.M)


def kill_group(p):
    """SIGTERM to p's session (its children too), SIGKILL 10 s later."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(10)
            return
        except subprocess.TimeoutExpired:
            pass


class Runner:
    def __init__(self, box):
        self.box, self.passed, self.failed, self.skipped, self.servers, self.running = box, 0, 0, [], [], None

    def report(self, where, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL %s: %s" % (where, what))

    def run(self, argv, where):
        """argv in the reader's folder, in a session of its own (stopped whole past the limit)."""
        p = subprocess.Popen(argv, cwd=self.box.repo, env=self.box.env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                             start_new_session=True)
        self.running = p
        try:
            out, err = p.communicate(timeout=LIMIT_S)
        except subprocess.TimeoutExpired:
            kill_group(p)
            return self.report(where, False, "did not finish in %d s" % LIMIT_S)
        finally:
            self.running = None
        tail = (out[-1500:] + "\n" + err[-2500:]).strip()
        self.report(where, p.returncode == 0, "exit %d:\n%s" % (p.returncode, tail))

    def serve(self, script, where):
        log = open(os.path.join(self.box.tmp, "serve.%d.log" % len(self.servers)), "w+")
        p = subprocess.Popen(["bash", "-eo", "pipefail", "-c", script], cwd=self.box.repo, env=self.box.env,
                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.servers.append(p)
        deadline = time.time() + LIMIT_S
        while time.time() < deadline and p.poll() is None:
            log.seek(0)
            if re.search(r"^listening on 127\.0\.0\.1:\d+$", log.read(), re.M):
                return self.report(where, True, "")
            time.sleep(0.2)
        log.seek(0)
        self.report(where, False, "the server did not start (exit %s):\n%s" % (p.poll(), log.read()[-2500:]))

    def stop_servers(self):
        for p in self.servers:
            kill_group(p)
        self.servers = []

    def block(self, md, line, lang, directive, arg, text):
        where = "%s:%d (%s)" % (md, line, lang or "no language")
        if directive == "skip":
            self.skipped.append("%s: %s" % (where, arg))
            return self.report(where, bool(arg), "a skip needs its reason")
        if directive not in ("", "file", "serves"):
            return self.report(where, False, "unknown directive '%s'" % directive)
        if lang in PROSE:
            return
        if lang not in CODE:
            return self.report(where, False, "a block names its language: sh, c, python, js to run it, text if prose")
        self.box.models_for(text)
        text = self.box.ports(text)
        if directive == "file":
            with open(os.path.join(self.box.repo, arg), "w") as f:
                f.write(text)
            return
        if directive == "serves":
            return self.serve(text, where)
        if lang == "sh":
            return self.run(["bash", "-eo", "pipefail", "-c", text], where)
        name = os.path.join(self.box.tmp, "snippet_%s_%d" % (re.sub(r"\W", "_", md), line))
        if lang == "c":
            with open(name + ".c", "w") as f:
                f.write(text)
            # the libraries the build's lfm2c.pc names (jansson, the image decoders it found, the
            # Vulkan loader), without its archive path (the install's)
            cmd = 'cc -Wall -Werror "$0.c" -o "$0" -Iinclude build/liblfm2c.a $(PKG_CONFIG_PATH=build pkg-config ' \
                  '--libs lfm2c | tr " " "\\n" | grep -v "liblfm2c\\.a$" | tr "\\n" " ") && "$0" model.gguf'
            self.box.models_for("model.gguf")
            return self.run(["bash", "-eo", "pipefail", "-c", cmd, name], where)
        if lang == "python":
            with open(name + ".py", "w") as f:
                f.write(text)
            env = self.box.env
            self.box.env = dict(env, PYTHONPATH=os.path.join(SRC, "python"),
                                LFM2C_LIB=os.path.join(self.box.build, "liblfm2c.so"))
            self.run(["python3", name + ".py"], where)
            self.box.env = env
            return
        d = name + "_js"  # an ES module beside tests/server's packages (openai, anthropic, ollama, agents)
        deps = subprocess.run(["bash", os.path.join(SRC, "tests", "npm_deps.sh"), "server", "openai", "ollama",
                               "@anthropic-ai/sdk", "@openai/agents"], capture_output=True, text=True)
        if deps.returncode != 0:
            return self.report(where, False, (deps.stdout + deps.stderr).strip())
        os.makedirs(d)
        os.symlink(os.path.join(SRC, "tests", "server", "node_modules"), os.path.join(d, "node_modules"))
        with open(os.path.join(d, "snippet.mjs"), "w") as f:
            f.write(text)
        self.run(["node", os.path.join(d, "snippet.mjs")], where)


def front_door(path):
    """The README stays a short front door (issue 75): at most 150 lines, none over 120 columns."""
    lines = open(path, encoding="utf-8").read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    long = [i + 1 for i, l in enumerate(lines) if len(l) > 120]
    bad = []
    if len(lines) > 150:
        bad.append("README.md has %d lines (at most 150: move detail to docs/ or bench/)" % len(lines))
    if long:
        bad.append("README.md lines over 120 columns: %s" % ", ".join(map(str, long[:10])))
    for b in bad:
        print("FAIL " + b)
    return len(bad)


def main():
    lfm2c = os.path.abspath(sys.argv[1])
    front_failed = front_door(os.path.join(SRC, "README.md"))
    files = [os.path.join(SRC, "README.md")] + sorted(
        os.path.join(SRC, "docs", f) for f in os.listdir(os.path.join(SRC, "docs")) if f.endswith(".md"))
    only = os.environ.get("LFM2C_DOCS_ONLY")  # e.g. README.md or docs/LIBRARY.md: one file
    tmp = tempfile.mkdtemp(prefix="lfm2c-docs-")
    box = Sandbox(lfm2c, tmp)
    box.start_hub()
    r = Runner(box)

    def stopped(signum, frame):  # ctest's timeout, Ctrl-C: no snippet outlives the test
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stopped)
    try:
        for path in files:
            md = os.path.relpath(path, SRC)
            if only and md != only:
                continue
            for b in blocks_of(path):
                t0 = time.time()
                r.block(md, *b)
                if time.time() - t0 > 5:  # where the test's time goes
                    print("%5.1f s  %s:%d" % (time.time() - t0, md, b[0]))
            r.stop_servers()
    finally:
        if r.running:
            kill_group(r.running)
        r.stop_servers()
        box.hub.terminate()
        box.hub.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    for s in r.skipped:
        print("skipped %s" % s)
    print("docs: %d passed, %d failed, %d skipped" % (r.passed, r.failed + front_failed, len(r.skipped)))
    return 1 if r.failed or front_failed else 0


if __name__ == "__main__":
    sys.exit(main())
