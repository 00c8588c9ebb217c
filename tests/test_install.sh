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
echo "install: $pass passed, $fail failed"
[ $fail -eq 0 ]
