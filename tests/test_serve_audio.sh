#!/usr/bin/env bash
# test_serve_audio.sh — LFM2-Audio through `lfm2c serve` on loopback: the tiny audio model and its
# audio mmproj (written by synth here; random weights, so the text is noise) served with -mm, then
# the OpenAI Node SDK's audio.transcriptions / translations and chat input_audio, the Responses
# API's input_file, each answer against OpenAI's schemas (tests/server/audio.mjs), the transcript
# equal to `lfm2c transcribe`'s; the transport of the upload routes (multipart/form-data only: a
# JSON body 415, a malformed boundary 400, a form over --max-body 413, a cross-site form post
# without a key 403 while the page's own origin passes); the clear 400s (a text model and a vision
# model asked to hear, an audio model asked to see, Anthropic's and Ollama's APIs, which have no
# audio input, a clip past the context); what /v1/models says each model takes (architecture's
# input_modalities: text, +image, +audio); and hostile audio against the request memory budget
# (tests/server/audio_bomb.py: decoder bombs at once with the RSS bounded, over-budget 413s,
# truncated files, huge declared lengths, odd rates and channel counts, bad forms).
# usage: bash test_serve_audio.sh PATH/TO/lfm2c
set -u
LFM2C=$(realpath "$1")
cd "$(dirname "$0")"
TMP=$(mktemp -d)
source ./serve_lib.sh
serve_logs "$TMP"
trap 'serve_cleanup "$TMP"' EXIT
for tool in node npm curl python3; do
  command -v $tool >/dev/null || { echo "FAIL $tool is not installed (scripts/setup.sh)"; echo "0 passed, 1 failed"; exit 1; }
done
bash ./npm_deps.sh server openai ajv ajv-formats || { echo "0 passed, 1 failed"; exit 1; }

"$LFM2C" synth --preset lfm2-audio-tiny --type f32 -o "$TMP/lm.gguf" --mmproj "$TMP/mm.gguf" --mmproj-type q8_0 >/dev/null
python3 - "$TMP" <<'PY'
import math, struct, sys, wave
for name, rate, ch, secs, f in (("a", 16000, 1, 1.0, 440), ("b", 44100, 2, 0.7, 660), ("long", 8000, 1, 90.0, 300)):
    w = wave.open(f"{sys.argv[1]}/{name}.wav", "wb")
    w.setnchannels(ch), w.setsampwidth(2), w.setframerate(rate)
    w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * f * i / rate + c)))
                           for i in range(int(rate * secs)) for c in range(ch)))
    w.close()
PY
N=12 # tokens of each transcript (--special: the CLI prints special tokens as the server's text has them)
"$LFM2C" transcribe "$TMP/a.wav" -m "$TMP/lm.gguf" -mm "$TMP/mm.gguf" -n $N --special >"$TMP/expected" 2>/dev/null
check "lfm2c transcribe of clip A" '[ -s "$TMP/expected" ]'

# req METHOD PATH [curl args...]: sets STATUS, the body in $TMP/body
req() {
  local method=$1 path=$2; shift 2
  STATUS=$(curl -s -o "$TMP/body" -w '%{http_code}' -X "$method" "http://127.0.0.1:$PORT$path" "$@")
}
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($1)" "$TMP/body" 2>/dev/null; }
# what /v1/models says each model takes (architecture.input_modalities joined by +, the models by ,)
modalities() { req GET /v1/models; json "','.join('+'.join(m['architecture']['input_modalities']) for m in d['data'])"; }
T=/v1/audio/transcriptions
B64=$(base64 -w0 "$TMP/a.wav")
printf '{"max_tokens":1,"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"%s","format":"wav"}}]}]}' "$B64" >"$TMP/chat_audio.json"

