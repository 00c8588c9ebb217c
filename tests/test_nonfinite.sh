#!/bin/bash
# test_nonfinite.sh PATH/TO/lfm2c — outputs that are not finite (a hostile model file whose
# weights give NaN, an adapter whose values overflow) are errors, never garbage: `run` and `chat`
# fail naming the logits, `embed` fails naming the embedding; the server answers 500
# embedding_failed on /v1/embeddings, /api/embed and /api/embeddings (never a shorter vector),
# and 500 on chats, completions and /api/generate (never tokens drawn from NaN). The broken
# model is the dense fixture with its final norm's weights (token_embd_norm) set to NaN, written
# here (stdlib Python).
bin=$(readlink -f "${1:?usage: test_nonfinite.sh PATH/TO/lfm2c}")
cd "$(dirname "$0")"
tmp=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$tmp"' EXIT
pass=0; fail=0
check() { if eval "$2"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: $1" >&2; fi; }
expect_error() {   # NAME PATTERN CMD...: non-zero exit, a "lfm2c: " line matching PATTERN
  local name=$1 pat=$2; shift 2
  timeout 60 "$@" >"$tmp/out" 2>"$tmp/err" </dev/null; local rc=$?
  check "$name: fails ($rc)" "[ $rc -ne 0 ] && [ $rc -lt 124 ]"
  check "$name: says '$pat' (got: $(head -c 300 "$tmp/err"))" "grep -q -- \"$pat\" \"$tmp/err\""
}
dense=data/lfm2-tiny-dense-f32.gguf nan=$tmp/nan.gguf
cp "$dense" "$nan"
python3 -c '
import struct, sys; sys.path.insert(0, "lora"); from peft_merge import read_gguf_layout
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); ne, typ, off = read_gguf_layout(b)["token_embd_norm.weight"]
assert typ == 0
for i in range(ne[0]): struct.pack_into("<f", b, off + 4 * i, float("nan"))
open(p, "wb").write(b)' "$nan"
rc=$?
check "the broken model is written" "[ $rc -eq 0 ]"

# ---- the CLI ----------------------------------------------------------------------------------
expect_error "run --temp 0" "logits are not finite" "$bin" run -m "$nan" -p Hello -n 4 --temp 0
expect_error "run --temp 0.8" "logits are not finite" "$bin" run -m "$nan" -p Hello -n 4 --temp 0.8
expect_error "run with speculative lookup" "logits are not finite" "$bin" run -m "$nan" -p "a b a b a b" -n 8 --temp 0 --spec-lookup
printf 'Hello\n' >"$tmp/in"
timeout 60 "$bin" chat -m "$nan" -n 4 --temp 0 <"$tmp/in" >"$tmp/out" 2>"$tmp/err"
check "chat says the logits are not finite (got: $(head -c 300 "$tmp/err"))" "grep -q 'logits are not finite' \"$tmp/err\""
expect_error "embed" "embedding is not finite" "$bin" embed -m "$nan" "Hello there"
expect_error "embed --pooling mean" "embedding is not finite" "$bin" embed -m "$nan" --pooling mean "Hello there"
# an adapter whose values are finite but overflow the forward: the outputs, not the load, fail
"$bin" synth --lora-for "$dense" -o "$tmp/ad.gguf" --rank 2 --seed 3 >/dev/null 2>&1
python3 lora/peft_from_gguf.py "$tmp/ad.gguf" "$tmp/huge"
python3 -c '
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); n = struct.unpack_from("<Q", b)[0]
for name, h in json.loads(b[8:8 + n]).items():
    if name != "__metadata__":
        a, e = h["data_offsets"]
        for o in range(a, e, 4): struct.pack_into("<f", b, 8 + n + o, 1e30)
open(p, "wb").write(b)' "$tmp/huge/adapter_model.safetensors"
expect_error "run with an adapter whose values overflow" "logits are not finite" "$bin" run -m "$dense" -p Hello -n 4 --temp 0 --lora "$tmp/huge"

# ---- the server -------------------------------------------------------------------------------
if "$bin" serve --help >/dev/null 2>&1; then
  "$bin" serve -m "$nan" --host 127.0.0.1 --port 0 -np 2 >"$tmp/srv.out" 2>"$tmp/srv.err" &
  PIDS+=($!)
  port=
  for _ in $(seq 100); do
    port=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$tmp/srv.out")
    [ -n "$port" ] && break
    sleep 0.1
  done
  check "the server starts ($(tail -2 "$tmp/srv.err"))" "[ -n \"$port\" ]"
  # post PATH BODY: prints "STATUS BODY"
  post() {
    python3 -c '
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=60)
c.request("POST", sys.argv[2], sys.argv[3], {"Content-Type": "application/json"})
r = c.getresponse(); print(r.status, r.read().decode(errors="replace"))' "$port" "$1" "$2" 2>&1
  }
  for route in /v1/embeddings /embeddings; do
    out=$(post $route '{"model": "nan.gguf", "input": ["Hello", "there"]}')
    check "$route: 500 embedding_failed, no vector (got: ${out:0:300})" "[[ \"\$out\" == '500 '* ]] && grep -q embedding_failed <<<\"\$out\" && grep -q 'not finite' <<<\"\$out\" && ! grep -q '\"embedding\"' <<<\"\$out\""
    out=$(post $route '{"model": "nan.gguf", "input": "Hello", "encoding_format": "base64"}')
    check "$route base64: 500 embedding_failed (got: ${out:0:200})" "[[ \"\$out\" == '500 '* ]] && grep -q embedding_failed <<<\"\$out\""
  done
  out=$(post /api/embed '{"model": "nan.gguf", "input": ["Hello"]}')
  check "/api/embed: 500, no [[]] (got: ${out:0:300})" "[[ \"\$out\" == '500 '* ]] && grep -q 'not finite' <<<\"\$out\" && ! grep -q 'embeddings' <<<\"\$out\""
  out=$(post /api/embeddings '{"model": "nan.gguf", "prompt": "Hello"}')
  check "/api/embeddings: 500 (got: ${out:0:300})" "[[ \"\$out\" == '500 '* ]] && grep -q 'not finite' <<<\"\$out\""
  for t in 0 0.8; do
    out=$(post /v1/chat/completions "{\"model\": \"nan.gguf\", \"max_tokens\": 4, \"temperature\": $t, \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}")
    check "chat at temperature $t: 500 naming the logits (got: ${out:0:300})" "[[ \"\$out\" == '500 '* ]] && grep -q 'logits are not finite' <<<\"\$out\""
  done
  out=$(post /v1/completions '{"model": "nan.gguf", "max_tokens": 4, "prompt": "Hi", "stream": true}')
  check "a streamed completion ends with the error, no text (got: ${out:0:300})" "grep -q 'logits are not finite' <<<\"\$out\" && ! grep -q '\"text\":\"[^\"]' <<<\"\$out\""
  out=$(post /api/generate '{"model": "nan.gguf", "prompt": "Hi", "stream": false, "options": {"num_predict": 4}}')
  check "/api/generate: 500 (got: ${out:0:300})" "[[ \"\$out\" == '500 '* ]] && grep -q 'logits are not finite' <<<\"\$out\""
fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
