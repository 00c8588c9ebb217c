#!/usr/bin/env bash
# test_image_urls.sh LFM2C — `serve --allow-image-urls`: an http(s) image URL in a chat request is
# fetched (tests/vision/image_host.py on 127.0.0.1 serves it) and answers as the same image sent
# inline; the bounds: the byte limit (a Content-Length over it, a body without one that passes
# it: 413), a 404, a slow server past --image-url-timeout, redirects (3 followed, a 4th refused,
# one to file:// or ftp:// refused), a URL's credentials kept out of the answer and the log;
# without the flag every http(s) URL is a 400. Nothing here leaves the machine.
set -u
bin=$1; pass=0; fail=0
ok()   { pass=$((pass+1)); }
bad()  { fail=$((fail+1)); echo "FAIL: $*"; }
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT
if ! "$bin" --version | grep -q "hub (pull, -hf): yes"; then
  echo "SKIP: built without libcurl"; exit 0
fi
img=data/vision/images/rgb.png
python3 vision/image_host.py "$tmp/hport" "$img" & pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/hport" ] && break; sleep 0.05; done
[ -s "$tmp/hport" ] || { echo "FAIL: the image host did not start"; exit 1; }
H="http://127.0.0.1:$(cat "$tmp/hport")"

# start NAME ARGS...: a VL server; its port in $port
start() {
  local name=$1; shift
  "$bin" serve -m data/vision/lfm2-vl-tiny-f32.gguf -mm data/vision/mmproj-tiny-f32.gguf --alias vl -c 1024 \
    --host 127.0.0.1 --port 0 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" & pids+=($!)
  port=
  for _ in $(seq 200); do
    port=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$tmp/$name.out"); [ -n "$port" ] && return 0; sleep 0.05
  done
  echo "FAIL: server $name did not start: $(cat "$tmp/$name.err")"; exit 1
}
# ask URL: the status; the body in $tmp/body
ask() {
  printf '{"model":"vl","max_tokens":6,"temperature":0,"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"%s"}},{"type":"text","text":"what?"}]}]}' "$1" > "$tmp/req"
  curl -s -m 60 -o "$tmp/body" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @"$tmp/req" "http://127.0.0.1:$port/v1/chat/completions"
}
answer() { sed -n 's/.*"content":"\([^"]*\)".*/\1/p' "$tmp/body"; }
# refused NAME URL STATUS PATTERN
refused() {
  local s; s=$(ask "$2")
  [ "$s" = "$3" ] && grep -q "$4" "$tmp/body" && ok || bad "$1: $s $(cat "$tmp/body")"
}

start plain
refused "no flag: an http URL" "$H/img.png" 400 "not fetched.*--allow-image-urls"
refused "no flag: an https URL" "https://127.0.0.1:1/x.png" 400 "not fetched"
[ "$(ask "data:image/png;base64,$(base64 -w0 $img)")" = 200 ] && ok || bad "inline image: $(cat "$tmp/body")"
inline=$(answer)
[ -n "$inline" ] && ok || bad "no inline answer"

start urls --allow-image-urls --image-url-timeout 2
[ "$(ask "$H/img.png")" = 200 ] && [ "$(answer)" = "$inline" ] && ok || bad "fetched: $(cat "$tmp/body") vs '$inline'"
[ "$(ask "$H/r1")" = 200 ] && [ "$(answer)" = "$inline" ] && ok || bad "3 redirects: $(cat "$tmp/body")"
refused "4 redirects" "$H/r0" 400 "redirects more than 3"
refused "a redirect to file://" "$H/tofile" 400 "only http and https"
refused "a redirect to ftp://" "$H/toftp" 400 "only http and https"
refused "file:// itself" "file:///etc/passwd" 400 "base64 data URL"
refused "404" "$H/missing" 400 "HTTP 404"
refused "a Content-Length over the limit" "$H/big" 413 "over the limit"
t0=$(date +%s%N)
refused "a body over the limit, no Content-Length" "$H/big-unsized" 413 "over the limit"
t0=$(date +%s%N)
refused "slow" "$H/slow" 400 "took over 2 s"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ $ms -lt 8000 ] && ok || bad "the slow URL took $ms ms"
refused "nothing listening" "http://127.0.0.1:9/x.png" 400 "cannot fetch"
refused "credentials" "http://user:s3cret@127.0.0.1:$(cat "$tmp/hport")/missing" 400 "HTTP 404"
grep -q s3cret "$tmp/body" "$tmp/urls.err" "$tmp/urls.out" && bad "the URL's password in the answer or the log" || ok
# the server still answers after all that
[ "$(ask "$H/img.png")" = 200 ] && ok || bad "after the faults: $(cat "$tmp/body")"

echo "image urls: $pass passed, $fail failed"
[ $fail -eq 0 ]
