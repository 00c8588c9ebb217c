#!/usr/bin/env bash
# test_serve_models.sh LFM2C — one `lfm2c serve` with several models (issue 74), on loopback:
# tests/server/models.mjs drives it with ollama-js, the OpenAI and the Anthropic SDKs (list, ps,
# show, two models in turn and at once, keep_alive, every API's 404, a corrupt file's load
# failing alone, pull with progress from the Hub imitation (tests/hub/fake_hub.py), one load for
# concurrent first requests, delete); `lfm2c ps` and `lfm2c stop` against it; pulls refused with
# --no-pull / --offline; `lfm2c serve` with an empty cache (says how to pull one, then serves
# what POST /api/pull brings); without a key, the Host (DNS rebinding) and Origin (cross-site
# posts) a request may name, with a key the key alone; JSON bodies only (415); a file given with
# -m in a cache's layout never deleted; pulls bounded by --pull-max-bytes / --pull-min-free;
# eviction under a small --memory-budget with the process's RSS checked against a server without
# the budget (which holds both models); a busy model keeping the other out (503 after
# --load-timeout in each API's shape); the registry under churn (24 clients over two models with
# --max-loaded 1, unloads, deletes and pulls, then SIGTERM in the middle of it:
# tests/server/models_churn.py).
set -u
LFM2C=$(realpath "$1")
cd "$(dirname "$0")"
KEY=models-key-1
tmp=$(mktemp -d)
source ./serve_lib.sh
serve_logs "$tmp"
trap 'serve_cleanup "$tmp"' EXIT
SERVE_ARGS=(-t 1)
for tool in node curl python3; do
  command -v $tool >/dev/null || { echo "FAIL $tool is not installed (scripts/setup.sh)"; echo "0 passed, 1 failed"; exit 1; }
done
bash ./npm_deps.sh server ollama openai @anthropic-ai/sdk || { echo "0 passed, 1 failed"; exit 1; }

