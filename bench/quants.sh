#!/usr/bin/env bash
# quants.sh — the low-bit quants side by side with llama.cpp (issue 84): for each of QUANT_PRESETS
# (default "lfm2-1.2b lfm2-24b-a2b") at each of QUANT_TYPES (default "iq2_xxs iq3_xxs iq4_xs q2_k
# q3_k_m") writes the synthetic file once (`lfm2c synth --type`: llama-quantize's mix of that file
# type with an importance matrix, random valid blocks: src/convert/synth_mix.c), then on that SAME
# file: pp512 and tg128 of llama-bench (-mmp 0 and mapped, the better of the two) and of `lfm2c
# bench`, at THREADS (default 2), REPS repetitions (default 3; PP / TG: other lengths), with
# `membw 1024` before and after each lfm2c run. Prints the ratios lfm2c / llama.cpp (targets:
# decode >= 1.3x, or >= 90% of membw; prefill >= 2x) and lfm2c's decode GB/s (t/s x weights read
# per token) as a share of membw.
# usage: LLAMA_DIR=DIR bash bench/quants.sh [MODELS_DIR]       (default /tmp/lfm2c-quants)
#        LLAMA_DIR=DIR bash bench/quants.sh --check [MODELS_DIR]
#   check mode: every file type synth writes, on a 4-layer lfm2-350m: lfm2c runs it and
#   llama-bench (-p 0 -n 1) loads it; no timing. Exits non-zero if either refuses a file.
# LLAMA_DIR is a llama.cpp build directory holding bin/llama-bench (default
# /work/peers/llama.cpp/build). KEEP=0 deletes each file after its rows (the 24B files are
# 6-12 GB each). Everything is measured from a warm page cache (the file read once before).
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
dir=${1:-/tmp/lfm2c-quants}; reps=${REPS:-3}; threads=${THREADS:-2}; pp=${PP:-512}; tg=${TG:-128}
llama=${LLAMA_DIR:-/work/peers/llama.cpp/build}/bin/llama-bench
[ -x "$llama" ] || { echo "no llama-bench at $llama (set LLAMA_DIR to a llama.cpp build directory)" >&2; exit 2; }
mkdir -p "$dir"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target lfm2c_cli membw >/dev/null

if [ $check = 1 ]; then
  bad=0
  for t in q2_k q2_k_s q3_k_s q3_k_m q3_k_l iq4_nl iq4_xs iq3_xxs iq3_xs iq3_s iq3_m iq2_xxs iq2_xs iq2_s iq2_m iq1_s iq1_m; do
    f="$dir/check-350m-$t.gguf"
    ./build/lfm2c synth --preset lfm2-350m --layers 4 --type "$t" -o "$f" -t 2 >/dev/null
    if ! ./build/lfm2c run -m "$f" -p "hello" -n 4 -t 2 >/dev/null 2>&1; then echo "$t: lfm2c refuses"; bad=1; fi
    desc=$("$llama" -m "$f" -p 0 -n 1 -r 1 -t 2 -o json 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['model_type'])") ||
      { echo "$t: llama-bench refuses"; bad=1; rm -f "$f"; continue; }
    echo "$t: both run it (llama.cpp: $desc)"
    rm -f "$f"
  done
  exit $bad
fi

warm() { cat "$1" > /dev/null; }
membw_gbs() { ./build/membw 1024 "$1" | awk -v t="$1" '$1=="threads" && $2==t":"{print $3}'; }
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1) (family $(grep -m1 '^cpu family' /proc/cpuinfo | sed 's/.*: //')\
 model $(grep -m1 '^model' /proc/cpuinfo | sed 's/.*: //')), $(nproc) CPUs; $(date -u +%F); lfm2c $(git rev-parse --short HEAD \
2>/dev/null || echo '?'); threads $threads, $reps reps"
log=$(mktemp)
for preset in ${QUANT_PRESETS-lfm2-1.2b lfm2-24b-a2b}; do
  for t in ${QUANT_TYPES-iq2_xxs iq3_xxs iq4_xs q2_k q3_k_m}; do
    f="$dir/$preset-$t.gguf"
    [ -f "$f" ] || ./build/lfm2c synth --preset "$preset" --type "$t" -o "$f" >/dev/null
    warm "$f"
    lj() { "$llama" -m "$f" -p "$pp" -n "$tg" -t "$threads" -r "$reps" "$@" -o json 2>/dev/null |
      python3 -c "import json,sys; d=json.load(sys.stdin); print(*[x['avg_ts'] for x in d])"; }
    read -r lp0 lt0 <<< "$(lj -mmp 0)"
    read -r lp1 lt1 <<< "$(lj)"
    b0=$(membw_gbs "$threads")
    o=$(./build/lfm2c bench -m "$f" -p "$pp" -n "$tg" -t "$threads" -r "$reps" -o json 2>/dev/null |
      python3 -c "import json,sys; d=json.load(sys.stdin); print(d[0]['avg_ts'], d[1]['avg_ts'], d[1]['gbps'], d[0]['model_size'], d[0]['model_n_params'])")
    b1=$(membw_gbs "$threads")
    echo "$preset $t $lp0 $lt0 $lp1 $lt1 $o $b0 $b1" | tee -a "$log"
    [ "${KEEP:-1}" = 1 ] || rm -f "$f"
  done
done
python3 - "$log" <<'PY'
import sys
print("\n| model | type | GB | bits/weight | llama.cpp pp | lfm2c pp | ratio | llama.cpp tg | lfm2c tg | ratio | lfm2c decode GB/s | membw (before / after) | of membw |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
for line in open(sys.argv[1]):
    m, t, lp0, lt0, lp1, lt1, op, ot, gb, size, npar, b0, b1 = line.split()
    lp, lt = max(float(lp0), float(lp1)), max(float(lt0), float(lt1))
    op, ot, gb, bw = float(op), float(ot), float(gb), (float(b0) + float(b1)) / 2
    print(f"| {m} | {t} | {int(size) / 1e9:.2f} | {int(size) * 8 / int(npar):.2f} | {lp:.1f} | {op:.1f} | {op / lp:.2f}x "
          f"| {lt:.2f} | {ot:.2f} | {ot / lt:.2f}x | {gb:.1f} | {b0} / {b1} | {gb / bw * 100:.0f}% |")
PY
rm -f "$log"
