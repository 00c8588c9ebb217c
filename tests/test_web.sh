#!/usr/bin/env bash
# test_web.sh LFM2C — the chat page at "/" of `lfm2c serve`: served from the binary without the API
# key, then driven in headless Chromium (tests/web/chat_page.mjs, puppeteer-core) against the real
# server on loopback with --api-key and two models (the picker), and against a second server whose
# first model hears (the tiny LFM2-Audio model and its audio mmproj, written by synth here) and whose
# second does not: attachments, the microphone, input_audio; then against a server without a
# key (tests/web/no_key.mjs): the page's own posts are answered, another origin's form post is 403.
# Screenshots: <build dir>/web-screenshots/*.png.
set -u
bin=$1; here=$(cd "$(dirname "$0")" && pwd)
pass=0; fail=0
ok()  { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
chromium=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
for tool in node npm curl; do
  command -v $tool >/dev/null || { echo "FAIL $tool is not installed (scripts/setup.sh)"; echo "0 passed, 1 failed"; exit 1; }
done
[ -n "$chromium" ] || { echo "FAIL chromium is not installed (scripts/setup.sh installs Debian's chromium)"; echo "0 passed, 1 failed"; exit 1; }
if [ ! -d "$here/web/node_modules/puppeteer-core" ]; then
  (cd "$here/web" && timeout 300 npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1) ||
    { echo "FAIL npm ci of puppeteer-core"; echo "0 passed, 1 failed"; exit 1; }
fi
tmp=$(mktemp -d); pid=; apid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; [ -n "$apid" ] && kill $apid 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
# listen OUT PID: the port a server started with --port 0 prints to OUT, once it answers /ready ("" if it died)
listen() {
  local port=
  for _ in $(seq 200); do
    [ -f "$1" ] && port=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$1"); [ -n "$port" ] && break
    kill -0 "$2" 2>/dev/null || break; sleep 0.1
  done
  [ -n "$port" ] && for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
  echo "$port"
}
shots="$(cd "$(dirname "$bin")" && pwd)/web-screenshots"; mkdir -p "$shots"
# the server that hears (no key): the audio model first (-mm is the first model's), a text model second
"$bin" synth --preset lfm2-audio-tiny --type f32 -o "$tmp/au.gguf" --mmproj "$tmp/au-mm.gguf" --mmproj-type q8_0 >/dev/null ||
  { echo "FAIL synth of the tiny audio model"; echo "0 passed, 1 failed"; exit 1; }
"$bin" serve -m "$tmp/au.gguf" -mm "$tmp/au-mm.gguf" --alias au -m "$here/data/lfm2-tiny-dense-q8_0.gguf" -t 1 -np 1 \
  -c 1024 --host 127.0.0.1 --port 0 >"$tmp/out3" 2>"$tmp/err3" & apid=$!
"$bin" serve -m "$here/data/lfm2-kq-moe-q4_k_m.gguf" -m "$here/data/lfm2-tiny-dense-q8_0.gguf" -t 1 -np 2 -c 2048 --host 127.0.0.1 --port 0 \
  --api-key sekrit >"$tmp/out" 2>"$tmp/err" & pid=$!
port=$(listen "$tmp/out" $pid)
[ -n "$port" ] || { echo "FAIL the server did not start: $(cat "$tmp/err")"; echo "0 passed, 1 failed"; exit 1; }
# the page is public (it asks for the key itself); the API is not
code=$(curl -s -o "$tmp/page" -w '%{http_code} %{content_type}' "http://127.0.0.1:$port/")
[ "$code" = "200 text/html; charset=utf-8" ] && grep -q "<title>lfm2c chat</title>" "$tmp/page" && ok || bad "GET / answered $code"
cmp -s "$tmp/page" "$here/../web/index.html" && ok || bad "GET / is not web/index.html"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/models")" = 401 ] && ok || bad "/v1/models without the key"
grep -q "https\?://[a-z]" <(grep -o 'src="[^"]*"\|href="http[^"]*"' "$tmp/page") && bad "the page loads something from the network" || ok
aport=$(listen "$tmp/out3" $apid)
[ -n "$aport" ] || { echo "FAIL the audio server did not start: $(cat "$tmp/err3")"; echo "0 passed, 1 failed"; exit 1; }
# the page's policy: its own inline script and its capture worklet (blob:), data: images and clips
csp=$(curl -s -D - -o /dev/null "http://127.0.0.1:$port/" | tr -d '\r' | sed -n 's/^Content-Security-Policy: //Ip')
case "$csp" in *"default-src 'self'"*"script-src 'unsafe-inline' blob:"*"media-src 'self' data:"*) ok ;; *) bad "the page's policy: $csp" ;; esac
CHROMIUM=$chromium timeout 150 node "$here/web/chat_page.mjs" "http://127.0.0.1:$port/" "$shots" sekrit \
  "http://127.0.0.1:$aport/" > "$tmp/browser" 2>&1
cat "$tmp/browser"
p=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$tmp/browser"); f=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$tmp/browser")
[ -n "$p" ] || { bad "the browser test did not finish"; f=0; p=0; }
pass=$((pass + p)); fail=$((fail + f))
kill $pid $apid 2>/dev/null; wait $pid $apid 2>/dev/null; apid=
# without a key: the server's own page works, other origins' posts do not
"$bin" serve -m "$here/data/lfm2-tiny-dense-q8_0.gguf" -t 1 -np 1 -c 512 --host 127.0.0.1 --port 0 \
  >"$tmp/out2" 2>"$tmp/err2" & pid=$!
port=$(listen "$tmp/out2" $pid)
if [ -n "$port" ]; then
  CHROMIUM=$chromium timeout 120 node "$here/web/no_key.mjs" "http://127.0.0.1:$port/" > "$tmp/browser2" 2>&1
  cat "$tmp/browser2"
  p=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$tmp/browser2"); f=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$tmp/browser2")
  [ -n "$p" ] || { bad "the browser test without a key did not finish"; f=0; p=0; }
  pass=$((pass + p)); fail=$((fail + f))
else
  bad "the server without a key did not start: $(cat "$tmp/err2")"
fi
echo "web: $pass passed, $fail failed (screenshots in $shots)"
[ $fail -eq 0 ]
