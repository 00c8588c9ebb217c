#!/usr/bin/env bash
# cpu_bench.sh — reproduces the CPU speed table of issue 4 on this machine:
# builds lfm2c, writes the synthetic real-size models (once; 5-15 GB each, outside the repo),
# measures read bandwidth, then pp512 / tg128 with 1 and 2 threads next to the decode limit.
# usage: bash bench/cpu_bench.sh [MODELS_DIR]   (default /tmp/lfm2c-models; REPS=3 by default)
#        bash bench/cpu_bench.sh --contention [MODELS_DIR]
#   contention mode (issue 17): tg64 and pp128 at each of THREADS (default "1 2 4 16") on an
#   idle machine and with one competing busy process (a shell loop) running the whole time, on
#   the tiny test fixture and the synthetic CONTENTION_PRESETS (default "lfm2-350m lfm2-8b-a1b"; set empty for the fixture only);
#   prints t/s and the ratios the issue's targets name (busy -t 2 / -t 1, -t 16 / -t 2).
set -euo pipefail
cd "$(dirname "$0")/.."
contention=0
if [ "${1:-}" = "--contention" ]; then contention=1; shift; fi
dir=${1:-/tmp/lfm2c-models}; reps=${REPS:-3}
mkdir -p "$dir"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target lfm2c_cli membw >/dev/null

if [ $contention = 1 ]; then
  threads=${THREADS:-1 2 4 16}
  models=(tests/data/lfm2-tiny-moe-q4_0.gguf)
  for preset in ${CONTENTION_PRESETS-lfm2-350m lfm2-8b-a1b}; do
    f="$dir/$preset-q4_k_m.gguf"
    [ -f "$f" ] || ./build/lfm2c synth --preset $preset --type q4_k_m -o "$f" >/dev/null
    models+=("$f")
  done
  busy_pid=
  trap '[ -n "$busy_pid" ] && kill $busy_pid 2>/dev/null; true' EXIT
  echo "| model | load | threads | pp128 t/s | tg64 t/s | tg vs -t 1 | tg vs -t 2 |"
  echo "|---|---|---:|---:|---:|---:|---:|"
  for f in "${models[@]}"; do
    cat "$f" > /dev/null
    for load in idle busy; do
      if [ $load = busy ]; then sh -c 'while :; do :; done' & busy_pid=$!; sleep 0.5; fi
      tg1=; tg2=
      for t in $threads; do
        out=$(timeout 600 ./build/lfm2c bench -m "$f" -p 128 -n 64 -t "$t" -r "$reps" -o csv || true)
        pp=$(echo "$out" | awk -F, '$4==128{print $6}'); tg=$(echo "$out" | awk -F, '$5==64{print $6}')
        pp=${pp:-none}; tg=${tg:-none}
        [ "$t" = 1 ] && tg1=$tg
        [ "$t" = 2 ] && tg2=$tg
        r1=$(python3 -c "import sys; a,b=sys.argv[1:]; print(f'{float(a)/float(b):.2f}' if b not in ('','none') and a!='none' else '-')" "$tg" "${tg1:-}")
        r2=$(python3 -c "import sys; a,b=sys.argv[1:]; print(f'{float(a)/float(b):.2f}' if b not in ('','none') and a!='none' else '-')" "$tg" "${tg2:-}")
        echo "| $(basename "$f" .gguf) | $load | $t | $pp | $tg | $r1 | $r2 |"
      done
      if [ $load = busy ]; then kill $busy_pid; wait $busy_pid 2>/dev/null || true; busy_pid=; fi
    done
  done
  exit 0
fi
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
