#!/usr/bin/env bash
# test_image_urls.sh LFM2C — `serve --allow-image-urls`: an http(s) image URL in a chat request is
# fetched (tests/vision/image_host.py on 127.0.0.1 serves it) and answers as the same image sent
# inline; where it may connect: public addresses only, so loopback by IP, by name, in its decimal,
# hex, octal and short forms, 0.0.0.0, [::1], [::ffff:127.0.0.1], link-local (the cloud metadata
# address), private and unique-local addresses are refused before any connection (the host sees
# no request), and with --allow-private-image-urls 127.0.0.1 a redirect from there into another
# loopback address (127.0.0.2, [::1]) is refused at that hop (the check is of every connection;
# "all" fetches it); the bounds: the byte limit (a Content-Length over it, a body without one that
# passes it), a 404, a slow server past --image-url-timeout, redirects (3 followed, a 4th refused,
# one to file:// or ftp:// refused), a URL's credentials kept out of the answer and the log. Every
# failed fetch answers the same 400, naming no status, address or port; the log says why. Without
# the flag every http(s) URL is a 400. Nothing here leaves the machine.
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
python3 vision/image_host.py "$tmp/hport" "$img" "$tmp/hits" & pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/hport" ] && break; sleep 0.05; done
[ -s "$tmp/hport" ] || { echo "FAIL: the image host did not start"; exit 1; }
P=$(cat "$tmp/hport")
H="http://127.0.0.1:$P"
touch "$tmp/hits"

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

srv=plain; start plain
refused "no flag: an http URL" "$H/img.png" 400 "not fetched.*--allow-image-urls"
refused "no flag: an https URL" "https://127.0.0.1:1/x.png" 400 "not fetched"
[ "$(ask "data:image/png;base64,$(base64 -w0 $img)")" = 200 ] && ok || bad "inline image: $(cat "$tmp/body")"
inline=$(answer)
[ -n "$inline" ] && ok || bad "no inline answer"

GENERIC="the image URL could not be fetched"
# failed NAME URL LOGPATTERN: the generic 400 (no status, address, port or reason in it), and the
# server's log (of the server started last) says why
failed() {
  local s n0 n1; n0=$(grep -c "image URL not fetched: .*$3" "$tmp/$srv.err")
  s=$(ask "$2")
  n1=$(grep -c "image URL not fetched: .*$3" "$tmp/$srv.err")
  if [ "$s" = 400 ] && grep -q "$GENERIC" "$tmp/body" &&
     ! grep -Eqi "404|http [0-9]|redirect|refused|took|connect|loopback|private|127\.|::1|:$P|limit|byte" "$tmp/body" &&
     [ "$n1" -gt "$n0" ]; then ok; else bad "$1: $s $(cat "$tmp/body"); log: $(grep "image URL" "$tmp/$srv.err" | tail -1)"; fi
}
# refused_addr NAME URL CLASS: failed, the log naming the address's class, and no request reached the host
refused_addr() {
  local h0; h0=$(wc -l <"$tmp/hits")
  failed "$1" "$2" "is $3.*--allow-private-image-urls"
  [ "$(wc -l <"$tmp/hits")" = "$h0" ] && ok || bad "$1: the image host was asked: $(tail -1 "$tmp/hits")"
}

srv=public; start public --allow-image-urls --image-url-timeout 2
refused_addr "127.0.0.1" "$H/img.png" loopback
refused_addr "localhost" "http://localhost:$P/img.png" loopback
refused_addr "decimal 2130706433" "http://2130706433:$P/img.png" loopback
refused_addr "hex 0x7f000001" "http://0x7f000001:$P/img.png" loopback
refused_addr "octal 0177.0.0.1" "http://0177.0.0.1:$P/img.png" loopback
refused_addr "short 127.1" "http://127.1:$P/img.png" loopback
refused_addr "0.0.0.0" "http://0.0.0.0:$P/img.png" unspecified
refused_addr "[::1]" "http://[::1]:$P/img.png" loopback
refused_addr "[::ffff:127.0.0.1]" "http://[::ffff:127.0.0.1]:$P/img.png" loopback
refused_addr "127.0.0.2" "http://127.0.0.2:$P/img.png" loopback
refused_addr "https to loopback" "https://127.0.0.1:$P/img.png" loopback
refused_addr "the cloud metadata address" "http://169.254.169.254/latest/meta-data/" link-local
refused_addr "private 10/8" "http://10.1.2.3/x.png" private
refused_addr "private 192.168/16" "http://192.168.0.1:8080/x.png" private
refused_addr "unique local" "http://[fd00::1]/x.png" "unique local"
refused_addr "a redirect's first hop is judged too" "$H/to2" loopback
stop_server_last() { kill "${pids[-1]}" 2>/dev/null; wait "${pids[-1]}" 2>/dev/null; }
stop_server_last

