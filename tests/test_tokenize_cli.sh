#!/usr/bin/env bash
# `lfm2c tokenize` / `lfm2c detokenize` end to end. usage: bash test_tokenize_cli.sh PATH/TO/lfm2c
bin=${1:?usage: test_tokenize_cli.sh PATH/TO/lfm2c}
model=data/tokenizer/lfm2-tok-multilingual.gguf
pass=0 fail=0
check() { if [ "$2" == "$3" ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL $1: got [$2] want [$3]"; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

ids=$("$bin" tokenize -m $model --ids "Hello world, Zürich!")
check "ids start with BOS" "${ids:0:3}" "[1,"
check "no-bos" "$("$bin" tokenize -m $model --ids --no-bos "")" "[]"
check "empty with bos" "$("$bin" tokenize -m $model --ids "")" "[1]"
check "detokenize (special as text)" "$("$bin" detokenize -m $model "$ids")" "<|startoftext|>Hello world, Zürich!"
check "detokenize --no-special" "$("$bin" detokenize -m $model --no-special "$ids")" "Hello world, Zürich!"
plain=$(echo "$ids" | tr -d '[],')
check "detokenize space-separated" "$("$bin" detokenize -m $model --no-special $plain)" "Hello world, Zürich!"
check "parse-special" "$("$bin" tokenize -m $model --ids --no-bos --parse-special "<|im_end|>")" "[7]"
n=$("$bin" tokenize -m $model --no-bos "<|im_end|>" | wc -l)
[ "$n" -gt 1 ] && pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL specials are text without --parse-special"; }
check "id<TAB>piece lines" "$("$bin" tokenize -m $model --no-bos $'a\n' | cut -f2 | tr '\n' '|')" "a|\\n|"
printf 'x\xff\xc0\xafy' > "$tmp/bad.txt"
out=$("$bin" tokenize -m $model --ids --no-bos -f "$tmp/bad.txt")
check "invalid UTF-8 decodes leniently" "$("$bin" detokenize -m $model "$out" | od -An -tx1 | tr -d ' \n')" "78efbfbd2f79"
printf -- '--flag-like text\n' > "$tmp/dash.txt"
out=$("$bin" tokenize -m $model --ids --no-bos -f "$tmp/dash.txt")
check "-f with text starting with -" "$("$bin" detokenize -m $model "$out")" "--flag-like text"
"$bin" tokenize -m "$tmp/missing.gguf" --ids x >/dev/null 2>"$tmp/err"; rc=$?
check "missing model fails" "$rc:$(head -c 7 "$tmp/err")" "1:lfm2c: "
"$bin" detokenize -m $model "1, 99999" >/dev/null 2>"$tmp/err"; rc=$?
check "bad id fails" "$rc:$(head -c 7 "$tmp/err")" "1:lfm2c: "
"$bin" tokenize -m $model >/dev/null 2>&1; rc=$?
check "no text fails" "$rc" "1"
echo "$pass passed, $fail failed"
[ "$fail" == 0 ]
