#!/usr/bin/env bash
# test_windows_cli.sh LFM2C — the Windows stage's checks of `run`, `bench`, `pull` and the audio
# decoders (run by scripts/test_windows.sh with LFM2C the Wine wrapper of lfm2c.exe; runs with any
# lfm2c): greedy `run` prints the Linux build's tokens (build/lfm2c, where it is built), `bench`
# gives its rows, `pull` fetches from the Hub played on loopback (tests/hub/fake_hub.py) into a
# fresh HF_HOME with the sha256 checked, and `run -hf` then reads the cached file with the Hub
# gone; `transcribe` of a WAV, FLAC, MP3, Ogg Vorbis and Opus clip on the tiny LFM2-Audio model
# (`lfm2c synth`), and `run --audio` of the MP3, print the Linux build's text for each.
# (tests/test_pull.sh runs beside it, with its symbolic-link checks made hard-link ones.)
set -u
bin=$1
cd "$(dirname "$0")/../tests" || exit 1
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
tmp=$(mktemp -d)
trap 'kill $hubpid 2>/dev/null; rm -rf "$tmp"' EXIT
m=data/lfm2-kq-dense-q4_k_m.gguf

a=$("$bin" run "$m" "Hello there" --raw -n 16 --temp 0 2>"$tmp/err") && [ -n "$a" ] && ok || bad "run: $(cat "$tmp/err")"
if [ -x ../build/lfm2c ]; then
  b=$(../build/lfm2c run "$m" "Hello there" --raw -n 16 --temp 0 2>/dev/null)
  [ "$a" = "$b" ] && ok || bad "run differs from the Linux build: '$a' vs '$b'"
fi
"$bin" bench -m "$m" -p 16 -n 4 -r 1 -o csv >"$tmp/bench" 2>"$tmp/err" && [ "$(grep -c ',16,0,\|,0,4,' "$tmp/bench")" = 2 ] &&
  ok || bad "bench: $(cat "$tmp/bench" "$tmp/err")"

mkdir -p "$tmp/state"
python3 hub/fake_hub.py "$tmp/port" "$tmp/state" & hubpid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
echo none >"$tmp/state/mode"
export HF_ENDPOINT="http://127.0.0.1:$(cat "$tmp/port")" HF_HOME="$tmp/hf" LFM2C_HUB_BACKOFF_MS=50 LFM2C_HUB_RETRIES=3
unset HF_TOKEN HF_HUB_CACHE HF_HUB_OFFLINE
p=$("$bin" pull test/tiny-GGUF 2>"$tmp/err") && ok || bad "pull: $(cat "$tmp/err")"
grep -q "done, sha256 verified" "$tmp/err" && ok || bad "pull: no verified download: $(cat "$tmp/err")"
f=$(ls "$tmp"/hf/hub/models--test--tiny-GGUF/snapshots/*/tiny-Q4_0.gguf 2>/dev/null | head -1)
[ -n "$f" ] && cmp -s "$f" data/lfm2-tiny-dense-q4_0.gguf && ok || bad "pulled file missing or different ($p)"
out=$(HF_ENDPOINT=http://127.0.0.1:9 "$bin" run -hf test/tiny-GGUF:Q4_0 --offline -p "Hello" -n 4 --temp 0 2>"$tmp/err")
ref=$("$bin" run -m data/lfm2-tiny-dense-q4_0.gguf -p "Hello" -n 4 --temp 0 2>/dev/null)
[ -n "$out" ] && [ "$out" = "$ref" ] && ok || bad "run -hf --offline from the cache: '$out' vs '$ref' $(cat "$tmp/err")"

# audio: each format through the build's decoders (libsndfile: WAV, FLAC, Ogg; libmpg123: MP3)
"$bin" synth --preset lfm2-audio-tiny --type f32 -o "$tmp/alm.gguf" --mmproj "$tmp/amm.gguf" >/dev/null 2>"$tmp/err" &&
  ok || bad "synth lfm2-audio-tiny: $(cat "$tmp/err")"
python3 -c "
import math, struct, sys, wave
w = wave.open(sys.argv[1], 'wb'); w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
w.writeframes(b''.join(struct.pack('<h', int(8000 * math.sin(i / 5))) for i in range(16000))); w.close()" "$tmp/a.wav"
texts=""
for clip in "$tmp/a.wav" data/audio/cmp.flac data/audio/cmp.mp3 data/audio/cmp.ogg data/audio/cmp.opus; do
  a=$("$bin" transcribe "$clip" -m "$tmp/alm.gguf" -mm "$tmp/amm.gguf" -n 8 2>"$tmp/err") && [ -n "$a" ] && ok ||
    bad "transcribe ${clip##*/}: $(cat "$tmp/err")"
  texts="$texts|$a"
  if [ -x ../build/lfm2c ]; then
    b=$(../build/lfm2c transcribe "$clip" -m "$tmp/alm.gguf" -mm "$tmp/amm.gguf" -n 8 2>/dev/null)
    [ "$a" = "$b" ] && ok || bad "transcribe ${clip##*/} differs from the Linux build: '$a' vs '$b'"
  fi
done
[ "$(echo "$texts" | tr '|' '\n' | sort -u | wc -l)" -gt 2 ] && ok || bad "every clip heard alike: $texts"
a=$("$bin" run -m "$tmp/alm.gguf" -mm "$tmp/amm.gguf" --audio data/audio/cmp.mp3 -p "what is it?" -n 8 --temp 0 2>"$tmp/err") &&
  [ -n "$a" ] && ok || bad "run --audio: $(cat "$tmp/err")"
if [ -x ../build/lfm2c ]; then
  b=$(../build/lfm2c run -m "$tmp/alm.gguf" -mm "$tmp/amm.gguf" --audio data/audio/cmp.mp3 -p "what is it?" -n 8 --temp 0 2>/dev/null)
  [ "$a" = "$b" ] && ok || bad "run --audio differs from the Linux build: '$a' vs '$b'"
fi
echo "windows cli: $pass passed, $fail failed"
[ "$fail" = 0 ]
