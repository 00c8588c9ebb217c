#!/usr/bin/env bash
# cpu_bench.sh — reproduces the CPU speed table of issue 4 on this machine:
# builds lfm2c, writes the synthetic real-size models (once; 5-15 GB each, outside the repo),
# measures read bandwidth, then pp512 / tg128 with 1 and 2 threads next to the decode limit.
# usage: bash bench/cpu_bench.sh [MODELS_DIR]   (default /tmp/lfm2c-models; REPS=3 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/lfm2c-models}; reps=${REPS:-3}
mkdir -p "$dir"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target lfm2c_cli membw >/dev/null
for preset in lfm2-24b-a2b lfm2-8b-a1b; do
  f="$dir/$preset-q4_k_m.gguf"
  [ -f "$f" ] || ./build/lfm2c synth --preset $preset --type q4_k_m -o "$f"
done
echo "## memory read bandwidth"
./build/membw | tee "$dir/membw.txt"
bw1=$(awk '/^threads 1:/{print $3}' "$dir/membw.txt")
bw2=$(awk '/^threads 2:/{print $3}' "$dir/membw.txt")
echo
echo "| model | threads | pp512 t/s | tg128 t/s | decode GB/s | bandwidth limit t/s | fraction | peak RSS MB |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for preset in lfm2-24b-a2b lfm2-8b-a1b; do
  f="$dir/$preset-q4_k_m.gguf"
  # only this model in the page cache: 14.4 + 5.0 GB and prefill's buffers do not fit together
  # on a 24 GB machine, and weights evicted mid-run would time the disk
  for other in "$dir"/*.gguf; do
    [ "$other" = "$f" ] || python3 -c "import os,sys; os.posix_fadvise(os.open(sys.argv[1], os.O_RDONLY), 0, 0, os.POSIX_FADV_DONTNEED)" "$other"
  done
  cat "$f" > /dev/null   # warm page cache: the table measures compute and memory, not the disk
  for t in 1 2; do
    out=$(./build/lfm2c bench -m "$f" -p 512 -n 128 -t $t -r "$reps" -o csv)
    pp=$(echo "$out" | awk -F, '$4==512{print $6}'); tg=$(echo "$out" | awk -F, '$5==128{print $6}')
    gb=$(echo "$out" | awk -F, '$5==128{print $8}'); rss=$(echo "$out" | awk -F, '$5==128{print $9}')
    bytes=$(./build/lfm2c info -m "$f" | sed -n 's/.*read per token \([0-9.]*\) GB.*/\1/p')
    bw=$([ $t = 1 ] && echo "$bw1" || echo "$bw2")
    lim=$(python3 -c "print(f'{$bw/$bytes:.1f}')"); frac=$(python3 -c "print(f'{$tg/($bw/$bytes)*100:.0f}%')")
    echo "| $preset Q4_K_M | $t | $pp | $tg | $gb | $lim | $frac | $rss |"
  done
done