api() { curl -s -m 60 -o "$tmp/body" -w '%{http_code}' -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' "$@"; }
rss() { awk '/^VmRSS:/ {print $2 * 1024}' /proc/$1/status; }

# the models: two distinct fixtures and a truncated copy of one (its header reads, its weights do not)
cp data/lfm2-tiny-dense-q8_0.gguf "$tmp/alpha-Q8_0.gguf"
cp data/lfm2-tiny-moe-q8_0.gguf "$tmp/beta-Q8_0.gguf"
head -c 600000 data/lfm2-tiny-moe-q8_0.gguf >"$tmp/broken-Q8_0.gguf"
export HF_HOME="$tmp/hf" LFM2C_HUB_BACKOFF_MS=50 LFM2C_HUB_RETRIES=2
unset HF_TOKEN HF_HUB_CACHE HF_HUB_OFFLINE OLLAMA_HOST LFM2C_HOST LFM2C_API_KEY
REPO=
if "$LFM2C" --version | grep -q "hub (pull, -hf): yes"; then
  mkdir -p "$tmp/hubstate"
  python3 hub/fake_hub.py "$tmp/hubport" "$tmp/hubstate" & PIDS+=($!)
  for _ in $(seq 100); do [ -s "$tmp/hubport" ] && break; sleep 0.05; done
  if [ -s "$tmp/hubport" ]; then export HF_ENDPOINT="http://127.0.0.1:$(cat "$tmp/hubport")"; REPO=test/tiny-GGUF
  else bad "the Hub imitation did not start"; fi
else
  echo "(built without libcurl: the pulls are left out)"
fi

# ---- the clients against one server of three files and the cache ------------------------------
if start_server main -m "$tmp/alpha-Q8_0.gguf" -m "$tmp/beta-Q8_0.gguf" -m "$tmp/broken-Q8_0.gguf" --models \
     -np 2 -c 512 --api-key $KEY --metrics; then
  out=$(cd server && timeout 300 node models.mjs "http://127.0.0.1:$PORT" $KEY alpha-Q8_0.gguf beta-Q8_0.gguf \
        broken-Q8_0.gguf $REPO 2>&1)
  echo "$out" | grep -v '^[0-9]* passed' >&2
  tally models.mjs "$out"
  check "the log says what was loaded and unloaded" 'grep -q "loaded model beta-Q8_0.gguf" "$tmp/main.err" && grep -q "unloaded model beta-Q8_0.gguf (keep_alive 0)" "$tmp/main.err"'

  # lfm2c ps / lfm2c stop, as ollama ps / ollama stop
  api -d '{"model":"beta-Q8_0.gguf","prompt":""}' "http://127.0.0.1:$PORT/api/generate" >/dev/null
  "$LFM2C" ps --port $PORT --api-key $KEY >"$tmp/ps" 2>"$tmp/ps.err"; rc=$?
  check "lfm2c ps: a table of the loaded models" '[ $rc = 0 ] && head -1 "$tmp/ps" | grep -q "^NAME.*SIZE.*PROCESSOR.*UNTIL" && grep -q "^alpha-Q8_0.gguf:latest .*100% CPU" "$tmp/ps" && grep -q "^beta-Q8_0.gguf:latest .*minutes from now" "$tmp/ps"'
  OLLAMA_HOST="http://127.0.0.1:$PORT" LFM2C_API_KEY=$KEY "$LFM2C" ps >"$tmp/ps2" 2>&1; rc=$?
  check "lfm2c ps: OLLAMA_HOST and LFM2C_API_KEY" '[ $rc = 0 ] && grep -q "^beta-Q8_0.gguf" "$tmp/ps2"'
  "$LFM2C" stop beta-Q8_0.gguf --host "127.0.0.1:$PORT" --api-key $KEY >"$tmp/stop" 2>&1; rc=$?
  "$LFM2C" ps --port $PORT --api-key $KEY >"$tmp/ps3" 2>&1
  check "lfm2c stop: unloaded" '[ $rc = 0 ] && ! grep -q "^beta" "$tmp/ps3" && grep -q "^alpha" "$tmp/ps3"'
  "$LFM2C" stop nope --port $PORT --api-key $KEY >/dev/null 2>"$tmp/stop.err"; rc=$?
  check "lfm2c stop: an unknown model" '[ $rc = 1 ] && grep -q "404: model \"nope\" not found" "$tmp/stop.err"'
  "$LFM2C" ps --port $PORT >/dev/null 2>"$tmp/ps.err"; rc=$?
  check "lfm2c ps without the key: 401" '[ $rc = 1 ] && grep -q "401" "$tmp/ps.err"'
  code=$(curl -s -o "$tmp/body" -w '%{http_code}' -X DELETE -d '{"model":"alpha-Q8_0.gguf"}' "http://127.0.0.1:$PORT/api/delete")
  check "/api/delete needs the key" '[ "$code" = 401 ]'
  stop_server
fi
"$LFM2C" ps --port 9 >/dev/null 2>"$tmp/ps.err"; rc=$?
check "lfm2c ps: no server" '[ $rc = 1 ] && grep -q "cannot reach a server at 127.0.0.1:9" "$tmp/ps.err"'

# ---- pulls refused: --no-pull, --offline -------------------------------------------------------
for flag in --no-pull --offline; do
  if start_server refuse -m "$tmp/alpha-Q8_0.gguf" $flag; then
    code=$(curl -s -o "$tmp/body" -w '%{http_code}' -H 'Content-Type: application/json' -d '{"model":"test/tiny-GGUF:Q4_0"}' "http://127.0.0.1:$PORT/api/pull")
    check "$flag: /api/pull refused naming it" '[ "$code" = 403 ] || [ "$code" = 501 ]; grep -q -- "$flag\|libcurl" "$tmp/body"'
    stop_server
  fi
done

# ---- lfm2c serve with an empty cache: says how to pull one; pulls through the API fill it ------
HF_HOME="$tmp/hf-empty" timeout 30 "$LFM2C" serve --port 0 --no-pull >/dev/null 2>"$tmp/e1"; rc=$?
check "no model, no pulls: exits saying how to pull one" '[ $rc = 1 ] && grep -q "lfm2c pull LiquidAI/LFM2-1.2B-GGUF" "$tmp/e1"'
if HF_HOME="$tmp/hf-empty" start_server empty --api-key $KEY; then
  check "no model: starts, saying how to pull one" 'grep -q "no models yet.*lfm2c pull" "$tmp/empty.err"'
  code=$(api -d '{"messages":[{"role":"user","content":"hi"}]}' "http://127.0.0.1:$PORT/v1/chat/completions")
  check "no model: a chat is a 404 naming no model" '[ "$code" = 404 ] && grep -q "no model" "$tmp/body"'
  if [ -n "$REPO" ]; then
    code=$(api -d "{\"model\":\"$REPO:Q4_0\",\"stream\":false}" "http://127.0.0.1:$PORT/api/pull")
    code2=$(api -d "{\"model\":\"$REPO:Q4_0\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":false}" "http://127.0.0.1:$PORT/api/chat")
    check "then a pull through the API, and it serves" '[ "$code" = 200 ] && [ "$code2" = 200 ] && grep -q "\"done\":true" "$tmp/body"'
  fi
  stop_server
fi

# ---- web pages against a server without a key: its Host (DNS rebinding) and Origin (cross-site
# posts), a body's type; files given with -m never deleted; pulls bounded -----------------------
# a cache of one model (its blob and the snapshot's link, as huggingface_hub lays them out), and a
# file given with -m that sits in a cache's layout elsewhere
hfw="$tmp/hf-web"; snap="$hfw/hub/models--org--web/snapshots/c1"; blob="$hfw/hub/models--org--web/blobs/aaaa"
given="$tmp/elsewhere/models--org--given/snapshots/c1"
mkdir -p "$hfw/hub/models--org--web/blobs" "$snap" "$given"
cp data/lfm2-tiny-dense-q8_0.gguf "$blob"
ln -s ../../blobs/aaaa "$snap/web-Q8_0.gguf"
cp data/lfm2-tiny-moe-q8_0.gguf "$given/given-Q8_0.gguf"
# raw METHOD PATH BODY [curl args...]: the status; the answer in $tmp/body
raw() {
  local m=$1 p=$2 b=$3; shift 3
  curl -s -m 60 -o "$tmp/body" -w '%{http_code}' -X "$m" "$@" ${b:+--data-binary "$b"} "http://127.0.0.1:$PORT$p"
}
J=(-H 'Content-Type: application/json')
chat='{"model":"org/web:Q8_0","messages":[{"role":"user","content":"hi"}],"max_tokens":2}'
if HF_HOME="$hfw" start_server web -m "$given/given-Q8_0.gguf" --models -c 256 --allowed-hosts my.box,.lan \
     --pull-max-bytes 1000; then
  for h in "localhost:$PORT" "127.0.0.1:$PORT" "[::1]:$PORT" "LOCALHOST:$PORT" localhost. 127.0.0.1 "my.box:$PORT" \
           x.lan lan; do
    check "Host $h is answered" '[ "$(raw GET /api/tags "" -H "Host: $h")" = 200 ]'
  done
  for h in "evil.example:$PORT" evil.example 127.0.0.1.evil.example localhost.evil.example "127.0.0.2:$PORT" "[::2]" \
           my.box.evil xlan "localhost:x"; do
    check "Host $h is refused (403)" '[ "$(raw GET /api/tags "" -H "Host: $h")" = 403 ] && grep -q "allowed-hosts" "$tmp/body"'
  done
  check "a public route answers any Host" '[ "$(raw GET /health "" -H "Host: evil.example")" = 200 ]'
  check "DNS rebinding: DELETE /api/delete naming another Host is 403, the model stays" \
    '[ "$(raw DELETE /api/delete "{\"model\":\"org/web:Q8_0\"}" "${J[@]}" -H "Host: evil.example:$PORT")" = 403 ] && [ -e "$blob" ]'
  check "DNS rebinding: a chat naming another Host is 403" \
    '[ "$(raw POST /v1/chat/completions "$chat" "${J[@]}" -H "Host: evil.example:$PORT")" = 403 ]'
  check "a cross-site text/plain form post to /api/pull is 403" \
    '[ "$(raw POST /api/pull "{\"model\":\"test/tiny-GGUF:Q4_0\",\"stream\":false}" -H "Content-Type: text/plain" -H "Origin: http://evil.example")" = 403 ] && grep -q "origin" "$tmp/body"'
  check "a cross-site JSON post to a chat route is 403" \
    '[ "$(raw POST /v1/chat/completions "$chat" "${J[@]}" -H "Origin: http://evil.example")" = 403 ]'
  check "a DELETE from another origin (another local port) is 403, the model stays" \
    '[ "$(raw DELETE /api/delete "{\"model\":\"org/web:Q8_0\"}" "${J[@]}" -H "Origin: http://127.0.0.1:1")" = 403 ] && [ -e "$blob" ]'
  check "a post from the server's own page (same origin) is answered" \
    '[ "$(raw POST /v1/chat/completions "$chat" "${J[@]}" -H "Origin: http://127.0.0.1:$PORT")" = 200 ]'
  check "a GET from another origin is answered (reading it is for CORS to allow)" \
    '[ "$(raw GET /api/tags "" -H "Origin: http://evil.example")" = 200 ]'
  check "text/plain from the server's own origin is 415" \
    '[ "$(raw POST /v1/chat/completions "$chat" -H "Content-Type: text/plain" -H "Origin: http://127.0.0.1:$PORT")" = 415 ]'
  check "curl -d's form type is 415, saying what to send" \
    '[ "$(raw POST /v1/chat/completions "$chat" -H "Content-Type: application/x-www-form-urlencoded")" = 415 ] && grep -q "Content-Type: application/json" "$tmp/body"'
  check "no Content-Type is 415" '[ "$(raw POST /api/show "{\"model\":\"org/web:Q8_0\"}" -H "Content-Type:")" = 415 ]'
  check "application/json; charset=utf-8 is JSON" \
    '[ "$(raw POST /api/show "{\"model\":\"org/web:Q8_0\"}" -H "Content-Type: application/json; charset=utf-8")" = 200 ]'
  check "a -m file in a cache's layout is not deleted (400)" \
    '[ "$(raw DELETE /api/delete "{\"model\":\"org/given:Q8_0\"}" "${J[@]}")" = 400 ] && grep -q "not deleted" "$tmp/body" && [ -e "$given/given-Q8_0.gguf" ]'
  check "... nor by its file name" \
    '[ "$(raw DELETE /api/delete "{\"model\":\"given-Q8_0.gguf\"}" "${J[@]}")" = 400 ] && [ -e "$given/given-Q8_0.gguf" ]'
  if [ -n "$REPO" ]; then
    check "a pull over --pull-max-bytes is 507 naming it, nothing written" \
      '[ "$(raw POST /api/pull "{\"model\":\"$REPO:Q4_0\",\"stream\":false}" "${J[@]}")" = 507 ] && grep -q "pull-max-bytes" "$tmp/body" && [ -z "$(ls "$hfw/hub/models--test--tiny-GGUF/blobs" 2>/dev/null)" ]'
  fi
  check "a model of the cache is deleted" \
    '[ "$(raw DELETE /api/delete "{\"model\":\"org/web:Q8_0\"}" "${J[@]}")" = 200 ] && [ ! -e "$blob" ]'
  stop_server
fi
if start_server webkey -m "$tmp/alpha-Q8_0.gguf" --api-key $KEY --pull-min-free 1000000G; then
  K=(-H "Authorization: Bearer $KEY")
  check "with a key, the key is the gate: another Host is answered" \
    '[ "$(raw GET /api/tags "" "${K[@]}" -H "Host: evil.example")" = 200 ]'
  check "with a key, a post from another origin that has the key is answered" \
    '[ "$(raw POST /api/show "{\"model\":\"alpha-Q8_0.gguf\"}" "${K[@]}" "${J[@]}" -H "Origin: http://evil.example")" = 200 ]'
  check "with a key, a body must still be JSON (415)" \
    '[ "$(raw POST /api/show "{\"model\":\"alpha-Q8_0.gguf\"}" "${K[@]}" -H "Content-Type: text/plain")" = 415 ]'
  check "with a key, no key is 401 before the type" \
    '[ "$(raw POST /api/show "{\"model\":\"alpha-Q8_0.gguf\"}" -H "Content-Type: text/plain")" = 401 ]'
  if [ -n "$REPO" ]; then
    check "a pull that would leave less than --pull-min-free is 507" \
      '[ "$(raw POST /api/pull "{\"model\":\"$REPO:Q8_0\",\"stream\":false}" "${K[@]}" "${J[@]}")" = 507 ] && grep -q "free on the cache" "$tmp/body"'
  fi
  stop_server
fi
"$LFM2C" serve -m "$tmp/alpha-Q8_0.gguf" --port 0 --pull-max-bytes 10% >/dev/null 2>"$tmp/pmb"; rc=$?
check "--pull-max-bytes takes bytes" '[ $rc = 2 ] && grep -q "pull-max-bytes takes bytes" "$tmp/pmb"'

# ---- eviction under a memory budget: the process holds one model, not two -----------------------
if "$LFM2C" synth --preset lfm2-350m --type F16 --layers 3 --vocab 8192 -o "$tmp/big-a.gguf" >/dev/null 2>&1; then
  cp "$tmp/big-a.gguf" "$tmp/big-b.gguf"
  size=$(stat -c %s "$tmp/big-a.gguf")
  ask() { api -d "{\"model\":\"$1\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2}" "http://127.0.0.1:$PORT/v1/chat/completions" >/dev/null; }
  # RSS is the gauge in a plain build only: a sanitizer build's allocator keeps freed blocks in
  # quarantine and hands them out again, so a second model may grow RSS by a few MB there (seen in
  # CI: +12 MB for a 119 MB model); the registry's counts are checked in every build.
  san=; nm "$LFM2C" 2>/dev/null | grep -q __asan_init && san=1 && echo "sanitized build: RSS not compared, counts only"
  for budget in $((size * 3 / 2)) 0; do
    args=(-m "$tmp/big-a.gguf" -m "$tmp/big-b.gguf" -np 1 -c 256 --api-key $KEY)
    [ $budget = 0 ] || args+=(--memory-budget $budget)
    start_server evict "${args[@]}" || continue
    ask big-a.gguf; r0=$(rss $PID)
    ask big-b.gguf; r1=$(rss $PID); n1=$(api "http://127.0.0.1:$PORT/api/ps" >/dev/null; grep -o '"name":' "$tmp/body" | wc -l)
    ask big-a.gguf; r2=$(rss $PID); n2=$(api "http://127.0.0.1:$PORT/api/ps" >/dev/null; grep -o '"name":' "$tmp/body" | wc -l)
    grow1=$(( (r1 - r0) >> 20 )) grow2=$(( (r2 - r0) >> 20 )) mb=$((size >> 20))
    if [ $budget != 0 ]; then
      echo "budget $((budget >> 20)) MB, models of $mb MB: RSS +$grow1 MB after the second, +$grow2 MB after the first again"
      check "budget: one model loaded at a time ($n1, $n2)" '[ $n1 = 1 ] && [ $n2 = 1 ]'
      [ -n "$san" ] || check "budget: RSS holds one model (+$grow1 / +$grow2 MB, models of $mb MB)" '[ $((r1 - r0)) -lt $((size / 2)) ] && [ $((r2 - r0)) -lt $((size / 2)) ]'
      check "budget: the evictions logged" 'grep -q "unloaded model big-a.gguf (to make room for big-b.gguf)" "$tmp/evict.err"'
    else
      echo "no budget: RSS +$grow1 MB after the second model"
      check "no budget: both loaded ($n1)" '[ $n1 = 2 ]'
      [ -n "$san" ] || check "no budget: RSS holds both (+$grow1 MB)" '[ $((r1 - r0)) -gt $((size * 8 / 10)) ]'
    fi
    stop_server
  done
  # a busy model keeps the other out: 503 after --load-timeout in each API's shape, then it loads
  if start_server busy -m "$tmp/big-a.gguf" -m "$tmp/big-b.gguf" --max-loaded 1 --load-timeout 1 --test-script \
       -np 1 -c 4096 --api-key $KEY; then
    out=$(cd server && timeout 120 python3 models_churn.py busy $PORT $KEY big-a.gguf big-b.gguf 2>&1)
    echo "$out" | grep -v '^[0-9]* passed' >&2
    tally "models_churn.py busy" "$out"
    stop_server
  fi
else
  bad "synth of the eviction test's models"
fi

# ---- churn: 24 clients over two models with --max-loaded 1, unloads, deletes and pulls, then
# SIGTERM in the middle of it (tests/server/models_churn.py; the registry once deadlocked here)
if start_server churn -m "$tmp/alpha-Q8_0.gguf" -m "$tmp/beta-Q8_0.gguf" --models --max-loaded 1 -np 2 -c 256 \
     --api-key $KEY --load-timeout 20; then
  out=$(cd server && timeout 180 python3 models_churn.py $PORT $KEY $PID alpha-Q8_0.gguf beta-Q8_0.gguf \
        ${REPO:+$REPO:Q4_0} 2>&1)
  echo "$out" | grep -v '^[0-9]* passed' >&2
  tally models_churn.py "$out"
  wait "$PID"; rc=$?
  check "churn: the server exits 0 after SIGTERM ($rc), not by its watchdog" '[ $rc = 0 ] && ! grep -q "took too long" "$tmp/churn.err"'
  check "churn: evictions logged" 'grep -q "to make room for" "$tmp/churn.err"'
fi

echo "$pass passed, $fail failed"
[ $fail = 0 ]
