#!/usr/bin/env bash
# test_examples.sh LFM2C — examples/ built the way a user builds them: `cmake --install` of the
# build LFM2C came from into a temporary prefix, then each example compiled with nothing but
# `cc FILE $(pkg-config --cflags --libs lfm2c)` (-Wall -Wextra -Werror), and run on a fixture:
# generate prints what `lfm2c run --temp 0` prints; batch, several prompts in one forward, prints
# for each what generate prints for it alone; chat renders with the model's template and tools,
# streams a turn and parses it for tool calls. Also: the README's two-line program (only
# lfm2c_model_open) links with the README's link line against the build's liblfm2c.a.
set -u
bin=$1; build=$(cd "$(dirname "$bin")" && pwd); src=$(cd "$(dirname "$0")/.." && pwd); pass=0; fail=0
ok()  { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
model=data/lfm2-tiny-dense-q4_0.gguf
cmake --install "$build" --prefix "$tmp/p" >"$tmp/log" 2>&1 || { bad "cmake --install: $(tail -3 "$tmp/log")"; echo "examples: $pass passed, $fail failed"; exit 1; }
pcdir=$(dirname "$(ls "$tmp"/p/lib*/pkgconfig/lfm2c.pc | head -1)")
flags=$(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs lfm2c) && ok || bad "pkg-config --cflags --libs lfm2c"
# an ASan build's library needs the sanitizer runtime in the program too
san=; nm "$bin" 2>/dev/null | grep -q __asan_init && san="-fsanitize=address,undefined"
for e in generate chat batch; do
  cc $san -Wall -Wextra -Werror "$src/examples/$e.c" -o "$tmp/$e" $flags 2>"$tmp/err" && ok ||
    bad "examples/$e.c against the install: $(head -5 "$tmp/err")"
done

# generate == lfm2c run --raw --temp 0 (the same greedy continuation, byte for byte)
for prompt in "The capital of France is" "Once upon a time"; do
  want=$("$bin" run -m $model -p "$prompt" -n 24 --temp 0 --raw 2>/dev/null)
  got=$("$tmp/generate" $model "$prompt" 24 2>"$tmp/err")
  [ -n "$want" ] && [ "$got" = "$want" ] && ok || bad "generate '$prompt': '$got' vs lfm2c run's '$want' $(head -2 "$tmp/err")"
done
# batch: each line equals generate's output for that prompt alone (prompts of different lengths)
p1="The capital of France is"; p2="Once upon a time"; p3="1, 2, 3,"
"$tmp/batch" $model 24 "$p1" "$p2" "$p3" >"$tmp/batch.out" 2>"$tmp/err" && ok || bad "batch: $(head -2 "$tmp/err")"
for i in 1 2 3; do
  eval "p=\$p$i"
  want=$("$tmp/generate" $model "$p" 24 2>/dev/null)
  got=$(sed -n "${i}p" "$tmp/batch.out")
  [ "$got" = "$want" ] && ok || bad "batch line $i: '$got' vs generate's '$want'"
done
[ "$(wc -l <"$tmp/batch.out")" = 3 ] && ok || bad "batch printed $(wc -l <"$tmp/batch.out") lines for 3 prompts"
# chat: one streamed turn, its parse, and a special-token text in the user message stays text
"$tmp/chat" $model "What is the weather in Paris? <|im_end|>" 16 >"$tmp/chat.out" 2>"$tmp/err" && ok || bad "chat: $(head -2 "$tmp/err")"
grep -qE '^\[turn 1: [0-9]+ prompt tokens, 0 reused\]$' "$tmp/chat.out" && ok || bad "chat: no turn line: $(head -3 "$tmp/chat.out")"
grep -qE '^\[parsed: \{"content":.*"tool_calls":\[.*"parsed":(true|false)\}\]$' "$tmp/chat.out" && ok || bad "chat: no parse line: $(tail -2 "$tmp/chat.out")"
"$tmp/chat" /nonexistent.gguf "hi" 2>"$tmp/err" >/dev/null; rc=$?
[ $rc = 1 ] && grep -q "^chat: .*nonexistent" "$tmp/err" && ok || bad "chat on a missing model: rc $rc, '$(cat "$tmp/err")'"
"$tmp/generate" 2>/dev/null; [ $? = 2 ] && ok || bad "generate without arguments must say usage (exit 2)"

# the README's two-line program and link line (no pkg-config): only the engine's dependencies
printf '#include <lfm2c.h>\nint main(int c, char **v) { lfm2c_error e; return c < 2 || !lfm2c_model_open(v[1], 0, &e); }\n' >"$tmp/two.c"
# (a CUDA build's library needs the CUDA runtime too, a Vulkan build's the Vulkan loader, the image
# and audio decoders it found: those words of pkg-config's line)
cuda=$(echo "$flags" | tr ' ' '\n' | grep -E -- '^-L.*cuda|^-Wl,-rpath|^-lcudart$|^-lstdc\+\+$|^-lvulkan$|^-ljpeg$|^-lpng16$|^-lwebp$|^-lwebpdemux$|^-lgif$|^-lsndfile$|^-lmpg123$' | tr '\n' ' ')
cc $san "$tmp/two.c" -o "$tmp/two" -I"$src/include" "$build/liblfm2c.a" -ljansson -lpthread -lm $cuda 2>"$tmp/err" && ok ||
  bad "the two-line program does not link with the README's line: $(head -3 "$tmp/err")"
# (it never frees the model: no leak check for it in a sanitized build)
[ -x "$tmp/two" ] && ASAN_OPTIONS=detect_leaks=0 "$tmp/two" $model && ok || bad "the two-line program does not open the fixture"
echo "examples: $pass passed, $fail failed"
[ $fail -eq 0 ]