# loopback 127.0.0.1 allowed (the image host is there): the bounds, and every redirect judged
srv=urls; start urls --allow-image-urls --allow-private-image-urls 127.0.0.1 --image-url-timeout 2
[ "$(ask "$H/img.png")" = 200 ] && [ "$(answer)" = "$inline" ] && ok || bad "fetched: $(cat "$tmp/body") vs '$inline'"
[ "$(ask "$H/r1")" = 200 ] && [ "$(answer)" = "$inline" ] && ok || bad "3 redirects: $(cat "$tmp/body")"
[ "$(ask "http://[::ffff:127.0.0.1]:$P/img.png")" = 200 ] && ok || bad "127.0.0.1's mapped form: $(cat "$tmp/body")"
h0=$(grep -c '^127.0.0.2 ' "$tmp/hits")
failed "a redirect into 127.0.0.2" "$H/to2" "127.0.0.2 is loopback"
[ "$(grep -c '^127.0.0.2 ' "$tmp/hits")" = "$h0" ] && ok || bad "the redirect's target was asked"
failed "a redirect into [::1]" "$H/to6" "::1 is loopback"
failed "4 redirects" "$H/r0" "redirects more than 3"
failed "a redirect to file://" "$H/tofile" "only http and https"
failed "a redirect to ftp://" "$H/toftp" "only http and https"
refused "file:// itself" "file:///etc/passwd" 400 "base64 data URL"
failed "404" "$H/missing" "HTTP 404"
failed "a Content-Length over the limit" "$H/big" "over the limit"
failed "a body over the limit, no Content-Length" "$H/big-unsized" "over the limit"
t0=$(date +%s%N)
failed "slow" "$H/slow" "took over 2 s"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ $ms -lt 8000 ] && ok || bad "the slow URL took $ms ms"
failed "nothing listening" "http://127.0.0.1:9/x.png" "cannot fetch"
failed "credentials" "http://user:s3cret@127.0.0.1:$P/missing" "HTTP 404"
grep -q s3cret "$tmp/body" "$tmp/urls.err" "$tmp/urls.out" && bad "the URL's password in the answer or the log" || ok
# the server still answers after all that
[ "$(ask "$H/img.png")" = 200 ] && ok || bad "after the faults: $(cat "$tmp/body")"
stop_server_last

# every address allowed: the same redirect into 127.0.0.2 is fetched
if [ -s "$tmp/hport.2" ]; then
  srv=all; start all --allow-image-urls --allow-private-image-urls all
  [ "$(ask "$H/to2")" = 200 ] && [ "$(answer)" = "$inline" ] && ok || bad "all: the redirect into 127.0.0.2: $(cat "$tmp/body")"
  stop_server_last
fi
"$bin" serve -m data/vision/lfm2-vl-tiny-f32.gguf --port 0 --allow-image-urls --allow-private-image-urls 10.0.0.0/33 \
  >/dev/null 2>"$tmp/badnets"
[ $? = 2 ] && grep -q "not a network" "$tmp/badnets" && ok || bad "a bad network: $(cat "$tmp/badnets")"
"$bin" serve -m data/vision/lfm2-vl-tiny-f32.gguf --port 0 --allow-private-image-urls all >/dev/null 2>"$tmp/nourls"
[ $? = 2 ] && grep -q "allow-image-urls" "$tmp/nourls" && ok || bad "without --allow-image-urls: $(cat "$tmp/nourls")"

echo "image urls: $pass passed, $fail failed"
[ $fail -eq 0 ]
