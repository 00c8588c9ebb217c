#!/usr/bin/env bash
# bench/audio.sh — the LFM2-Audio encoder's time: lfm2c beside llama.cpp's mtmd, same mmproj,
# same threads, clips of 10 s and 60 s (issue 83: >= 1.3x on a laptop CPU). Not run by the
# tests; run it on a quiet machine.
#
#   bash bench/audio.sh LM.gguf AUDIO_MMPROJ.gguf [THREADS]
#   LLAMA_BIN=/path/to/llama.cpp/build/bin  (holding llama-mtmd-cli; without it, lfm2c alone)
#   LFM2C=build/lfm2c  SECONDS_LIST="10 60"  REPS=3
#
# Files: with no model at hand, `lfm2c synth --preset lfm2-audio-1.5b --type q8_0 -o LM.gguf
# --mmproj MMPROJ.gguf --mmproj-type f16` writes both at the real shapes.
# lfm2c: `lfm2c bench --mmproj MMPROJ --audio-seconds` times the log-mel features and the
# Conformer of a synthetic clip (what mtmd times as the audio chunk's encoding). mtmd: a WAV of
# the same length through llama-mtmd-cli, its "batch encoding done in" line (the mel features are
# computed before it, in mtmd_tokenize, so mtmd's figure leaves them out: lfm2c's includes them).
# Then the real-time factor of `lfm2c transcribe` on the longest clip (-n 64, -v).
set -euo pipefail
LM=${1:?usage: bench/audio.sh LM.gguf AUDIO_MMPROJ.gguf [THREADS]}
MMPROJ=${2:?usage: bench/audio.sh LM.gguf AUDIO_MMPROJ.gguf [THREADS]}
THREADS=${3:-$(nproc)}
LFM2C=${LFM2C:-build/lfm2c}
SECONDS_LIST=${SECONDS_LIST:-10 60}
REPS=${REPS:-3}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

echo "== lfm2c ($THREADS threads)"
"$LFM2C" bench --mmproj "$MMPROJ" --audio-seconds "$(echo $SECONDS_LIST | tr ' ' ',')" -t "$THREADS" -r "$REPS"

# 16 kHz mono 16-bit noise of each length (python's wave module)
for s in $SECONDS_LIST; do
    python3 -c "import sys, wave, random; r=random.Random(1); w=wave.open(sys.argv[2],'wb'); w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000); w.writeframes(bytes(r.getrandbits(8) if i % 2 == 0 else r.getrandbits(4) for i in range(int(float(sys.argv[1]) * 16000) * 2))); w.close()" "$s" "$TMP/$s.wav"
done
last=$(echo $SECONDS_LIST | awk '{print $NF}')
echo "== lfm2c transcribe, $last s clip: the real-time factor"
"$LFM2C" transcribe "$TMP/$last.wav" -m "$LM" -mm "$MMPROJ" -t "$THREADS" -n 64 -v 2>&1 >/dev/null | grep -E "real-time|prompt:" || true

MTMD=${LLAMA_BIN:+$LLAMA_BIN/llama-mtmd-cli}
if [ -z "${MTMD:-}" ] || [ ! -x "$MTMD" ]; then
    echo "== llama.cpp: set LLAMA_BIN to a build with llama-mtmd-cli (cmake --build build --target llama-mtmd-cli)"
    exit 0
fi
echo "== llama.cpp mtmd ($THREADS threads): 'batch encoding done in' per run"
for s in $SECONDS_LIST; do
    for r in $(seq "$REPS"); do
        "$MTMD" -m "$LM" --mmproj "$MMPROJ" --audio "$TMP/$s.wav" -sys "Perform ASR." -p "<__media__>" -n 1 \
            -t "$THREADS" --no-warmup 2>&1 | grep -E "batch encoding done in" | sed "s/^/$s s run $r: /" || true
    done
done
