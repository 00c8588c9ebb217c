#!/usr/bin/env bash
# test_pull.sh LFM2C — `lfm2c pull` / list / rm / -hf against an imitation of the Hugging Face Hub
# (tests/hub/fake_hub.py, on 127.0.0.1): redirects to a CDN path, Range resume after a dropped
# connection, a corrupted body, 401 gated, 404 repo / quant, a file-size limit, Ctrl-C, split files,
# the cache layout, --offline, an mmproj beside the model (a vision tower, an audio encoder). Nothing
# here reaches the internet.
set -u
bin=$1; pass=0; fail=0
ok()   { pass=$((pass+1)); }
bad()  { fail=$((fail+1)); echo "FAIL: $*"; }
tmp=$(mktemp -d)
hubpid=
cleanup() { [ -n "$hubpid" ] && kill "$hubpid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
if ! "$bin" --version | grep -q "hub (pull, -hf): yes"; then
  echo "SKIP: built without libcurl"; exit 0
fi
mkdir -p "$tmp/state" "$tmp/audio"
# the tiny LFM2-Audio model and its audio mmproj for the hub's test/audio-GGUF (section 15)
"$bin" synth --preset lfm2-audio-tiny --type f32 -o "$tmp/audio/lm.gguf" --mmproj "$tmp/audio/mm-f16.gguf" >/dev/null &&
  "$bin" synth --preset lfm2-audio-tiny --type f32 -o "$tmp/audio/lm.gguf" --mmproj "$tmp/audio/mm-q8_0.gguf" \
    --mmproj-type q8_0 >/dev/null || { echo "FAIL: synth of the audio model"; exit 1; }
FAKE_HUB_AUDIO="$tmp/audio" python3 hub/fake_hub.py "$tmp/port" "$tmp/state" & hubpid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
[ -s "$tmp/port" ] || { echo "FAIL: the imitation hub did not start"; exit 1; }
export HF_ENDPOINT="http://127.0.0.1:$(cat "$tmp/port")" HF_HOME="$tmp/hf" LFM2C_HUB_BACKOFF_MS=50 LFM2C_HUB_RETRIES=3
unset HF_TOKEN HF_HUB_CACHE HF_HUB_OFFLINE
setmode() { echo "$1" > "$tmp/state/mode"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
rd="$HF_HOME/hub/models--test--tiny-GGUF"

# 1. the default quant (no Q4_K_M here: the nearest, Q4_0), redirect, cache layout
setmode none
p=$("$bin" pull test/tiny-GGUF 2>"$tmp/err") && ok || bad "pull tiny: $(cat "$tmp/err")"
commit=$(cat "$rd/refs/main" 2>/dev/null)
[ "$p" = "$rd/snapshots/$commit/tiny-Q4_0.gguf" ] && ok || bad "pull printed '$p'"
cmp -s "$p" data/lfm2-tiny-dense-q4_0.gguf && ok || bad "pulled file differs from the served one"
want=$(sha data/lfm2-tiny-dense-q4_0.gguf)
# (LFM2C_TEST_WINE=1: lfm2c.exe under Wine, scripts/test_windows.sh: no symbolic links, a hard link)
wine=${LFM2C_TEST_WINE:-0}
if [ "$wine" = 1 ]; then
  [ "$rd/snapshots/$commit/tiny-Q4_0.gguf" -ef "$rd/blobs/$want" ] && ok || bad "snapshot is not a hard link to blobs/<sha256>"
else
  [ "$(readlink "$rd/snapshots/$commit/tiny-Q4_0.gguf")" = "../../blobs/$want" ] && ok || bad "snapshot is not a relative link to blobs/<sha256>"
fi
[ -f "$rd/blobs/$want" ] && [ -z "$(ls "$rd/blobs" | grep incomplete)" ] && ok || bad "blob not published"
grep -q "^/cdn/$want" "$tmp/state/requests.log" && ok || bad "the redirect to the CDN was not followed"
grep -q "done, sha256 verified" "$tmp/err" && ok || bad "no plain progress lines: $(cat "$tmp/err")"
# a second pull is served from the cache (no file request)
: > "$tmp/state/requests.log"
p2=$("$bin" pull test/tiny-GGUF:q4_0 2>"$tmp/err") && [ "$p2" = "$p" ] && ok || bad "second pull: $p2 $(cat "$tmp/err")"
grep -q "/cdn/" "$tmp/state/requests.log" && bad "second pull downloaded again" || ok
grep -q "already in the cache" "$tmp/err" && ok || bad "second pull did not say it was cached"

# 2. -hf on run, and --offline with the hub gone from the address
out=$("$bin" run -hf test/tiny-GGUF:Q4_0 -p "Hello" -n 4 --temp 0 2>"$tmp/err") && [ -n "$out" ] && ok || bad "run -hf: $(cat "$tmp/err")"
ref=$("$bin" run -m data/lfm2-tiny-dense-q4_0.gguf -p "Hello" -n 4 --temp 0 2>/dev/null)
[ "$out" = "$ref" ] && ok || bad "run -hf output differs from run -m"
out=$(HF_ENDPOINT=http://127.0.0.1:9 "$bin" run -hf test/tiny-GGUF --offline -p "Hello" -n 4 --temp 0 2>"$tmp/err") && [ "$out" = "$ref" ] && ok || bad "run --offline: $(cat "$tmp/err")"
# -hfd: the draft model from the Hub (speculative decoding), beside -m or -hf; same greedy output
out=$("$bin" run -m data/lfm2-tiny-dense-q4_0.gguf -hfd test/tiny-GGUF:Q4_0 --draft-p-min 0 -p "Hello" -n 4 --temp 0 -v 2>"$tmp/err") &&
  [ "$out" = "$ref" ] && grep -q "speculative: " "$tmp/err" && ok || bad "run -hfd: $out $(cat "$tmp/err")"
out=$("$bin" run -hf test/tiny-GGUF:Q4_0 -hfd test/tiny-GGUF:Q4_0 --offline -p "Hello" -n 4 --temp 0 2>"$tmp/err") &&
  [ "$out" = "$ref" ] && ok || bad "run -hf -hfd: $(cat "$tmp/err")"
HF_ENDPOINT=http://127.0.0.1:9 "$bin" pull test/tiny-GGUF:Q8_0 --offline >/dev/null 2>"$tmp/err" && bad "offline pull of an uncached quant succeeded" || ok
grep -q "offline" "$tmp/err" && ok || bad "offline message: $(cat "$tmp/err")"
HF_ENDPOINT=http://127.0.0.1:9 "$bin" pull test/nothing-GGUF --offline >/dev/null 2>"$tmp/err" && bad "offline pull of an uncached repo succeeded" || ok

# lfm2c run ORG/NAME[:QUANT] PROMPT (the model first, as ollama run)
out=$("$bin" run test/tiny-GGUF:Q4_0 "Hello" -n 4 --temp 0 --offline 2>"$tmp/err") && [ "$out" = "$ref" ] && ok || bad "run ORG/NAME:QUANT PROMPT: $(cat "$tmp/err")"

# 2a. the Hub unreachable, the model cached: the cache is used at once (no retries, short
# timeouts), and the user is told so and pointed to --offline; an uncached model still fails
t0=$(date +%s%N)
out=$(HF_ENDPOINT=http://127.0.0.1:9 LFM2C_HUB_RETRIES=5 LFM2C_HUB_BACKOFF_MS=1000 "$bin" run -hf test/tiny-GGUF:Q4_0 -p "Hello" -n 4 --temp 0 2>"$tmp/err")
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$out" = "$ref" ] && [ $ms -lt 3000 ] && ok || bad "-hf with the Hub refusing connections did not use the cache at once ($ms ms): $(cat "$tmp/err")"
grep -q "cannot be reached.*cached copy.*--offline" "$tmp/err" && ok || bad "-hf falling back to the cache does not say so: $(cat "$tmp/err")"
# 2a'. no network and nothing cached: the first request is not retried (the default retries and
# backoff would wait 31 s), it fails within the 3 s connect timeout and names --offline; a name
# that does not resolve, and a refused connection
for ep in http://no-hub.invalid http://127.0.0.1:9; do
  t0=$(date +%s%N)
  HF_ENDPOINT=$ep env -u LFM2C_HUB_RETRIES -u LFM2C_HUB_BACKOFF_MS "$bin" run -hf test/nothing-GGUF -p "Hello" -n 4 >/dev/null 2>"$tmp/err"; rc=$?
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  [ $rc = 1 ] && [ $ms -lt 3500 ] && grep -q "cannot be reached.*not in the cache.*--offline" "$tmp/err" && ok ||
    bad "-hf without a network ($ep): rc=$rc in $ms ms: $(cat "$tmp/err")"
done
setmode api-down
t0=$(date +%s%N)
p3=$(LFM2C_HUB_RETRIES=5 LFM2C_HUB_BACKOFF_MS=1000 "$bin" pull test/tiny-GGUF:Q4_0 2>"$tmp/err")
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$p3" = "$p" ] && [ $ms -lt 3000 ] && grep -q "cached copy" "$tmp/err" && ok || bad "pull with the Hub answering 503: $p3 ($ms ms) $(cat "$tmp/err")"
LFM2C_HUB_RETRIES=1 LFM2C_HUB_BACKOFF_MS=50 "$bin" pull test/tiny-GGUF:F32 >/dev/null 2>"$tmp/err" && bad "an uncached quant with the Hub down succeeded" || ok
setmode api-hang
t0=$(date +%s%N)
p3=$("$bin" pull test/tiny-GGUF:Q4_0 2>"$tmp/err")
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$p3" = "$p" ] && [ $ms -lt 15000 ] && ok || bad "pull with the Hub not answering: $p3 ($ms ms) $(cat "$tmp/err")"
setmode none

# 2b. serve and bench take -hf too (offline: from the cache)
"$bin" bench -hf test/tiny-GGUF:Q4_0 --offline -p 8 -n 4 -r 1 -t 1 -o csv >"$tmp/bench" 2>"$tmp/err" && grep -q "tiny-Q4_0.gguf" "$tmp/bench" && ok || bad "bench -hf: $(cat "$tmp/err")"
"$bin" serve -hf test/tiny-GGUF:Q4_0 --offline --host 127.0.0.1 --port 0 >"$tmp/serve" 2>&1 & spid=$!
sport=
for _ in $(seq 300); do sport=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$tmp/serve"); [ -n "$sport" ] && break; sleep 0.1; done
[ -n "$sport" ] && curl -s "http://127.0.0.1:$sport/v1/models" | grep -q "tiny-Q4_0.gguf" && ok || bad "serve -hf: $(cat "$tmp/serve")"
kill $spid 2>/dev/null; wait $spid 2>/dev/null

# 2c. on a terminal the progress is a bar redrawn in place (script(1) gives the command a tty;
# not under Wine, whose console draws the pty itself)
if command -v script >/dev/null && [ "$wine" != 1 ]; then
  "$bin" rm test/tiny-GGUF:F32 >/dev/null 2>&1
  script -qec "'$bin' pull test/tiny-GGUF:F32" /dev/null >"$tmp/tty" 2>&1
  grep -q "\[#*\.*\] *100%" "$tmp/tty" && grep -q $'\r' "$tmp/tty" && ok || bad "no progress bar on a terminal: $(head -c 300 "$tmp/tty")"
fi

# 3. Q4_K_M is the default where it exists; mmproj files are not models; -hff picks a file
p=$("$bin" pull -q test/kq-GGUF 2>"$tmp/err") && [ "${p##*/}" = "kq-Q4_K_M.gguf" ] && ok || bad "default quant: $p $(cat "$tmp/err")"
p=$("$bin" pull -q test/tiny-GGUF -hff tiny-Q8_0.gguf 2>"$tmp/err") && cmp -s "$p" data/lfm2-tiny-dense-q8_0.gguf && ok || bad "-hff: $(cat "$tmp/err")"

# 4. a connection dropped mid-file: retried with a Range request, verified
"$bin" rm test/tiny-GGUF >/dev/null 2>&1
[ -e "$rd/snapshots/$commit/tiny-Q4_0.gguf" ] && bad "rm left the file" || ok
setmode drop; : > "$tmp/state/requests.log"
p=$("$bin" pull test/tiny-GGUF:Q4_0 2>"$tmp/err") && cmp -s "$p" data/lfm2-tiny-dense-q4_0.gguf && ok || bad "pull after a drop: $(cat "$tmp/err")"
grep -q "^/cdn/$want.* bytes=[1-9][0-9]*-" "$tmp/state/requests.log" && ok || bad "no Range request after the drop: $(cat "$tmp/state/requests.log")"
grep -q "resuming a partial download" "$tmp/err" && ok || bad "resume not reported"
cp "$tmp/err" "$tmp/transcript-drop"

# 5. a drop with no retries left: the partial stays, the next pull resumes it
"$bin" rm test/tiny-GGUF:Q4_0 >/dev/null 2>&1
LFM2C_HUB_RETRIES=-1 "$bin" pull test/tiny-GGUF:Q4_0 >/dev/null 2>"$tmp/err" && bad "pull with a drop and no retries succeeded" || ok
[ -s "$rd/blobs/$want.incomplete" ] && ok || bad "no partial file kept after a drop"
grep -q "run the pull again to resume" "$tmp/err" && ok || bad "drop message: $(cat "$tmp/err")"
setmode none
p=$("$bin" pull test/tiny-GGUF:Q4_0 2>"$tmp/err") && cmp -s "$p" data/lfm2-tiny-dense-q4_0.gguf && ok || bad "resume of a kept partial: $(cat "$tmp/err")"
grep -q "resuming" "$tmp/err" && ok || bad "the kept partial was not resumed"

# 6. a 503 once: retried with backoff
setmode 5xx-once
p=$("$bin" pull -q test/kq-GGUF:F16 2>"$tmp/err") && cmp -s "$p" data/lfm2-kq-dense-f16.gguf && ok || bad "pull after a 503: $(cat "$tmp/err")"

# 7. a corrupted body: sha256 mismatch, nothing published, the partial deleted
setmode corrupt
"$bin" pull test/tiny-GGUF:Q8_0 >/dev/null 2>"$tmp/err" && bad "corrupted body accepted" || ok
grep -q "sha256 mismatch" "$tmp/err" && ok || bad "corrupt message: $(cat "$tmp/err")"
w8=$(sha data/lfm2-tiny-dense-q8_0.gguf)
[ ! -e "$rd/blobs/$w8" ] && [ ! -e "$rd/blobs/$w8.incomplete" ] && [ ! -e "$rd/snapshots/$commit/tiny-Q8_0.gguf" ] && ok || bad "a corrupted download was published or kept"
setmode none

# 7b. a body longer than the size the tree announced: stopped there, deleted, nothing published
setmode long
"$bin" pull test/tiny-GGUF:Q8_0 >/dev/null 2>"$tmp/err" && bad "an overlong body was accepted" || ok
grep -q "more than the" "$tmp/err" && [ ! -e "$rd/blobs/$w8" ] && [ ! -e "$rd/blobs/$w8.incomplete" ] && ok || bad "overlong: $(cat "$tmp/err")"
setmode none

# 8. gated: 401 without a token, a clear message; works with HF_TOKEN and --hf-token
"$bin" pull test/gated-GGUF >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -ne 0 ] && grep -q "HF_TOKEN" "$tmp/err" && grep -q "401" "$tmp/err" && ok || bad "gated: rc=$rc $(cat "$tmp/err")"
HF_TOKEN=hf_bad "$bin" pull test/gated-GGUF >/dev/null 2>"$tmp/err" && bad "bad token accepted" || ok
grep -q "refused" "$tmp/err" && ok || bad "bad-token message: $(cat "$tmp/err")"
HF_TOKEN=hf_good "$bin" pull -q test/gated-GGUF >/dev/null 2>"$tmp/err" && ok || bad "HF_TOKEN: $(cat "$tmp/err")"
"$bin" rm test/gated-GGUF >/dev/null 2>&1
"$bin" pull -q test/gated-GGUF --hf-token hf_good >/dev/null 2>"$tmp/err" && ok || bad "--hf-token: $(cat "$tmp/err")"

# 9. 404s: the repo; the quant (the message lists the quants there are); the file; bad names
"$bin" pull test/missing-GGUF >/dev/null 2>"$tmp/err" && bad "missing repo accepted" || ok
grep -q "not found" "$tmp/err" && ok || bad "404 repo message: $(cat "$tmp/err")"
"$bin" pull test/tiny-GGUF:Q6_K >/dev/null 2>"$tmp/err" && bad "missing quant accepted" || ok
grep -q "no Q6_K GGUF; it has: .*Q4_0.*Q8_0.*F32" "$tmp/err" && ok || bad "404 quant message: $(cat "$tmp/err")"
"$bin" pull test/tiny-GGUF -hff nope.gguf >/dev/null 2>"$tmp/err" && bad "missing file accepted" || ok
for spec in "noslash" "../etc/passwd" "a/b/c" "test/tiny-GGUF:Q4 0" "test/tiny-GGUF:"; do
  "$bin" pull "$spec" >/dev/null 2>"$tmp/err" && bad "bad spec '$spec' accepted" || ok
done
"$bin" pull test/tiny-GGUF -hff ../../x.gguf >/dev/null 2>&1 && bad "-hff with .. accepted" || ok
"$bin" pull >/dev/null 2>&1; [ $? = 2 ] && ok || bad "pull without a repo: exit not 2"
"$bin" pull --help | grep -q "usage: lfm2c pull" && ok || bad "pull --help"

# 10. disk full (a 200 KiB file-size limit): a clear error, the partial kept, a later pull resumes
# (the message not under Wine: the limit is a POSIX one, its SIGXFSZ ends the process there)
"$bin" rm test/tiny-GGUF >/dev/null 2>&1
(ulimit -f 200; "$bin" pull test/tiny-GGUF:Q4_0 >/dev/null 2>"$tmp/err") && bad "pull past the size limit succeeded" || ok
[ "$wine" = 1 ] || { grep -q "File too large\|No space left" "$tmp/err" && ok || bad "disk-full message: $(cat "$tmp/err")"; }
[ -s "$rd/blobs/$want.incomplete" ] && [ ! -e "$rd/blobs/$want" ] && ok || bad "disk full: partial not kept or blob published"
p=$("$bin" pull test/tiny-GGUF:Q4_0 2>"$tmp/err") && cmp -s "$p" data/lfm2-tiny-dense-q4_0.gguf && ok || bad "resume after disk full: $(cat "$tmp/err")"

# 11. Ctrl-C mid-download: a resumable partial, nothing published; the next pull resumes
"$bin" rm test/tiny-GGUF >/dev/null 2>&1
setmode slow
"$bin" pull test/tiny-GGUF:Q4_0 >/dev/null 2>"$tmp/err" & pid=$!
for _ in $(seq 100); do [ -s "$rd/blobs/$want.incomplete" ] && break; sleep 0.05; done
sleep 0.2
kill -INT $pid; wait $pid; rc=$?
cp "$tmp/err" "$tmp/err-sigint"
[ $rc -ne 0 ] && grep -q "interrupted" "$tmp/err" && ok || bad "SIGINT: rc=$rc $(cat "$tmp/err")"
part=$(stat -c %s "$rd/blobs/$want.incomplete" 2>/dev/null || echo 0)
[ "$part" -gt 0 ] && [ ! -e "$rd/blobs/$want" ] && ok || bad "SIGINT: no partial ($part) or blob published"
setmode none
p=$("$bin" pull test/tiny-GGUF:Q4_0 2>"$tmp/err") && cmp -s "$p" data/lfm2-tiny-dense-q4_0.gguf && ok || bad "resume after SIGINT: $(cat "$tmp/err")"
grep -q "resuming a partial download at .* ($part bytes)" "$tmp/err" && ok || bad "SIGINT resume not from $part: $(cat "$tmp/err")"
{ echo "\$ lfm2c pull test/tiny-GGUF:Q4_0    # Ctrl-C"; cat "$tmp/err-sigint"; echo "\$ lfm2c pull test/tiny-GGUF:Q4_0"; cat "$tmp/err"; echo "$p"; } > "$tmp/transcript-sigint"

# 12. split files: every part fetched, the first part's path printed
p=$("$bin" pull -q test/split-GGUF 2>"$tmp/err") && [ "${p##*/}" = "split-Q8_0-00001-of-00003.gguf" ] && ok || bad "split: $p $(cat "$tmp/err")"
cat "${p%00001-of-00003.gguf}"0000{1,2,3}-of-00003.gguf 2>/dev/null | cmp -s - data/lfm2-tiny-dense-q8_0.gguf && ok || bad "split parts do not add up"

# 13. list and rm
"$bin" list > "$tmp/list" 2>&1
grep -q "test/tiny-GGUF *Q4_0" "$tmp/list" && grep -q "test/kq-GGUF *Q4_K_M" "$tmp/list" && ok || bad "list: $(cat "$tmp/list")"
"$bin" rm test/kq-GGUF:F16 2>/dev/null && ok || bad "rm quant"
"$bin" list 2>/dev/null | grep -q " kq-F16.gguf" && bad "rm left F16 listed" || ok
"$bin" list 2>/dev/null | grep -q "kq-Q4_K_M" && ok || bad "rm of F16 removed Q4_K_M"
"$bin" rm test/none-GGUF >/dev/null 2>&1 && bad "rm of an uncached repo succeeded" || ok
# where links cannot be made (Windows without the right to, Wine) the snapshot's file is a hard
# link to its blob (made so here where it is a symbolic one): rm removes both names
"$bin" pull -q test/tiny-GGUF:Q8_0 >/dev/null 2>"$tmp/err" || bad "pull Q8_0: $(cat "$tmp/err")"
f8="$rd/snapshots/$commit/tiny-Q8_0.gguf"
[ -L "$f8" ] && ln -f "$rd/blobs/$w8" "$f8"
[ "$f8" -ef "$rd/blobs/$w8" ] && [ ! -L "$f8" ] && ok || bad "no hard link to the blob: $(ls -l "$f8")"
"$bin" list 2>/dev/null | grep -q "test/tiny-GGUF *Q8_0" && ok || bad "list: the hard-linked Q8_0 missing"
"$bin" rm test/tiny-GGUF:Q8_0 >/dev/null 2>"$tmp/err" && [ ! -e "$f8" ] && [ ! -e "$rd/blobs/$w8" ] && ok ||
  bad "rm of a hard-linked file: $(ls "$rd/blobs") $(cat "$tmp/err")"

# 14. a repository with an mmproj (llama.cpp's convention: mmproj*.gguf beside the model, the F16
# one of several): pull fetches it too; -hf uses it as --mmproj unless -mm or --no-mmproj; the
# server pairs a cached model with it; a quant's rm keeps it, the repository's removes it
vd="$HF_HOME/hub/models--test--vl-GGUF"; img=data/vision/images/rgb.png
p=$("$bin" pull test/vl-GGUF 2>"$tmp/err") && [ "${p##*/}" = "vl-F32.gguf" ] && ok || bad "pull vl: $p $(cat "$tmp/err")"
snap=${p%/*}
cmp -s "$snap/mmproj-vl-F16.gguf" data/vision/mmproj-tiny-f16.gguf && [ ! -e "$snap/mmproj-vl-Q8_0.gguf" ] && ok || bad "pull vl: the F16 mmproj not fetched (alone): $(ls "$snap")"
grep -q "projector.*mmproj-vl-F16.gguf" "$tmp/err" && ok || bad "pull vl does not name the mmproj: $(cat "$tmp/err")"
p1=$("$bin" pull -q test/vl1-GGUF 2>"$tmp/err") && cmp -s "${p1%/*}/mmproj-vl1-Q8_0.gguf" data/vision/mmproj-tiny-q8_0.gguf && ok || bad "pull vl1: the only (Q8_0) mmproj not fetched: $(cat "$tmp/err")"
"$bin" rm test/vl1-GGUF >/dev/null 2>&1
p1=$("$bin" pull -q test/vl1-GGUF --no-mmproj 2>"$tmp/err") && [ ! -e "${p1%/*}/mmproj-vl1-Q8_0.gguf" ] && ok || bad "pull --no-mmproj fetched it: $(cat "$tmp/err")"
"$bin" list 2>/dev/null | grep -q "test/vl-GGUF.*vl-F32.gguf" && ok || bad "list: no vl-F32"
ref=$("$bin" run -m data/vision/lfm2-vl-tiny-f32.gguf -mm data/vision/mmproj-tiny-f16.gguf --image $img -p "what is it?" -n 6 --temp 0 2>&1)
out=$("$bin" run -hf test/vl-GGUF --image $img -p "what is it?" -n 6 --temp 0 2>"$tmp/err") && [ "$out" = "$ref" ] && ok || bad "run -hf vl --image: '$out' vs '$ref' $(cat "$tmp/err")"
out=$("$bin" run -hf test/vl-GGUF --offline --image $img -p "what is it?" -n 6 --temp 0 2>"$tmp/err") && [ "$out" = "$ref" ] && ok || bad "run -hf vl --offline --image: $(cat "$tmp/err")"
"$bin" run -hf test/vl-GGUF --offline --no-mmproj --image $img -p x -n 1 >/dev/null 2>"$tmp/err" && bad "--no-mmproj still used the mmproj" || ok
grep -q "needs the model.s vision tower" "$tmp/err" && ok || bad "--no-mmproj: $(cat "$tmp/err")"
"$bin" run -hf test/vl-GGUF --offline -mm "$tmp/none.gguf" --image $img -p x -n 1 >/dev/null 2>"$tmp/err" && bad "-mm FILE lost to the repository's" || ok
grep -q "none.gguf" "$tmp/err" && ok || bad "-mm FILE: $(cat "$tmp/err")"
"$bin" run -m data/lfm2-tiny-dense-q4_0.gguf --no-mmproj -p x -n 1 >/dev/null 2>"$tmp/err"; [ $? = 2 ] && ok || bad "--no-mmproj without -hf: not a usage error"
# the server: -hf's mmproj, and a model of the cache paired with its own (a text one has none)
png64=$(base64 -w0 $img)
vreq() { printf '{"model":"%s","max_tokens":4,"temperature":0,"messages":[{"role":"user","content":[{"type":"text","text":"what?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,%s"}}]}]}' "$1" "$png64"; }
"$bin" serve -hf test/vl-GGUF --models --host 127.0.0.1 --port 0 >"$tmp/serve" 2>&1 & spid=$!
sport=
for _ in $(seq 300); do sport=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$tmp/serve"); [ -n "$sport" ] && break; sleep 0.1; done
code() { vreq "$1" > "$tmp/vreq"; curl -s -o "$tmp/vout" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @"$tmp/vreq" "http://127.0.0.1:$sport/v1/chat/completions"; }
# what /v1/models says model $1 takes (architecture.input_modalities, joined by +)
mods() { curl -s "http://127.0.0.1:$sport/v1/models" | python3 -c 'import json, sys
print(*["+".join(m["architecture"]["input_modalities"]) for m in json.load(sys.stdin)["data"] if m["id"] == sys.argv[1]])' "$1"; }
m1=$(mods vl-F32.gguf); m2=$(mods test/tiny-GGUF:Q4_0); m3=$(mods test/vl1-GGUF:F32)
[ "$m1 $m2 $m3" = "text+image text text" ] && ok || bad "/v1/models: -hf vl, a text model, vl1 without its mmproj take '$m1' '$m2' '$m3'"
[ -n "$sport" ] && [ "$(code vl-F32.gguf)" = 200 ] && ok || bad "serve -hf vl: an image refused: $(cat "$tmp/vout") $(tail -3 "$tmp/serve")"
[ "$(code test/tiny-GGUF:Q4_0)" = 400 ] && grep -q mmproj "$tmp/vout" && ok || bad "a cached text model took an image: $(cat "$tmp/vout")"
curl -s "http://127.0.0.1:$sport/v1/models" | grep -q '"mmproj-' && bad "an mmproj listed as a model" || ok
# POST /api/pull fetches the mmproj too (vl1's was left out by --no-mmproj above)
[ "$(code test/vl1-GGUF:F32)" = 400 ] && ok || bad "vl1 without its mmproj took an image: $(cat "$tmp/vout")"
curl -s -H 'Content-Type: application/json' -d '{"model":"hf.co/test/vl1-GGUF","stream":false}' "http://127.0.0.1:$sport/api/pull" > "$tmp/apull"
grep -q success "$tmp/apull" && [ -e "${p1%/*}/mmproj-vl1-Q8_0.gguf" ] && ok || bad "/api/pull: no mmproj: $(cat "$tmp/apull")"
# (loaded without it, vl1 takes text until it is loaded again; then images)
[ "$(mods test/vl1-GGUF:F32)" = text ] && ok || bad "/v1/models: vl1 loaded without its mmproj takes '$(mods test/vl1-GGUF:F32)'"
curl -s -H 'Content-Type: application/json' -d '{"model":"test/vl1-GGUF:F32","keep_alive":0}' "http://127.0.0.1:$sport/api/generate" >/dev/null
for _ in $(seq 20); do [ "$(mods test/vl1-GGUF:F32)" = text+image ] && break; sleep 0.1; done
[ "$(mods test/vl1-GGUF:F32)" = text+image ] && ok || bad "/v1/models: vl1 unloaded, its mmproj pulled, takes '$(mods test/vl1-GGUF:F32)'"
[ "$(code test/vl1-GGUF:F32)" = 200 ] && ok || bad "serve --models: the cached vl1 not paired with its mmproj: $(cat "$tmp/vout")"
kill $spid 2>/dev/null; wait $spid 2>/dev/null
"$bin" rm test/vl-GGUF:F32 >/dev/null 2>&1
[ ! -e "$snap/vl-F32.gguf" ] && [ -e "$snap/mmproj-vl-F16.gguf" ] && ok || bad "rm of a quant: $(ls "$snap")"
"$bin" rm test/vl-GGUF >/dev/null 2>&1
[ ! -e "$snap/mmproj-vl-F16.gguf" ] && ok || bad "rm of the repository left the mmproj"

# 15. an LFM2-Audio repository: the model (not the tokenizer- or vocoder- files, listed first and
# of the same quant) and its F16 audio mmproj fetched; -hf hands it to run --audio and transcribe
# (the same text as with -m / -mm); the server pairs the cached model with it (it hears) and
# does not serve the speech-output files as models
ad="$HF_HOME/hub/models--test--audio-GGUF"
python3 -c "
import math, struct, sys, wave
w = wave.open(sys.argv[1], 'wb'); w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
w.writeframes(b''.join(struct.pack('<h', int(8000 * math.sin(i / 5))) for i in range(16000))); w.close()" "$tmp/clip.wav"
p=$("$bin" pull test/audio-GGUF 2>"$tmp/err") && [ "${p##*/}" = "audio-Q8_0.gguf" ] && ok || bad "pull audio: '$p' $(cat "$tmp/err")"
snap=${p%/*}
cmp -s "$snap/mmproj-audio-F16.gguf" "$tmp/audio/mm-f16.gguf" && [ ! -e "$snap/tokenizer-audio-Q8_0.gguf" ] &&
  [ ! -e "$snap/vocoder-audio-Q8_0.gguf" ] && ok || bad "pull audio: not the model and its F16 mmproj alone: $(ls "$snap")"
ref=$("$bin" transcribe "$tmp/clip.wav" -m "$tmp/audio/lm.gguf" -mm "$tmp/audio/mm-f16.gguf" -n 6 2>/dev/null)
out=$("$bin" transcribe "$tmp/clip.wav" -hf test/audio-GGUF --offline -n 6 2>"$tmp/err") && [ "$out" = "$ref" ] && ok ||
  bad "transcribe -hf: '$out' vs '$ref' $(cat "$tmp/err")"
ref=$("$bin" run -m "$tmp/audio/lm.gguf" -mm "$tmp/audio/mm-f16.gguf" --audio "$tmp/clip.wav" -p "what?" -n 6 --temp 0 2>/dev/null)
out=$("$bin" run -hf test/audio-GGUF --offline --audio "$tmp/clip.wav" -p "what?" -n 6 --temp 0 2>"$tmp/err") &&
  [ "$out" = "$ref" ] && ok || bad "run -hf --audio: '$out' vs '$ref' $(cat "$tmp/err")"
"$bin" serve --models --host 127.0.0.1 --port 0 --offline >"$tmp/serve" 2>&1 & spid=$!
sport=
for _ in $(seq 300); do sport=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$tmp/serve"); [ -n "$sport" ] && break; sleep 0.1; done
st=$(curl -s -o "$tmp/aout" -w '%{http_code}' "http://127.0.0.1:$sport/v1/audio/transcriptions" -F "file=@$tmp/clip.wav" \
  -F model=test/audio-GGUF:Q8_0 -F max_tokens=6 -F response_format=text)
tref=$("$bin" transcribe "$tmp/clip.wav" -m "$tmp/audio/lm.gguf" -mm "$tmp/audio/mm-f16.gguf" -n 6 --special 2>/dev/null)
[ "$(mods test/audio-GGUF:Q8_0)" = text+audio ] && ok || bad "/v1/models: the cached audio model takes '$(mods test/audio-GGUF:Q8_0)'"
[ "$st" = 200 ] && [ "$(cat "$tmp/aout")" = "$tref" ] && ok ||
  bad "serve --models: the cached audio model does not hear as transcribe does: $st '$(cat "$tmp/aout")' vs '$tref' $(tail -3 "$tmp/serve")"
curl -s "http://127.0.0.1:$sport/v1/models" | grep -q -E '"(tokenizer|vocoder)-audio' && bad "a speech-output file listed as a model" || ok
kill $spid 2>/dev/null; wait $spid 2>/dev/null

[ -n "${LFM2C_PULL_TRANSCRIPT:-}" ] && { cat "$tmp/transcript-drop"; echo; cat "$tmp/transcript-sigint"; } > "$LFM2C_PULL_TRANSCRIPT"
echo "pull: $pass passed, $fail failed"
[ $fail -eq 0 ]
