#!/usr/bin/env bash
# test_paths.sh — every repository path the tree cites exists (issue 39: paths go stale when files
# move). It reads the tracked files that cite paths: the sources and tests (src/, include/,
# tests/, tools/, examples/, python/: C, CUDA, shaders, shell, Python, JavaScript), every *.md,
# scripts/, bench/ scripts, cmake/, CMakeLists.txt and .ci/. In them it finds every word that
# starts with src/ tests/ docs/ bench/ scripts/ include/ examples/ python/ (not inside a longer
# path such as ../shared/docs/X or a URL) and checks it against the checkout:
#   - the path as written: a file or a folder;
#   - {a,b} alternatives are expanded first (src/serve/api_{responses,ollama}.c: each one);
#   - a pattern must match at least one path: `*` / `?` globs (src/cpu/kernels_*.c, or as git
#     pathspecs, whose `*` crosses folders: src/*.c), and
#     placeholders written as an all-capitals word or in angle brackets (tests/LAYER/test_X.c,
#     blobs/<sha>), which stand for `*`;
#   - a trailing `.` `,` `:` `;` `)` or quote is prose, not path, and is dropped; format strings
#     (a `%` or `$`) are skipped: they are built at run time.
# In Markdown, relative links ([text](../bench/README.md#anchor)) are checked too, from the
# file's own folder. Paths that are meant not to exist (a test's missing file, other repositories' sources the spec
# cites) are in the allow-list below, each with its reason. It fails naming every citation whose
# path does not exist, as FILE:LINE: PATH.
# usage: bash test_paths.sh [PATH/TO/lfm2c]   (the argument is ignored: ctest passes it)
set -u
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root" || exit 1
command -v python3 >/dev/null || { echo "FAIL python3 is needed"; echo "0 passed, 1 failed"; exit 1; }
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  files=$(git ls-files)
else   # a source tree without git (a tarball): every file but build outputs
  files=$(find . -path ./build\* -prune -o -path '*/node_modules' -prune -o -type f -print | sed 's|^\./||')
fi
check=$(cat <<'EOF'
import fnmatch, glob, os, re, sys

# Citations that are not this repository's paths, each with why (path -> reason).
ALLOW = {
    # "path": "why it is cited although it does not exist",
}

PREFIXES = "src|tests|docs|bench|scripts|include|examples|python"
CITE = re.compile(r"(?<![\w./~$@-])((?:%s)/[\w.*?{}<>,\[\]/+-]*)" % PREFIXES)
LINK = re.compile(r"\]\(([^)#\s]+)")
CODE_EXT = (".c", ".h", ".cu", ".cuh", ".comp", ".glsl", ".sh", ".py", ".mjs", ".js", ".cmake", ".in")
SKIP_DIRS = ("tests/grammar/jsonschemabench/",)   # a copied corpus, not ours to cite from
SKIP_FILES = ("tests/test_paths.sh",)             # this file: its self-check plants missing paths

def wanted(f):
    if f.startswith(SKIP_DIRS) or f in SKIP_FILES or "/node_modules/" in f:
        return False
    if f.endswith(".md") or f in ("CMakeLists.txt", ".ci/run"):
        return True
    if f.startswith(("scripts/", "bench/", "cmake/")):
        return True
    return f.startswith(("src/", "include/", "tests/", "tools/", "examples/", "python/")) and f.endswith(CODE_EXT)

def expand_braces(p):
    m = re.search(r"\{([^{}]*)\}", p)
    if not m:
        return [p]
    out = []
    for alt in m.group(1).split(","):
        out += expand_braces(p[:m.start()] + alt + p[m.end():])
    return out

def to_glob(p):
    p = re.sub(r"<[^<>/]*>", "*", p)
    # an all-capitals word of two letters or more, or a single capital standing alone in a name
    # (test_X.c), is a placeholder
    p = re.sub(r"(?<![A-Za-z0-9])(?:[A-Z][A-Z0-9]+|[A-Z])(?![a-z])", "*", p)
    return p

def exists(p):
    if os.path.exists(p):
        return True
    if any(c in p for c in "*?[") or to_glob(p) != p:
        g = to_glob(p).rstrip("/")
        # as a shell glob, else as a git pathspec (whose `*` crosses folders: src/*.c)
        return bool(glob.glob(g)) or any(fnmatch.fnmatchcase(f, g) or fnmatch.fnmatchcase(f, g + "/*") for f in ALL)
    return False

def clean(p):
    while p and p[-1] in ".,:;)]}'\"`>":
        if p[-1] == "}" and p.count("{") >= p.count("}"):
            break
        if p[-1] == "]" and p.count("[") >= p.count("]"):
            break
        if p[-1] == ">" and p.count("<") >= p.count(">"):
            break
        p = p[:-1]
    return p

ALL = [l for l in sys.stdin.read().split("\n") if l]
files = [l for l in ALL if wanted(l) and os.path.isfile(l)]
cited = bad = 0
for f in files:
    try:
        text = open(f, encoding="utf-8").read()
    except (UnicodeDecodeError, OSError):
        continue
    for n, line in enumerate(text.split("\n"), 1):
        for m in CITE.finditer(line):
            p = clean(m.group(1))
            if not p or "%" in p or "$" in p or p.rstrip("/") in PREFIXES.split("|"):
                continue
            cited += 1
            if p in ALLOW or p.rstrip("/") in ALLOW:
                continue
            for q in expand_braces(p):
                if not exists(q):
                    bad += 1
                    print("FAIL %s:%d: %s" % (f, n, q))
        if not f.endswith(".md"):
            continue
        for m in LINK.finditer(line):
            p = m.group(1)
            if re.match(r"[a-z]+:", p):   # https:, mailto:
                continue
            cited += 1
            if not os.path.exists(os.path.join(os.path.dirname(f), p)):
                bad += 1
                print("FAIL %s:%d: link %s" % (f, n, p))
print("paths: %d citations in %d files, %d missing" % (cited, len(files), bad))
print("%d passed, %d failed" % (1 if bad == 0 else 0, 1 if bad else 0))
sys.exit(1 if bad else 0)
EOF
)
# First the checker itself: a file citing two missing paths (one inside {a,b}) and a broken link
# beside existing paths, a glob, a placeholder and a good link must give exactly those three.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/self.md" <<'MD'
See src/no/such/file.c, tests/LAYER/test_X.c, src/cpu/kernels_*.c and docs/DESIGN.md.
Also src/serve/api_{responses,nosuch}.c (`tests/test_paths.sh`), ../shared/docs/nothing.md.
Links: [a page](self.md#top), [a lost page](gone.md).
MD
self=$(echo "$tmp/self.md" | python3 -c "$check")
if [ "$(echo "$self" | grep -c '^FAIL')" = 3 ] && echo "$self" | grep -q ': src/no/such/file.c$' &&
   echo "$self" | grep -q ': src/serve/api_nosuch.c$' && echo "$self" | grep -q ': link gone.md$'; then
  echo "self-check: the checker finds the three planted missing paths"
else
  echo "FAIL self-check: the checker did not find exactly the three planted missing paths:"; echo "$self"
  echo "0 passed, 1 failed"; exit 1
fi
printf '%s\n' "$files" | python3 -c "$check"
