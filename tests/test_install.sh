#!/usr/bin/env bash
# test_install.sh LFM2C — `cmake --install` of the build LFM2C came from into a temporary prefix:
# the binary runs, and a program compiled with `pkg-config --cflags --libs lfm2c` against
# the installed header and library loads a model and generates.
set -u
bin=$1; build=$(cd "$(dirname "$bin")" && pwd); pass=0; fail=0
ok()  { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/p" >"$tmp/log" 2>&1 && ok || { bad "cmake --install: $(tail -3 "$tmp/log")"; echo "install: $pass passed, $fail failed"; exit 1; }
for f in bin/lfm2c include/lfm2c.h; do [ -e "$tmp/p/$f" ] && ok || bad "$f not installed"; done
lib=$(ls "$tmp"/p/lib*/liblfm2c.a 2>/dev/null | head -1); [ -n "$lib" ] && ok || bad "liblfm2c.a not installed"
pc=$(ls "$tmp"/p/lib*/pkgconfig/lfm2c.pc 2>/dev/null | head -1); [ -n "$pc" ] && ok || bad "lfm2c.pc not installed"
"$tmp/p/bin/lfm2c" --version | grep -q "^lfm2c " && ok || bad "installed binary --version"
cat > "$tmp/hello.c" <<'C'
#include <lfm2c.h>
#include <stdio.h>
int main(int argc, char **argv) {
    lfm2c_error err = {0};
    lfm2c_model_params p = lfm2c_model_default_params();
    lfm2c_model *m = lfm2c_model_open(argv[1], &p, &err);
    if (!m) { fprintf(stderr, "%s\n", err.msg); return 1; }
    printf("vocab %d\n", lfm2c_vocab_size(m));
    lfm2c_model_free(m);
    return 0;
}
C
flags=$(PKG_CONFIG_PATH="$(dirname "$pc")" pkg-config --cflags --libs lfm2c 2>"$tmp/err") && ok || bad "pkg-config: $(cat "$tmp/err")"
san=; "$bin" --version >/dev/null 2>&1 && nm "$bin" 2>/dev/null | grep -q __asan_init && san="-fsanitize=address,undefined"
cc $san "$tmp/hello.c" -o "$tmp/hello" $flags 2>"$tmp/err" && ok || bad "compile against the install: $(head -5 "$tmp/err")"
[ -x "$tmp/hello" ] && "$tmp/hello" data/lfm2-tiny-dense-q4_0.gguf | grep -q "^vocab [0-9]" && ok || bad "the linked program does not run"
# scripts/setup.sh: what building needs by default, what the tests need with --test (apt-get and
# dpkg replaced by stand-ins that say nothing is installed and record what would be)
mkdir -p "$tmp/shim"
printf '#!/bin/sh\ncase "$1" in --print-architecture) echo amd64;; --print-foreign-architectures) ;; *) ;; esac\n' >"$tmp/shim/dpkg"
printf '#!/bin/sh\nexit 1\n' >"$tmp/shim/dpkg-query"
printf '#!/bin/sh\n[ "$1" = install ] && echo "$@" >>"%s/apt.log"; exit 0\n' "$tmp" >"$tmp/shim/apt-get"
printf '#!/bin/sh\n"$@"\n' >"$tmp/shim/sudo"
chmod +x "$tmp"/shim/*
PATH="$tmp/shim:$PATH" bash ../scripts/setup.sh >/dev/null 2>&1 && ok || bad "setup.sh (build) failed"
build_pk=$(cat "$tmp/apt.log" 2>/dev/null); rm -f "$tmp/apt.log"
PATH="$tmp/shim:$PATH" bash ../scripts/setup.sh --test >/dev/null 2>&1 && ok || bad "setup.sh --test failed"
test_pk=$(cat "$tmp/apt.log" 2>/dev/null)
for p in build-essential cmake pkg-config libjansson-dev libmicrohttpd-dev libedit-dev libcurl4-openssl-dev; do
  echo " $build_pk " | grep -q " $p " && echo " $test_pk " | grep -q " $p " && ok || bad "setup.sh does not install $p"
done
for p in chromium haproxy clang gcc-aarch64-linux-gnu python3-yaml; do
  echo " $build_pk " | grep -q " $p " && bad "setup.sh (build only) installs $p" || ok
  echo " $test_pk " | grep -q " $p " && ok || bad "setup.sh --test does not install $p"
done
bash ../scripts/setup.sh --bogus >/dev/null 2>&1; [ $? = 2 ] && ok || bad "setup.sh --bogus: exit not 2"
echo "install: $pass passed, $fail failed"
[ $fail -eq 0 ]
