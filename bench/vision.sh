#!/usr/bin/env bash
# bench/vision.sh — the LFM2-VL image encoder's time: lfm2c beside llama.cpp's mtmd, same mmproj,
# same threads. Not run by the tests; run it on a quiet machine.
#
#   bash bench/vision.sh LM.gguf MMPROJ.gguf [THREADS]
#   LLAMA_BIN=/path/to/llama.cpp/build/bin  (holding llama-mtmd-cli; without it, lfm2c alone)
#   LFM2C=build/lfm2c  SIZES="512x512 1920x1080"  REPS=3
#
# Files: with no model at hand, `lfm2c synth --preset lfm2-vl-1.6b --type q8_0 -o LM.gguf
# --mmproj MMPROJ.gguf --mmproj-type f16` writes both at the real shapes.
# lfm2c: `lfm2c bench --mmproj` encodes each size as Hugging Face's processor cuts it (a
# 1920x1080 image: 4x2 tiles of 512 and a 672x384 thumbnail). mtmd: upstream llama.cpp (2026)
# tiles LFM2 images the same way for these sizes (its rule: a side over 1,024 pixels; the grid and
# the tie rule are Hugging Face's), printing the whole image's "encoding done in"; llama.cpp
# c786e292 does not tile (one image of at most 1,024 tokens, "image slice encoded in"), so with
# it a tiled size is other work. The token counts are printed beside the times.
set -euo pipefail
LM=${1:?usage: bench/vision.sh LM.gguf MMPROJ.gguf [THREADS]}
MMPROJ=${2:?usage: bench/vision.sh LM.gguf MMPROJ.gguf [THREADS]}
THREADS=${3:-$(nproc)}
LFM2C=${LFM2C:-build/lfm2c}
SIZES=${SIZES:-512x512 1920x1080}
REPS=${REPS:-3}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

echo "== lfm2c ($THREADS threads)"
"$LFM2C" bench --mmproj "$MMPROJ" --image-size "$(echo $SIZES | tr ' ' ',')" -t "$THREADS" -r "$REPS"

MTMD=${LLAMA_BIN:+$LLAMA_BIN/llama-mtmd-cli}
if [ -z "${MTMD:-}" ] || [ ! -x "$MTMD" ]; then
    echo "== llama.cpp: set LLAMA_BIN to a build with llama-mtmd-cli (cmake --build build --target llama-mtmd-cli)"
    exit 0
fi
echo "== llama.cpp mtmd ($THREADS threads): 'image slice encoded in' per run"
for s in $SIZES; do
    w=${s%x*} h=${s#*x}
    # a PPM of the size (mtmd reads it through stb_image)
    python3 -c "import sys; w,h=int(sys.argv[1]),int(sys.argv[2]); sys.stdout.buffer.write(b'P6 %d %d 255\n'%(w,h)+bytes((i*131)&255 for i in range(w*h*3)))" "$w" "$h" > "$TMP/img.ppm"
    for r in $(seq "$REPS"); do
        "$MTMD" -m "$LM" --mmproj "$MMPROJ" --image "$TMP/img.ppm" -p "describe" -n 1 -t "$THREADS" --no-warmup 2>&1 |
            grep -E "image slice encoded in|batch encoding done in|n_tokens_batch" | sed "s/^/$s run $r: /" || true
    done
done
