#!/usr/bin/env bash
# windows_bench.sh — what the Windows port costs (issue 81: at most 5% of decode and prefill):
# `lfm2c.exe bench` under Wine beside the native Linux build on the same files, the same threads,
# interleaved round by round (Linux, then Windows, ROUNDS times), and the ratio Windows / Linux of
# the medians. The threading and mapping primitives of src/base/os_win32.c are what could cost;
# Wine itself runs the program's code natively (it is not an emulator), so its own overhead is in
# system calls, not in the kernels. On a quiet machine only (both builds time the same CPU).
# usage: bash bench/windows_bench.sh [MODELS_DIR]   (default /tmp/lfm2c-models)
#   PRESETS (default "lfm2-1.2b lfm2-8b-a1b": synthetic Q4_K_M files of the real sizes, written once
#   with `lfm2c synth`), THREADS (default 2), ROUNDS (default 3), BENCH_ARGS (default
#   "-p 512 -n 128 -r 2"), FILES (GGUF files of one's own instead of the presets, e.g. the tiny
#   fixture to check the script: FILES=tests/data/lfm2-tiny-dense-q4_0.gguf ROUNDS=1).
#   Needs build/lfm2c (cmake --build build) and build-windows/lfm2c.exe (scripts/build-windows.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/lfm2c-models}
threads=${THREADS:-2}
rounds=${ROUNDS:-3}
args=${BENCH_ARGS:--p 512 -n 128 -r 2}
win=${LFM2C_WIN_BUILD:-build-windows}/lfm2c.exe
[ -x build/lfm2c ] || { echo "windows_bench: build/lfm2c is missing (cmake --build build)" >&2; exit 1; }
[ -f "$win" ] || { echo "windows_bench: $win is missing (bash scripts/build-windows.sh)" >&2; exit 1; }
export WINEPREFIX=${WINEPREFIX:-$PWD/${LFM2C_WIN_BUILD:-build-windows}/wineprefix} WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
wine=$(command -v wine64 || command -v wine || echo /usr/lib/wine/wine64)
wineserver -p 2>/dev/null || true
trap 'wineserver -k >/dev/null 2>&1 || true' EXIT

files=()
if [ -n "${FILES:-}" ]; then
  read -r -a files <<<"$FILES"
else
  mkdir -p "$dir"
  for preset in ${PRESETS:-lfm2-1.2b lfm2-8b-a1b}; do
    f=$dir/$preset-q4_k_m.gguf
    [ -f "$f" ] || ./build/lfm2c synth --preset "$preset" --type q4_k_m -o "$f" >/dev/null
    files+=("$f")
  done
fi
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') ($(grep -m1 'cpu family' /proc/cpuinfo | tr -d '\t')), $threads threads"
echo "kernels: Linux $(./build/lfm2c --version | sed -n 's/.*selected: //p'), Windows $("$wine" "$win" --version | tr -d '\r' | sed -n 's/.*selected: //p')"

# one run's pp and tg tokens/s (`bench -o csv`: n_prompt, n_gen, avg_ts are columns 4, 5, 6)
run() { # BIN... : "pp tg"
  "$@" -m "$f" -t "$threads" $args -o csv 2>/dev/null | tr -d '\r' |
    awk -F, 'NR > 1 { if ($4 > 0) pp = $6; else if ($5 > 0) tg = $6 } END { print pp + 0, tg + 0 }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

printf '%-28s %12s %12s %12s %12s %8s %8s\n' model "Linux pp" "Windows pp" "Linux tg" "Windows tg" "pp W/L" "tg W/L"
for f in "${files[@]}"; do
  : >/tmp/windows_bench.lin
  : >/tmp/windows_bench.win
  for _ in $(seq "$rounds"); do
    run ./build/lfm2c bench >>/tmp/windows_bench.lin
    run "$wine" "$win" bench >>/tmp/windows_bench.win
  done
  lp=$(cut -d' ' -f1 /tmp/windows_bench.lin | median) lt=$(cut -d' ' -f2 /tmp/windows_bench.lin | median)
  wp=$(cut -d' ' -f1 /tmp/windows_bench.win | median) wt=$(cut -d' ' -f2 /tmp/windows_bench.win | median)
  awk -v m="$(basename "$f")" -v lp="$lp" -v wp="$wp" -v lt="$lt" -v wt="$wt" 'BEGIN {
    printf "%-28s %12.1f %12.1f %12.2f %12.2f %8.3f %8.3f\n", m, lp, wp, lt, wt, lp ? wp / lp : 0, lt ? wt / lt : 0 }'
done
