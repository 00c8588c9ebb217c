#!/usr/bin/env bash
# test_python.sh LFM2C — the Python package (python/) as a user installs it: `pip install
# --no-build-isolation --no-index` (offline; the in-tree build backend) into a temporary folder,
# then its pytest suite (python/tests) against the liblfm2c.so beside LFM2C, with LFM2C_LIB
# naming it; then installed again with the library bundled (LFM2C_BUNDLE_LIB) and imported with
# no LFM2C_LIB; then as the README installs it into a plain venv of each python3 (stock: no
# wheel, then no setuptools either), online and offline, and the library found in ~/.local
# without LFM2C_LIB. In a sanitized build the sanitizers' runtimes are preloaded into Python (a
# library built with ASan cannot be loaded otherwise), leak checking off (Python's own).
set -u
build=$(cd "$(dirname "$1")" && pwd); bin=$build/$(basename "$1"); src=$(cd "$(dirname "$0")/.." && pwd); pass=0; fail=0
ok()  { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
san=()
if nm "$bin" 2>/dev/null | grep -q __asan_init; then
  pre=
  for l in libasan.so libubsan.so; do f=$(cc -print-file-name=$l); [ -e "$f" ] && pre="$pre $f"; done
  san=(LD_PRELOAD="${pre# }" ASAN_OPTIONS=detect_leaks=0)
  echo "python: sanitized build: LD_PRELOAD=${pre# }"
fi
# a Python with pip and pytest: python3 on PATH, else Debian's (python3-pip, python3-pytest)
py=
for p in python3 /usr/bin/python3; do
  "$p" -c 'import pytest, pip' 2>/dev/null && { py=$p; break; }
done
[ -n "$py" ] || { echo "FAIL: no python3 with pip and pytest (scripts/setup.sh installs python3-pip python3-pytest)"; echo "python: 0 passed, 1 failed"; exit 1; }
so=$build/liblfm2c.so
[ -e "$so" ] && ok || bad "no $so"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp -r "$src/python" "$tmp/src"   # pip builds in place: keep build/ and *.egg-info out of the tree
install() {   # install DEST [ENV...]: the package into DEST, offline
  local dest=$1; shift
  env "$@" PIP_NO_INPUT=1 "$py" -m pip install -q --no-build-isolation --no-index --no-deps --no-cache-dir \
      --target "$dest" "$tmp/src" >"$tmp/pip.log" 2>&1
}
install "$tmp/site" && ok || bad "pip install: $(tail -5 "$tmp/pip.log")"
[ -f "$tmp/site/lfm2c/__init__.py" ] && [ ! -e "$tmp/site/lfm2c/liblfm2c.so" ] && ok || bad "the plain install is not the pure package"
# the suite, from the installed copy (not the source tree)
(cd "$tmp" && env "${san[@]}" LFM2C_LIB=$so LFM2C_CLI=$bin PYTHONPATH="$tmp/site" "$py" -m pytest -q -p no:cacheprovider \
   "$src/python/tests" --rootdir "$tmp" >"$tmp/pytest.log" 2>&1); rc=$?
tail -3 "$tmp/pytest.log"
# pytest's 5 (no test collected) is a failure here too
[ $rc = 0 ] && grep -qE '^[0-9]+ passed' <(tail -1 "$tmp/pytest.log" | sed 's/^=* *//') && ok || bad "pytest exited $rc: $(tail -20 "$tmp/pytest.log")"
(cd "$tmp" && env "${san[@]}" LFM2C_LIB=$so PYTHONPATH="$tmp/site" "$py" -c 'import lfm2c, os; assert os.path.dirname(lfm2c.__file__) == os.environ["PYTHONPATH"] + "/lfm2c"') && ok ||
  bad "the suite's lfm2c is not the installed one"
# without LFM2C_LIB and nothing on the loader's path: an ImportError naming LFM2C_LIB
(cd "$tmp" && env -u LFM2C_LIB LD_LIBRARY_PATH= PYTHONPATH="$tmp/site" "$py" -c 'import lfm2c' 2>"$tmp/err")
if ldconfig -p 2>/dev/null | grep -q liblfm2c.so; then ok   # (installed system-wide: it loads)
else grep -q "LFM2C_LIB" "$tmp/err" && ok || bad "import without the library: $(tail -2 "$tmp/err")"; fi
# the library bundled into the package at build time
install "$tmp/site2" LFM2C_BUNDLE_LIB="$so" && ok || bad "pip install with LFM2C_BUNDLE_LIB: $(tail -5 "$tmp/pip.log")"
(cd "$tmp" && env -u LFM2C_LIB "${san[@]}" PYTHONPATH="$tmp/site2" "$py" -c '
import lfm2c, sys
m = lfm2c.Model(sys.argv[1], n_threads=1)
assert m.detokenize(m.tokenize("bundled", add_bos=False)) == "bundled"' "$src/tests/data/lfm2-tiny-dense-q4_0.gguf" 2>"$tmp/err") && ok ||
  bad "the bundled library does not load: $(tail -3 "$tmp/err")"
# as the README installs it, on a stock interpreter: a plain venv (pip and setuptools without wheel:
# a setuptools build failed there with "invalid command 'bdist_wheel'"), then the same venv
# without setuptools; `pip install --no-build-isolation ./python`, and with build isolation; no
# package index (offline): the in-tree backend needs nothing. Debian's python3 and the one on PATH.
pys=$(for p in /usr/bin/python3 "$(command -v python3)"; do [ -x "$p" ] && readlink -f "$p"; done | sort -u)
for p in $pys; do
  v=$tmp/venv-$(basename "$p")
  "$p" -m venv "$v" >"$tmp/venv.log" 2>&1 || { bad "$p -m venv: $(tail -2 "$tmp/venv.log") (Debian: python3-venv)"; continue; }
  for mode in no-isolation isolation no-setuptools; do
    [ $mode = no-setuptools ] && "$v/bin/python" -m pip uninstall -q -y setuptools wheel >/dev/null 2>&1
    "$v/bin/python" -m pip uninstall -q -y lfm2c >/dev/null 2>&1
    iso=--no-build-isolation; [ $mode = isolation ] && iso=
    (cd "$tmp" && PIP_NO_INDEX=1 PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 "$v/bin/python" -m pip install -q $iso ./src \
       >"$tmp/pip.log" 2>&1) && ok || bad "$p venv ($mode): pip install ./python: $(tail -5 "$tmp/pip.log")"
    (cd "$tmp" && env "${san[@]}" LFM2C_LIB=$so "$v/bin/python" -c 'import lfm2c, sys; assert lfm2c.__file__.startswith(sys.prefix)' 2>"$tmp/err") &&
      ok || bad "$p venv ($mode): the installed package does not import: $(tail -2 "$tmp/err")"
  done
  [ -z "$(ls -d "$tmp/src/build" "$tmp"/src/*.egg-info 2>/dev/null)" ] && ok || bad "pip install wrote build output into python/"
done
# the library that `cmake --install build --prefix ~/.local` put there, found without LFM2C_LIB
cmake --install "$build" --prefix "$tmp/home/.local" >"$tmp/inst.log" 2>&1 || bad "cmake --install: $(tail -3 "$tmp/inst.log")"
if ldconfig -p 2>/dev/null | grep -q liblfm2c.so; then echo "python: liblfm2c.so is on the loader's path: ~/.local not checked"
else
  (cd "$tmp" && env -u LFM2C_LIB "${san[@]}" HOME="$tmp/home" LD_LIBRARY_PATH= PYTHONPATH="$tmp/site" "$py" -c '
import lfm2c, lfm2c._lib, os, sys
assert lfm2c._lib.path == os.path.expanduser("~/.local/lib/liblfm2c.so.0"), lfm2c._lib.path
m = lfm2c.Model(sys.argv[1], n_threads=1)
assert m.generate("Hi", 2, temperature=0)' "$src/tests/data/lfm2-tiny-dense-q4_0.gguf" 2>"$tmp/err") && ok ||
    bad "the library in ~/.local is not found without LFM2C_LIB: $(tail -3 "$tmp/err")"
fi
echo "python: $pass passed, $fail failed"
[ $fail -eq 0 ]
