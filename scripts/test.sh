#!/usr/bin/env bash
# The test command: builds (release, then ASan+UBSan) and runs the whole suite in each build.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")
# The sanitizer build is also the portable one (no -march=native): a kernel that uses an ISA
# extension its target attribute does not name fails to compile here, not on a user's CPU.
if [ "${LFM2C_SKIP_SANITIZE:-0}" != 1 ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DLFM2C_SANITIZE=ON -DLFM2C_PORTABLE=ON -DCMAKE_C_FLAGS_DEBUG="-O1 -g" >/dev/null
  cmake --build build-asan -j"$jobs"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j"$jobs")
fi
# The parsers' fuzzers (libFuzzer, ASan + UBSan), briefly: scripts/fuzz.sh SECONDS runs them longer.
if [ "${LFM2C_SKIP_FUZZ:-0}" != 1 ]; then
  bash scripts/fuzz.sh "${LFM2C_FUZZ_SECONDS:-20}" gguf safetensors jinja tokenizer toolcall grammar http
fi
# The CUDA backend must compile wherever nvcc is (CI has no GPU: the device tests skip, saying so).
if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then
  nvcc_bin=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
  cmake -S . -B build-cuda -DLFM2C_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc_bin" >/dev/null
  cmake --build build-cuda -j"$jobs"
  (cd build-cuda && ctest -R cuda --output-on-failure)
fi
