#!/usr/bin/env bash
# The LFM2-Audio parts of the CLI end to end: `lfm2c synth` of the tiny audio preset with
# --mmproj, `lfm2c transcribe` (the model card's ASR prompt, greedy: the same tokens as the run
# it stands for), `lfm2c run --audio` (one clip, two, the marker placed by the prompt), the
# help texts, and the refusals (no mmproj, an image mmproj, a file that is not audio, a header
# declaring more than the limits, --image with --audio).
# usage: bash test_audio_cli.sh PATH/TO/lfm2c
bin=${1:?usage: test_audio_cli.sh PATH/TO/lfm2c}
pass=0 fail=0
check() { if [ "$2" == "$3" ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL $1: got [$2] want [$3]"; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

"$bin" synth --preset lfm2-audio-tiny --type f32 -o "$tmp/lm.gguf" --mmproj "$tmp/mm.gguf" --mmproj-type q8_0 >"$tmp/out"
check "synth writes both" "$(grep -c 'LFM2-Audio mmproj q8_0, 2 Conformer blocks of 512' "$tmp/out")" 1
# a 16 kHz tone and a 44.1 kHz stereo one (python's wave module: no audio tool needed)
python3 - "$tmp" <<'PY'
import math, struct, sys, wave
for name, rate, ch, secs, f in (("a", 16000, 1, 1.0, 440), ("b", 44100, 2, 0.7, 660)):
    w = wave.open(f"{sys.argv[1]}/{name}.wav", "wb")
    w.setnchannels(ch), w.setsampwidth(2), w.setframerate(rate)
    w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * f * i / rate + c)))
                           for i in range(int(rate * secs)) for c in range(ch)))
    w.close()
PY
lm="$tmp/lm.gguf" mm="$tmp/mm.gguf"
t=$("$bin" transcribe "$tmp/a.wav" -m $lm -mm $mm -n 6 2>"$tmp/err"); rc=$?
check "transcribe" "$rc" 0
check "transcribe = run with the ASR prompt" \
    "$("$bin" run -m $lm -mm $mm --audio "$tmp/a.wav" --system "Perform ASR." -p "" --temp 0 -n 6 2>/dev/null)" "$t"
"$bin" transcribe "$tmp/a.wav" -m $lm -mm $mm -n 4 -v >/dev/null 2>"$tmp/err"
check "transcribe -v: the real-time factor" "$(grep -c 'real-time factor' "$tmp/err")" 1
a=$("$bin" run -m $lm -mm $mm --audio "$tmp/a.wav" -p "what is it?" -n 6 --temp 0 2>/dev/null); rc=$?
check "run --audio" "$rc" 0
check "the marker placed by the prompt = put in front" \
    "$("$bin" run -m $lm -mm $mm --audio "$tmp/a.wav" -p "<__media__>what is it?" -n 6 --temp 0 2>/dev/null)" "$a"
b=$("$bin" run -m $lm -mm $mm --audio "$tmp/b.wav" -p "what is it?" -n 6 --temp 0 2>/dev/null)
check "another clip, another answer" "$([ "$a" != "$b" ] && echo differ)" differ
"$bin" run -m $lm -mm $mm --audio "$tmp/a.wav" --audio "$tmp/b.wav" -p "which?" -n 2 >/dev/null 2>&1
check "two clips" "$?" 0
check "run --help names --audio" "$("$bin" run --help 2>&1 | grep -c -- '--audio FILE')" 1
check "transcribe --help" "$("$bin" transcribe --help | grep -c 'Perform ASR')" 1
check "help lists transcribe" "$("$bin" help | grep -c '^  transcribe')" 1

# refusals
"$bin" run -m $lm --audio "$tmp/a.wav" -p x -n 1 >/dev/null 2>"$tmp/err"; rc=$?
check "--audio without --mmproj" "$rc:$(grep -c 'needs the model.s audio encoder' "$tmp/err")" "1:1"
"$bin" run -m $lm -mm data/vision/mmproj-tiny-f32.gguf --audio "$tmp/a.wav" -p x -n 1 >/dev/null 2>"$tmp/err"; rc=$?
check "an image mmproj" "$rc:$(grep -c "not LFM2-Audio's 'lfm2a'" "$tmp/err")" "1:1"
echo "plain text" >"$tmp/t.wav"
"$bin" transcribe "$tmp/t.wav" -m $lm -mm $mm >/dev/null 2>"$tmp/err"; rc=$?
check "not audio" "$rc:$(grep -c 'not an audio file' "$tmp/err")" "1:1"
# a WAV header declaring 4 GB of 8 kHz samples in a 44-byte file
printf 'RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00data\xf0\xff\xff\xff' >"$tmp/bomb.wav"
"$bin" transcribe "$tmp/bomb.wav" -m $lm -mm $mm >/dev/null 2>"$tmp/err"; rc=$?
check "a huge declared length" "$rc:$(grep -c -E 'at most 300 s|holds no samples' "$tmp/err")" "1:1"
"$bin" run -m $lm -mm $mm --audio "$tmp/a.wav" --image data/vision/images/rgb.png -p x >/dev/null 2>"$tmp/err"; rc=$?
check "--image with --audio" "$rc:$(grep -c 'not both' "$tmp/err")" "1:1"
"$bin" transcribe -m $lm -mm $mm >/dev/null 2>"$tmp/err"; rc=$?
check "no file" "$rc:$(grep -c 'no audio file' "$tmp/err")" "2:1"
# a damaged MP3 decodes without the decoder's chatter (the library never prints)
python3 -c "import sys; d=bytearray(open('data/audio/cmp.mp3','rb').read()); d[2000:2400]=bytes(400); open(sys.argv[1],'wb').write(d)" "$tmp/dmg.mp3"
"$bin" transcribe "$tmp/dmg.mp3" -m $lm -mm $mm -n 1 >/dev/null 2>"$tmp/err"; rc=$?
check "a damaged MP3: decoded, nothing printed by the decoder" "$rc:$(grep -c -E 'Note:|Illegal|resync' "$tmp/err")" "0:0"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
