#!/usr/bin/env bash
# fuzz.sh [SECONDS_PER_TARGET|replay] [TARGET...] — builds the libFuzzer harnesses (tests/fuzz/fuzz_*.c,
# clang, ASan + UBSan) in build-fuzz/ and runs each for the given time (default 30 s) from its seed
# corpus (tests/fuzz/corpus/<target>/, read-only; new inputs go to build-fuzz/corpus/<target>/,
# kept between runs), with its dictionary when it has one (tests/fuzz/<target>.dict). Prints
# executions and coverage per target; exits 1 on any crash, leak, timeout or sanitizer report
# (the reproducer is in build-fuzz/artifacts/). The harnesses run one per core at once. The
# README's test command runs it briefly; run it longer by hand:
# bash scripts/fuzz.sh 600. Its build leaves out the Vulkan backend (no harness reaches it: the
# shaders need not be compiled) and keeps line tables only (a report still names file:line).
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(gguf safetensors jinja tokenizer toolcall grammar regex http lora reasoning image audio mmproj imatrix multipart)
if ! command -v clang >/dev/null || [ -z "$(ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a 2>/dev/null)" ]; then
  echo "fuzz: SKIP: clang and its libFuzzer runtime are not installed (scripts/setup.sh installs them)"
  exit 0
fi
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DLFM2C_FUZZ=ON -DLFM2C_PORTABLE=ON -DLFM2C_VULKAN=OFF \
  -DCMAKE_C_FLAGS_DEBUG="-O1 -gline-tables-only" >/dev/null || exit 1
cmake --build build-fuzz -j"$(nproc)" --target $(printf 'fuzz_%s ' "${targets[@]}") >/dev/null || exit 1
mkdir -p build-fuzz/artifacts
declare -A maxlen=([gguf]=65536 [safetensors]=16384 [jinja]=8192 [tokenizer]=4096 [toolcall]=4096 [grammar]=4096 [regex]=1024 [http]=8192 [lora]=32768 [reasoning]=4096 [image]=16384 [audio]=65536 [mmproj]=65536 [imatrix]=65536 [multipart]=16384)
# run_one TARGET: one harness; its log in build-fuzz/fuzz_TARGET.log, its exit status beside it (.rc)
run_one() {
  local t=$1 log="build-fuzz/fuzz_$1.log" mode corpora
  mkdir -p "build-fuzz/corpus/$t"
  # "replay" runs the seed corpus once, without mutation (a quick regression check)
  if [ "$secs" = replay ]; then mode=(-runs=0); corpora=("tests/fuzz/corpus/$t"); else mode=(-max_total_time="$secs"); corpora=("build-fuzz/corpus/$t" "tests/fuzz/corpus/$t"); fi
  # a target's dictionary (tests/fuzz/TARGET.dict: the words its inputs are made of) when it has one
  [ -f "tests/fuzz/$t.dict" ] && mode+=(-dict="tests/fuzz/$t.dict")
  LFM2C_FUZZ_MODEL=tests/data/lfm2-tiny-moe-q4_0.gguf ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "build-fuzz/fuzz_$t" "${corpora[@]}" "${mode[@]}" \
    -max_len="${maxlen[$t]}" -timeout=30 -rss_limit_mb=2560 -print_final_stats=1 \
    -artifact_prefix="build-fuzz/artifacts/$t-" >"$log" 2>&1
  echo $? >"$log.rc"
}
# one harness per core at a time (each runs on one thread; LFM2C_FUZZ_JOBS sets how many), then
# the results in the order given
par=${LFM2C_FUZZ_JOBS:-$(nproc)}
running=0
for t in "${targets[@]}"; do
  rm -f "build-fuzz/fuzz_$t.log.rc"
  run_one "$t" &
  running=$((running + 1))
  if [ $running -ge "$par" ]; then wait -n; running=$((running - 1)); fi
done
wait
status=0 total=0
for t in "${targets[@]}"; do
  log="build-fuzz/fuzz_$t.log"
  rc=$(cat "$log.rc" 2>/dev/null || echo 1)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)
  total=$((total + ${execs:-0}))
  if [ "$rc" -ne 0 ]; then
    status=1
    echo "fuzz_$t: FAILED (exit $rc) after ${execs:-?} executions — see $log"
    grep -E 'ERROR|SUMMARY|runtime error' "$log" | head -5
  else
    echo "fuzz_$t: ${execs:-0} executions ($([ "$secs" = replay ] && echo "seed corpus replayed" || echo "${secs} s")), $cov, no crash"
  fi
done
echo "fuzz: $total executions in all"
exit $status
