#!/usr/bin/env bash
# test_template.sh — `lfm2c template`: exact output (no trailing newline added), tools and
# generation prompt flags, and one-line errors with exit 1. Usage: bash test_template.sh PATH/TO/lfm2c
bin=${1:?usage: test_template.sh PATH/TO/lfm2c}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*" >&2; }

printf '[{"role": "system", "content": "Sé bref."}, {"role": "user", "content": "Hi"}]' >"$tmp/conv.json"
printf '[{"name": "f", "parameters": {"x": 1.0}}]' >"$tmp/tools.json"
tmpl=data/chat/LFM2-1.2B.chat_template.jinja

"$bin" template --messages "$tmp/conv.json" --chat-template-file "$tmpl" >"$tmp/out" 2>"$tmp/err"
printf '<|startoftext|><|im_start|>system\nSé bref.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n' >"$tmp/want"
cmp -s "$tmp/out" "$tmp/want" && ok || bad "plain render: $(cat "$tmp/out" "$tmp/err")"

"$bin" template --messages "$tmp/conv.json" --tools "$tmp/tools.json" --add-generation-prompt --chat-template-file "$tmpl" >"$tmp/out"
printf '<|startoftext|><|im_start|>system\nSé bref.\nList of tools: <|tool_list_start|>[{"name": "f", "parameters": {"x": 1.0}}]<|tool_list_end|><|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n' >"$tmp/want"
cmp -s "$tmp/out" "$tmp/want" && ok || bad "tools + generation prompt: $(cat "$tmp/out")"

# errors: one line on stderr, exit 1, nothing on stdout
check_err() { # name, then the command's arguments
    local name=$1; shift
    "$bin" template "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
    if [[ $rc == 1 && ! -s "$tmp/out" && $(wc -l <"$tmp/err") == 1 ]]; then ok; else bad "$name: rc=$rc out=$(head -c 200 "$tmp/out") err=$(cat "$tmp/err")"; fi
}
printf '[]' >"$tmp/empty.json"
check_err "template raises" --messages "$tmp/empty.json" --chat-template-file "$tmpl"
printf '[{"role": ' >"$tmp/broken.json"
check_err "bad JSON" --messages "$tmp/broken.json" --chat-template-file "$tmpl"
printf '{{ raise_exception("no\nway") }}' >"$tmp/raise.jinja"
check_err "raise_exception" --messages "$tmp/conv.json" --chat-template-file "$tmp/raise.jinja"
printf '{%% for x in y %%}' >"$tmp/syntax.jinja"
check_err "syntax error" --messages "$tmp/conv.json" --chat-template-file "$tmp/syntax.jinja"
check_err "missing file" --messages "$tmp/nope.json" --chat-template-file "$tmpl"
check_err "missing model" -m "$tmp/nope.gguf" --messages "$tmp/conv.json"
check_err "no messages" --chat-template-file "$tmpl"

echo "$pass passed, $fail failed"
[[ $fail == 0 ]]
