#!/usr/bin/env bash
# The LFM2-VL parts of the CLI end to end: `lfm2c synth` of a VL preset with --mmproj (the files
# written equal the committed fixtures, so the goldens stay tied to what synth writes), `lfm2c
# bench --mmproj` (a row per size, tiles counted), and their refusals.
# usage: bash test_vision_cli.sh PATH/TO/lfm2c
bin=${1:?usage: test_vision_cli.sh PATH/TO/lfm2c}
pass=0 fail=0
check() { if [ "$2" == "$3" ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL $1: got [$2] want [$3]"; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

for t in f32 q8_0; do
    "$bin" synth --preset lfm2-vl-tiny --type f32 -o "$tmp/lm.gguf" --mmproj "$tmp/mm-$t.gguf" --mmproj-type $t >/dev/null
    check "synth mmproj $t = the fixture" "$(cmp -s "$tmp/mm-$t.gguf" data/vision/mmproj-tiny-$t.gguf && echo same)" same
done
# (the language model the goldens were made from was written when synth.c still let the compiler
# fuse, so its floats may round otherwise: its image tokens are checked instead)
check "VL tokenizer's image tokens" "$("$bin" tokenize -m "$tmp/lm.gguf" --ids --no-bos --parse-special '<image><|image_start|><|image_end|>')" "[14, 15, 16]"
out=$("$bin" bench --mmproj data/vision/mmproj-tiny-f32.gguf --image-size 64x64,200x200 -t 2 -r 1)
check "bench rows" "$(echo "$out" | grep -c '^| *[0-9]')" 2
# patch 4: tiles of 128; 2 x 2 holds against 3 x 3 by the tie rule (200^2 < 0.5 x 128^2 x 9)
check "bench 200x200 tiled 2x2 + thumbnail, 1280 tokens" "$(echo "$out" | grep -c ' 2x2 +thumb |   1280 ')" 1
"$bin" bench --mmproj data/vision/lfm2-vl-tiny-f32.gguf >/dev/null 2>"$tmp/err"; rc=$?
check "a language model as mmproj fails" "$rc:$(grep -c 'projector type' "$tmp/err")" "1:1"
"$bin" bench --mmproj data/vision/mmproj-tiny-f32.gguf --image-size 12by4 >/dev/null 2>"$tmp/err"; rc=$?
check "a bad size fails" "$rc:$(grep -c 'WxH' "$tmp/err")" "1:1"
"$bin" synth --preset lfm2-350m --type f32 -o "$tmp/x.gguf" --mmproj "$tmp/y.gguf" >/dev/null 2>"$tmp/err"; rc=$?
check "--mmproj needs a VL or audio preset" "$rc:$(grep -c 'LFM2-VL or LFM2-Audio preset' "$tmp/err")" "1:1"
"$bin" synth --preset lfm2-vl-tiny --type f32 -o "$tmp/x.gguf" --mmproj "$tmp/y.gguf" --mmproj-type q4_k >/dev/null 2>"$tmp/err"; rc=$?
check "--mmproj-type refused" "$rc:$(grep -c 'f32, f16 or q8_0' "$tmp/err")" "1:1"

# run / chat with images (-mm, --image, /image) and info on an mmproj
lm=data/vision/lfm2-vl-tiny-f32.gguf mm=data/vision/mmproj-tiny-f32.gguf img=data/vision/images
a=$("$bin" run -m $lm -mm $mm --image $img/rgb.png -p "what is it?" -n 6 --temp 0 2>"$tmp/err"); rc=$?
check "run --image" "$rc" 0
check "the same run again" "$("$bin" run -m $lm -mm $mm --image $img/rgb.png -p "what is it?" -n 6 --temp 0 2>&1)" "$a"
check "the placeholder placed by the prompt = put in front" \
    "$("$bin" run -m $lm -mm $mm --image $img/rgb.png -p "<image>
what is it?" -n 6 --temp 0 2>&1)" "$a"
b=$("$bin" run -m $lm -mm $mm --image $img/gray.png -p "what is it?" -n 6 --temp 0 2>&1)
check "another image, another answer" "$([ "$a" != "$b" ] && echo differ)" differ
c=$(printf '/image %s\nwhat is it?\n' $img/rgb.png | "$bin" chat -m $lm -mm $mm -n 6 --temp 0 2>&1)
check "chat /image: the run's answer" "$(echo "$c" | grep -cF "$a")" 1
"$bin" run -m $lm --image $img/rgb.png -p x -n 1 >/dev/null 2>"$tmp/err"; rc=$?
check "--image without --mmproj" "$rc:$(grep -c 'needs the model.s vision tower: -mm / --mmproj' "$tmp/err")" "1:1"
"$bin" run -m $lm -mm $mm --image data/vision/golden.json -p x -n 1 >/dev/null 2>"$tmp/err"; rc=$?
check "not an image" "$rc:$(grep -c 'not a JPEG, PNG, WebP or GIF image' "$tmp/err")" "1:1"
head -c 200 $img/rgb.png >"$tmp/cut.png"
"$bin" run -m $lm -mm $mm --image "$tmp/cut.png" -p x -n 1 >/dev/null 2>"$tmp/err"; rc=$?
check "a cut PNG" "$rc:$(grep -c 'corrupt PNG image' "$tmp/err")" "1:1"
"$bin" run -m data/lfm2-tiny-moe-q4_0.gguf -mm $mm --image $img/rgb.png -p x -n 1 >/dev/null 2>"$tmp/err"; rc=$?
check "a text model with an mmproj" "$rc:$(grep -c 'not a vision-language model' "$tmp/err")" "1:1"
check "info on an mmproj" "$("$bin" info -m $mm | grep -c 'LFM2-VL mmproj: tower 2 blocks x 64 wide')" 1

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