# ---- the audio model: the SDK suite, the upload transport -------------------------------------------
if start_server audio -m "$TMP/lm.gguf" -mm "$TMP/mm.gguf" --alias au -np 4 -c 1024 --max-body $((2 << 20)); then
  check "the server says it hears" 'grep -q "hears: its audio mmproj" "$TMP/audio.err"'
  check "/v1/models: the audio model takes text and audio" '[ "$(modalities)" = text+audio ]'
  out=$(cd server && timeout 300 node audio.mjs "http://127.0.0.1:$PORT" "$TMP/a.wav" "$TMP/b.wav" ../data/audio/cmp.mp3 \
    "$TMP/expected" $N 2>&1)
  echo "$out" | grep -v '^[0-9]* passed' >&2
  tally "audio.mjs" "$out"
  req POST $T -H 'Content-Type: application/json' -d '{"file":"x"}'
  check "JSON to the upload route -> 415" '[ "$STATUS" = 415 ] && grep -q multipart/form-data "$TMP/body"'
  req POST $T -F "file=@$TMP/a.wav" -H 'Content-Type: multipart/form-data; boundary="a<b"'
  check "a malformed boundary -> 400" '[ "$STATUS" = 400 ] && grep -q boundary "$TMP/body"'
  head -c $((3 << 20)) /dev/zero >"$TMP/big.wav"
  req POST $T -F "file=@$TMP/big.wav"
  check "a form over --max-body -> 413" '[ "$STATUS" = 413 ]'
  req POST $T -F "file=@$TMP/a.wav" -F max_tokens=1 -H 'Origin: http://evil.example'
  check "a cross-site form post without a key -> 403" '[ "$STATUS" = 403 ] && [ "$(json "d[\"error\"][\"code\"]")" = origin_not_allowed ]'
  req POST $T -F "file=@$TMP/a.wav" -F max_tokens=1 -H "Origin: http://127.0.0.1:$PORT"
  check "a form from the server's own page -> 200" '[ "$STATUS" = 200 ]'
  req POST $T -F "file=@$TMP/long.wav" -F max_tokens=1
  check "a clip past the context (90 s, 1125 tokens, -c 1024) -> 400" '[ "$STATUS" = 400 ] && grep -q context "$TMP/body"'
  req POST /v1/messages -H 'Content-Type: application/json' -d "{\"model\":\"au\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"audio/wav\",\"data\":\"$B64\"}}]}]}"
  check "Anthropic: audio as a block -> 400 naming the audio routes" '[ "$STATUS" = 400 ] && grep -q "no audio input" "$TMP/body"'
  req POST /v1/messages -H 'Content-Type: application/json' -d '{"model":"au","max_tokens":1,"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AAAA"}}]}]}'
  check "Anthropic: an input_audio block -> 400" '[ "$STATUS" = 400 ] && grep -q "no audio blocks" "$TMP/body"'
  req POST /api/chat -H 'Content-Type: application/json' -d "{\"model\":\"au\",\"stream\":false,\"messages\":[{\"role\":\"user\",\"content\":\"hi\",\"images\":[\"$B64\"]}]}"
  check "Ollama: audio among the images -> 400" '[ "$STATUS" = 400 ] && grep -q "audio file" "$TMP/body"'
  stop_server
fi

# ---- hostile audio against the request memory budget --------------------------------------------------
if start_server bombs -m "$TMP/lm.gguf" -mm "$TMP/mm.gguf" --alias au -np 2 -c 4096 \
    --max-request-memory $((96 << 20)) --max-body $((2 << 20)); then
  rss_limit=100; { ldd "$LFM2C"; nm "$LFM2C"; } 2>/dev/null | grep -q asan && rss_limit=600
  out=$(cd server && timeout 300 python3 audio_bomb.py $PORT $PID 8 25 $rss_limit ../data/audio/cmp.mp3 2>&1)
  echo "$out" | grep -v '^[0-9]* passed' >&2
  tally "audio_bomb.py" "$out"
  stop_server
fi

# ---- models that cannot hear: a 400 naming the audio mmproj ------------------------------------------
if start_server text -m data/lfm2-tiny-dense-f32.gguf -np 1 -c 256; then
  check "/v1/models: the text model takes text" '[ "$(modalities)" = text ]'
  req POST /v1/chat/completions -H 'Content-Type: application/json' -d "@$TMP/chat_audio.json"
  check "a text model asked to hear (chat) -> 400" '[ "$STATUS" = 400 ] && grep -q "without an audio mmproj" "$TMP/body"'
  req POST $T -F "file=@$TMP/a.wav"
  check "a text model asked to hear (transcriptions) -> 400" '[ "$STATUS" = 400 ] && grep -q "without an audio mmproj" "$TMP/body"'
  stop_server
fi
if start_server vision -m data/vision/lfm2-vl-tiny-f32.gguf -mm data/vision/mmproj-tiny-f32.gguf -np 1 -c 512; then
  check "/v1/models: the vision model takes text and images" '[ "$(modalities)" = text+image ]'
  req POST /v1/chat/completions -H 'Content-Type: application/json' -d "@$TMP/chat_audio.json"
  check "a vision model asked to hear -> 400 naming its vision tower" '[ "$STATUS" = 400 ] && grep -q "vision tower" "$TMP/body"'
  stop_server
fi
"$LFM2C" serve -m "$TMP/lm.gguf" -mm data/vision/mmproj-tiny-f32.gguf --port 0 >/dev/null 2>"$TMP/e1"; rc=$?
check "an image mmproj of another model: a start-up error" '[ $rc != 0 ] && grep -q "^lfm2c: .*mmproj" "$TMP/e1"'
"$LFM2C" serve -m "$TMP/lm.gguf" -mm data/lfm2-tiny-dense-f32.gguf --port 0 >/dev/null 2>"$TMP/e2"; rc=$?
check "a model file given as the mmproj: a start-up error" '[ $rc != 0 ] && grep -q "not an mmproj" "$TMP/e2"'
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
