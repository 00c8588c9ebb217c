#!/usr/bin/env bash
# The test command: builds (release, then ASan+UBSan) and runs the whole suite in each build;
# then ThreadSanitizer on the model registry's stress test, the parsers' fuzzers, the CUDA build
# where nvcc is, the ARM64 stage (cross-compiled, run under qemu) and the Windows stage
# (cross-compiled, run under Wine). LFM2C_SKIP_SANITIZE=1, LFM2C_SKIP_TSAN=1, LFM2C_SKIP_FUZZ=1,
# LFM2C_SKIP_ARM=1, LFM2C_SKIP_WINDOWS=1 skip a stage;
# LFM2C_VULKAN_SERVE=0 skips the server suite's device part on the Vulkan device.
#   bash scripts/test.sh [--setup]   --setup: first install what the tests need (setup.sh --test)
set -euo pipefail
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/.."
for a in "$@"; do
  case "$a" in
    --setup) bash scripts/setup.sh --test ;;
    -h|--help) sed -n '2,8p' "$self" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test: unknown option '$a' (--setup installs the tests' packages first)" >&2; exit 2 ;;
  esac
done
jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")
# The server suite's device part (LFM2C_TEST_SERVE_QUICK: the OpenAI SDK suite, concurrent ==
# serial, the other APIs' clients) on the Vulkan backend, once (release build), wherever the
# backend is built and a device (lavapipe in CI) opens a model; LFM2C_VULKAN_SERVE=0 skips it.
# Bounded (lavapipe decodes slowly): past LFM2C_VULKAN_SERVE_TIMEOUT seconds (900) timeout stops
# the suite, its servers and clients (SIGTERM, SIGKILL 30 s later) and the stage fails saying so.
if [ "${LFM2C_VULKAN_SERVE:-1}" != 0 ] && build/lfm2c --version | grep "^vulkan: yes" >/dev/null; then
  if build/lfm2c logits -m tests/data/lfm2-tiny-dense-f32.gguf --tokens 1 --device vulkan -o /dev/null >/dev/null 2>&1; then
    limit=${LFM2C_VULKAN_SERVE_TIMEOUT:-900}
    echo "== the server suite's device part on --device vulkan (at most $limit s)"
    rc=0
    LFM2C_TEST_SERVE_DEVICE=vulkan LFM2C_TEST_SERVE_QUICK=1 timeout -k 30 "$limit" bash tests/test_server.sh build/lfm2c || rc=$?
    if [ $rc = 124 ] || [ $rc = 137 ]; then
      echo "FAIL the server suite on --device vulkan did not finish within $limit s (LFM2C_VULKAN_SERVE_TIMEOUT): stopped" >&2
      exit 1
    fi
    [ $rc = 0 ] || { echo "FAIL the server suite on --device vulkan (exit $rc)" >&2; exit 1; }
  else
    echo "== the server suite on --device vulkan skipped: the backend is built but no Vulkan device opens a model (lavapipe: mesa-vulkan-drivers)"
  fi
fi
# The sanitizer build is also the portable one (no -march=native): a kernel that uses an ISA
# extension its target attribute does not name fails to compile here, not on a user's CPU.
if [ "${LFM2C_SKIP_SANITIZE:-0}" != 1 ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DLFM2C_SANITIZE=ON -DLFM2C_PORTABLE=ON -DCMAKE_C_FLAGS_DEBUG="-O1 -g" >/dev/null
  cmake --build build-asan -j"$jobs"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j"$jobs")
fi
# ThreadSanitizer on one test: the model registry's stress (tests/serve/test_models_stress.c: 16
# threads loading, unloading, deleting and pulling three models with --max-loaded 1, then a
# shutdown in the middle). Only its target is built (the engine, the server's code and the
# test: ~1.5 CPU-minutes), not the suite; it runs 6 s of churn and fails at the first report.
if [ "${LFM2C_SKIP_TSAN:-0}" != 1 ]; then
  cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DLFM2C_TSAN=ON -DLFM2C_PORTABLE=ON -DLFM2C_VULKAN=OFF \
    -DCMAKE_C_FLAGS_DEBUG="-O1 -g" >/dev/null
  cmake --build build-tsan -j"$jobs" --target test_models_stress
  (cd tests && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" LFM2C_STRESS_SECONDS=6 \
    ../build-tsan/test_models_stress)
fi
# The parsers' fuzzers (libFuzzer, ASan + UBSan), briefly: scripts/fuzz.sh SECONDS runs them longer.
if [ "${LFM2C_SKIP_FUZZ:-0}" != 1 ]; then
  bash scripts/fuzz.sh "${LFM2C_FUZZ_SECONDS:-15}" gguf safetensors jinja tokenizer toolcall grammar regex http lora reasoning image audio mmproj imatrix multipart
fi
# The CUDA backend must compile wherever nvcc is (CI has no GPU: the device tests skip, saying so).
if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then
  nvcc_bin=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
  cmake -S . -B build-cuda -DLFM2C_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc_bin" >/dev/null
  # the CLI, the shared library and the CUDA tests: the other tests ran in the builds above
  cuda_tests=$(cd tests/cuda && ls test_*.cu test_*.cpp 2>/dev/null | sed 's/\.[a-z]*$//')
  cmake --build build-cuda -j"$jobs" --target lfm2c_cli lfm2c_shared $cuda_tests
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
# Windows x64 without Windows: cross-compiled with mingw-w64 against the libraries built from
# their Debian sources (cached in ~/.cache/lfm2c-windows), run under Wine: the C tests, the CLI's
# suites and the server under the Linux clients (scripts/test_windows.sh; docs/TESTING.md).
if [ "${LFM2C_SKIP_WINDOWS:-0}" != 1 ]; then
  bash scripts/test_windows.sh
fi
