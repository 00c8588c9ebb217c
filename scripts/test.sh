#!/usr/bin/env bash
# The test command: builds (release, then ASan+UBSan) and runs the whole suite in each build;
# then the parsers' fuzzers, the CUDA build where nvcc is, and the ARM64 stage (cross-compiled,
# run under qemu). LFM2C_SKIP_SANITIZE=1, LFM2C_SKIP_FUZZ=1, LFM2C_SKIP_ARM=1 skip a stage;
# LFM2C_VULKAN_SERVE=1 adds the server suite on the Vulkan device.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")
# The server suite's device part (LFM2C_TEST_SERVE_QUICK: the OpenAI SDK suite, concurrent ==
# serial, the other APIs' clients) on the Vulkan backend, where it is built and a device (lavapipe
# in CI) opens a model; bounded, as lavapipe decodes slowly. Opt-in (LFM2C_VULKAN_SERVE=1) until
# a request that now and then never finishes on lavapipe is found (docs/VULKAN.md).
if [ "${LFM2C_VULKAN_SERVE:-0}" = 1 ] && build/lfm2c --version | grep -q "^vulkan: yes" &&
   build/lfm2c logits -m tests/data/lfm2-tiny-dense-f32.gguf --tokens 1 --device vulkan -o /dev/null >/dev/null 2>&1; then
  LFM2C_TEST_SERVE_DEVICE=vulkan LFM2C_TEST_SERVE_QUICK=1 timeout 900 bash tests/test_server.sh build/lfm2c
fi
# The sanitizer build is also the portable one (no -march=native): a kernel that uses an ISA
# extension its target attribute does not name fails to compile here, not on a user's CPU.
if [ "${LFM2C_SKIP_SANITIZE:-0}" != 1 ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DLFM2C_SANITIZE=ON -DLFM2C_PORTABLE=ON -DCMAKE_C_FLAGS_DEBUG="-O1 -g" >/dev/null
  cmake --build build-asan -j"$jobs"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j"$jobs")
fi
# The parsers' fuzzers (libFuzzer, ASan + UBSan), briefly: scripts/fuzz.sh SECONDS runs them longer.
if [ "${LFM2C_SKIP_FUZZ:-0}" != 1 ]; then
  bash scripts/fuzz.sh "${LFM2C_FUZZ_SECONDS:-20}" gguf safetensors jinja tokenizer toolcall grammar regex http lora reasoning
fi
# The CUDA backend must compile wherever nvcc is (CI has no GPU: the device tests skip, saying so).
if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then
  nvcc_bin=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
  cmake -S . -B build-cuda -DLFM2C_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc_bin" >/dev/null
  cmake --build build-cuda -j"$jobs"
  (cd build-cuda && ctest -R cuda --output-on-failure)
fi
# ARM64 without ARM hardware: cross-compiled (cmake/toolchain-aarch64.cmake) and run under
# qemu-aarch64, once on a CPU with dotprod + i8mm ("max") and once on plain ARMv8.0 NEON
# ("cortex-a72"), so each kernel table the dispatcher can pick on ARM meets the tests. Only the
# library and the C tests that finish in seconds under emulation (the kernels, the golden logits
# of every fixture, the formats and text layers) are built and run; the server and the hub are
# left out of this build. scripts/setup.sh installs the cross compiler, qemu-user and
# libjansson-dev:arm64.
if [ "${LFM2C_SKIP_ARM:-0}" != 1 ]; then
  bash scripts/test_arm64.sh
fi
