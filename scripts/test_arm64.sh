#!/usr/bin/env bash
# test_arm64.sh — the ARM64 stage of the test command (scripts/test.sh runs it last; it runs
# alone too): cross-compiles the library and the quick C tests for aarch64 with
# cmake/toolchain-aarch64.cmake into build-arm64/ and runs them under qemu-aarch64, on each CPU
# model of LFM2C_ARM_CPUS ("max": dotprod + i8mm; "cortex-a72": plain ARMv8.0 NEON), then the
# model tests once more with the scalar kernels forced (LFM2C_ISA=scalar). Each run says which
# CPU model it used and which kernel tables test_kernels exercised there.
#
# Chosen by time: under emulation a test runs 10-50 times slower, so test_model runs quick
# (LFM2C_TEST_QUICK=1: every fixture's fast path against its goldens and the cache paths; no
# reference-mode forwards, no KV cache types: 22 s instead of 140 s), test_quantize (minutes
# there) stays with the x86 stages, and so does test_jinja (its time-budget check measures wall
# time), and so does test_session_batch (5 minutes there).
export LFM2C_TEST_QUICK=1
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

missing=""
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing="$missing gcc-aarch64-linux-gnu"
[ -e /usr/aarch64-linux-gnu/lib/crt1.o ] || missing="$missing libc6-dev-arm64-cross"
command -v qemu-aarch64 >/dev/null 2>&1 || command -v qemu-aarch64-static >/dev/null 2>&1 || missing="$missing qemu-user"
# (libjansson-dev:arm64 brings libc6:arm64, whose loader /lib/ld-linux-aarch64.so.1 qemu runs)
[ -f /usr/lib/aarch64-linux-gnu/pkgconfig/jansson.pc ] && [ -e /lib/ld-linux-aarch64.so.1 ] ||
  missing="$missing libjansson-dev:arm64"
if [ -n "$missing" ]; then
  echo "arm64: missing$missing: scripts/setup.sh installs them (LFM2C_SKIP_ARM=1 skips this stage)" >&2
  exit 1
fi

# every CPU model runs the kernel-dependent tests; the first also runs the rest
kernel_tests="test_kernels test_kernels_attn test_kernels_choose test_model"
other_tests="test_gguf test_gguf_write test_ggml_types test_name_index test_sampler test_threadpool test_tokenizer
             test_tokenizer_api test_lfm2_arch test_matmul test_session test_sha256 test_grammar test_toolcall
             test_convert test_public_api test_null_handles"
re() { echo "^($(echo "$*" | tr ' ' '|'))\$"; }

start=$SECONDS
cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64.cmake -DCMAKE_BUILD_TYPE=Release \
      -DLFM2C_SERVER=OFF >/dev/null
cmake --build build-arm64 -j"$jobs" --target lfm2c $kernel_tests $other_tests
echo "arm64: built in $((SECONDS - start)) s"

# run CPU ISA TESTS...: ctest under qemu-aarch64 -cpu CPU (LFM2C_ISA=ISA unless ISA is "-")
run() {
  local cpu=$1 isa=$2 t0=$SECONDS
  shift 2
  cmake -S . -B build-arm64 -DLFM2C_QEMU_CPU="$cpu" >/dev/null   # the emulator line; nothing is rebuilt
  local cmd
  cmd=$(cd build-arm64 && ctest -N -V -R '^test_kernels$' | sed -n 's/.*Test command: //p' | head -1)
  echo "arm64: qemu-aarch64 -cpu $cpu${isa:+ with LFM2C_ISA=$isa} ($cmd): $*"
  if [ -n "$isa" ]; then
    (cd build-arm64 && LFM2C_ISA=$isa ctest --output-on-failure -j"$jobs" -R "$(re "$@")")
  else
    (cd build-arm64 && env -u LFM2C_ISA ctest --output-on-failure -j"$jobs" -R "$(re "$@")")
  fi
  # test_kernels prints the tables it compared with the scalar one
  if [[ " $* " == *" test_kernels "* ]]; then
    echo "arm64: -cpu $cpu: kernel tables tested: $(sed -n 's/^table: //p' build-arm64/Testing/Temporary/LastTest.log | tr '\n' ' ')"
  fi
  echo "arm64: -cpu $cpu${isa:+ LFM2C_ISA=$isa}: $((SECONDS - t0)) s"
}
cpus=(${LFM2C_ARM_CPUS:-max cortex-a72})
run "${cpus[0]}" "" $kernel_tests $other_tests
for cpu in "${cpus[@]:1}"; do run "$cpu" "" $kernel_tests; done
run "${cpus[0]}" scalar test_kernels_attn test_model
echo "arm64: stage done in $((SECONDS - start)) s"
