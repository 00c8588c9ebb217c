#!/usr/bin/env bash
# gpu_check.sh — the whole GPU check of the CUDA backend in one command (issue 35), for a machine
# with an NVIDIA GPU that receives the repository only. It finds the GPU and its compute
# capability, builds with CUDA for it, makes the synthetic models it needs there (`lfm2c synth`),
# checks correctness (the CUDA tests, compute-sanitizer, golden logits of every fixture against
# the CPU --reference path, greedy continuations, batched == solo) and measures speed (bench,
# batched bench, nsys, serve under load), and writes OUTDIR/report.md, OUTDIR/results.json and
# OUTDIR/logs.tar.gz. Every step has its own timeout and the whole call a budget, so a hang
# costs one step, and the stages can be split over several calls: the build and the models stay
# in the build folder between calls, each call rewrites the report from every stage run so far.
# Without a GPU it says so, writes that into the report and exits 0.
#
#   scripts/gpu_check.sh [--stage all|build,correct,sanitize,speed,serve,bf16,vulkan,throughput] [--budget S]
#                        [--build-dir DIR] [--device cuda|cpu] [--arch CC] [--quick] OUTDIR
#   scripts/gpu_check.sh --fetch-deps     (here, before the GPU call: .gpu-deps/, see below)
#
# --device cpu runs the same stages on the CPU (a dry run of everything but the GPU: the
# comparisons, the report); --quick shrinks the synthetic model and the benchmark sizes;
# --arch CC builds for compute capability CC without asking a GPU (a build-only dry run).
# A GPU machine without pkg-config / jansson / libmicrohttpd: run --fetch-deps where apt works;
# it downloads their Debian packages into .gpu-deps/ (git-ignored: carry it to the GPU machine),
# which the build stage unpacks into the build folder when the system lacks them. It also fetches
# the Vulkan loader, headers and glslc: the build stage points CMake at them where the system has
# none, so the Vulkan backend is built too, and the vulkan stage runs its tests and
# `lfm2c bench --device vulkan` on the synthetic 24B-A2B and 1.2B (with the NVIDIA driver's
# Vulkan ICD; where the driver installed libGLX_nvidia but no ICD file, the stage writes one).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

usage() {
  sed -n '13,15p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
die() { echo "gpu_check: $*" >&2; exit 2; }

stages=all device=cuda build_dir= budget=570 arch= quick=0 outdir= fetch=0
while [ $# -gt 0 ]; do
  case $1 in
    --stage) [ $# -ge 2 ] || usage; stages=$2; shift 2;;
    --device) [ $# -ge 2 ] || usage; device=$2; shift 2;;
    --build-dir) [ $# -ge 2 ] || usage; build_dir=$2; shift 2;;
    --budget) [ $# -ge 2 ] || usage; budget=$2; shift 2;;
    --arch) [ $# -ge 2 ] || usage; arch=$2; shift 2;;
    --quick) quick=1; shift;;
    --fetch-deps) fetch=1; shift;;
    -h|--help) sed -n "2,26p" "$0" | sed "s/^# \{0,1\}//"; exit 0;;
    -*) die "unknown option '$1' (see --help)";;
    *) [ -z "$outdir" ] || die "one OUTDIR only (got '$outdir' and '$1')"; outdir=$1; shift;;
  esac
done

ALL_STAGES="build correct sanitize speed serve bf16 vulkan throughput"
if [ "$fetch" = 1 ]; then
  mkdir -p "$ROOT/.gpu-deps" && cd "$ROOT/.gpu-deps" || exit 1
  apt-get download pkgconf pkgconf-bin libpkgconf3 libjansson4 libjansson-dev libmicrohttpd12 libmicrohttpd-dev \
    libvulkan1 libvulkan-dev glslc libshaderc1 \
    || die "apt-get download failed (run apt-get update first)"
  echo "gpu_check: $(ls *.deb | wc -l) packages in .gpu-deps/ ($(du -sh . | cut -f1)); carry .gpu-deps to the GPU machine"
  exit 0
fi
[ -n "$outdir" ] || usage
case $device in cuda|cpu) ;; *) die "--device must be cuda or cpu, not '$device'";; esac
[[ $budget =~ ^[0-9]+$ ]] || die "--budget expects seconds, not '$budget'"
[ -z "$arch" ] || [[ $arch =~ ^[0-9]+[a-z]?$ ]] || die "--arch expects a compute capability like 90, not '$arch'"
[ "$stages" = all ] && stages=${ALL_STAGES// /,}
for s in ${stages//,/ }; do
  [[ " $ALL_STAGES " == *" $s "* ]] || die "unknown stage '$s' (stages: ${ALL_STAGES// /, }, all)"
done
mkdir -p "$outdir" || die "cannot create '$outdir'"
outdir=$(cd "$outdir" && pwd)
[ -n "$build_dir" ] || build_dir=$ROOT/build-gpu
[ "$device" = cpu ] && [ "$build_dir" = "$ROOT/build-gpu" ] && build_dir=$ROOT/build-gpu-cpu
mkdir -p "$build_dir" && build_dir=$(cd "$build_dir" && pwd)
WORK=$build_dir/gpu-check            # persists between calls: fragments, JSON, logs, models
mkdir -p "$WORK/frag" "$WORK/json" "$WORK/logs" "$WORK/models"
T0=$(date +%s)
BIN=$build_dir/lfm2c
JOBS=$(nproc 2>/dev/null || echo 2)

# ---- helpers ---------------------------------------------------------------------------------
left() { [ "$budget" = 0 ] && { echo 99999; return; }; echo $(( budget - ($(date +%s) - T0) )); }
# step_timeout WANT: WANT seconds, or what is left of the budget less a margin for the report
step_timeout() { local l; l=$(( $(left) - 20 )); [ "$1" -lt "$l" ] && echo "$1" || echo "$l"; }
# run_step NAME WANT CMD...: runs CMD with a timeout into logs/NAME.log; sets RC (124 = timed out,
# 125 = no budget left) and DUR
run_step() {
  local name=$1 want=$2; shift 2
  local t; t=$(step_timeout "$want")
  local log=$WORK/logs/$name.log
  if [ "$t" -lt 10 ]; then
    RC=125 DUR=0; echo "(skipped: this call's budget is spent)" >"$log"; echo "  $name: skipped (budget)" >&2; return
  fi
  local s; s=$(date +%s)
  echo "  $name (timeout ${t}s) ..." >&2
  { echo "\$ $*"; } >"$log"
  timeout -k 10 "$t" "$@" >>"$log" 2>&1
  RC=$?
  DUR=$(( $(date +%s) - s ))
  echo "  $name: rc $RC in ${DUR}s" >&2
}
rc_word() {  # what an exit status means, for the report
  case $1 in 0) echo ok;; 124|137) echo "TIMED OUT";; 125) echo "skipped (budget spent: rerun this stage)";; 77) echo "skipped (no CUDA device)";; *) echo "FAILED (rc $1)";; esac
}
frag() { cat >>"$WORK/frag/$CUR.md"; }   # append markdown to the current stage's fragment
tailog() { echo '```'; tail -n "${2:-15}" "$WORK/logs/$1.log" | cut -c1-300; echo '```'; }
begin_stage() {
  CUR=$1
  rm -f "$WORK/frag/$CUR.md" "$WORK/json/$CUR.json"
  echo "gpu_check: stage $CUR ($(left)s of the budget left)"
  echo "## $CUR  ($(date -u '+%Y-%m-%d %H:%M UTC'))" | frag
  echo | frag
}
py() { python3 - "$@"; }

# ---- the machine -----------------------------------------------------------------------------
gpu_name= gpu_cc= gpu_driver= gpu_mem=
detect_gpu() {
  local smi=${GPU_CHECK_NVIDIA_SMI:-nvidia-smi} line
  command -v "$smi" >/dev/null 2>&1 || { NO_GPU="nvidia-smi not found"; return 1; }
  line=$("$smi" --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)
  if [ -z "$line" ] || [[ $line == *"NVIDIA-SMI has failed"* ]] || [[ $line == *"No devices"* ]] || [[ $line != *,*,* ]]; then
    NO_GPU="nvidia-smi lists no GPU (${line:-no output})"; return 1
  fi
  IFS=, read -r gpu_name gpu_cc gpu_driver gpu_mem <<<"$line"
  gpu_name=$(echo $gpu_name) gpu_cc=$(echo $gpu_cc) gpu_driver=$(echo $gpu_driver) gpu_mem=$(echo $gpu_mem)
  return 0
}
find_cuda_tool() {  # find_cuda_tool NAME: on PATH, else under /usr/local/cuda*/bin or /opt/nvidia
  command -v "$1" 2>/dev/null && return 0
  local c
  for c in /usr/local/cuda/bin/"$1" /usr/local/cuda-*/bin/"$1" /opt/nvidia/nsight-systems/*/bin/"$1" \
           /opt/nvidia/nsight-systems*/bin/"$1" /usr/local/cuda/nsight-systems*/bin/"$1" \
           /opt/nvidia/nsight-compute/*/"$1" /usr/local/cuda/nsight-compute*/"$1"; do
    [ -x "$c" ] && { echo "$c"; return 0; }
  done
  return 1
}

# The results beside the targets of issue 35, from the JSON of the stages run so far.
summary() {
  py "$WORK/json" <<'EOF'
import json, os, sys
d = sys.argv[1]
def get(n):
    try: return json.load(open(os.path.join(d, n + '.json')))
    except Exception: return None
def bench(n, test_prefix):
    for r in get(n) or []:
        if str(r.get('test', '')).startswith(test_prefix): return r
    return None
print("## Summary\n")
print("| check | result | target |")
print("|---|---|---|")
b = get('build')
if b: print("| build | %s (%s s) | |" % ("ok" if b.get('ok') else "**FAILED**", b.get('seconds')))
c = get('correct_logits')
if c:
    bad = [f['fixture'] for f in c['fixtures'] if not f.get('ok')]
    print("| golden logits, %d fixtures | %s | all within the CPU fast path's limits |" % (len(c['fixtures']), "all within" if c['ok'] else "**failed: " + ", ".join(bad) + "**"))
t = get('ctest_cuda')
if t: print("| ctest -R cuda | %s | passed, device tests run |" % ("**device tests skipped**" if t['device_tests_skipped'] else "passed" if t['rc'] == 0 else "**rc %d**" % t['rc']))
g = get('correct_greedy')
if g: print("| greedy continuations (F32) | %d of %d identical to the CPU | all |" % (sum(1 for x in g if x['identical']), len(g)))
for k, v in (get('sanitize') or {}).items():
    print("| compute-sanitizer %s | %s | rc 0 |" % (k.replace('_', ' ', 1), "clean" if v['rc'] == 0 else "**rc %d**" % v['rc']))
for name, label, target in (('bench_single', 'single stream Q4_K_M', 'tg128 ≥ 600 tok/s on H100 (llama.cpp 293)'),
                            ('bench_nograph', 'single stream Q4_K_M, no CUDA graph', ''),
                            ('bench_bf16_single', 'single stream BF16', '')):
    tg, pp = bench(name, 'tg'), bench(name, 'pp')
    if tg: print("| %s %s | %.1f tok/s, %.1f GB/s | %s |" % (label, tg['test'], tg['avg_ts'], tg.get('gbps', 0), target))
    if pp: print("| %s %s | %.1f tok/s | |" % (label, pp['test'], pp['avg_ts']))
for name, label in (('bench_batched', 'batched Q4_K_M'), ('bench_batched_small', 'batched Q4_K_M (smaller)'),
                    ('bench_bf16_batched', 'batched BF16'), ('bench_bf16_batched_small', 'batched BF16 (smaller)')):
    r = bench(name, 'b')
    if r: print("| %s %s | %.0f total tok/s | ≥ 30K on H100 (vLLM 26.8K at BF16) |" % (label, r['test'], r['avg_ts']))
for r in get('serve') or []:
    print("| serve, concurrency %d | %.1f total tok/s, TTFT p50 %.0f / p99 %.0f ms | |" % (r['concurrency'], r['total_tps'], r['ttft_p50_ms'], r['ttft_p99_ms']))
EOF
}

write_report() {
  local f=$outdir/report.md
  {
    echo "# lfm2c GPU check"
    echo
    echo "- commit: $(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (with local changes)'), report written $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- device: $device; $( [ -n "$gpu_name" ] && echo "GPU: $gpu_name, compute capability $gpu_cc, driver $gpu_driver, $gpu_mem" || echo "GPU: ${NO_GPU:-not used}")"
    echo "- host: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //'), $JOBS cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo 2>/dev/null)"
    echo "- build: $build_dir$( [ -f "$WORK/build.info" ] && echo "; $(cat "$WORK/build.info")")"
    echo "- stages in this report: $(cd "$WORK/frag" && ls *.md 2>/dev/null | sed 's/\.md$//' | tr '\n' ' ')"
    echo
    summary
    echo
    for s in $ALL_STAGES; do [ -f "$WORK/frag/$s.md" ] && { cat "$WORK/frag/$s.md"; echo; }; done
  } >"$f"
  py "$WORK/json" "$outdir/results.json" <<'EOF'
import json, os, sys
d, out = sys.argv[1], sys.argv[2]
res = {}
for f in sorted(os.listdir(d)):
    if f.endswith('.json'):
        try: res[f[:-5]] = json.load(open(os.path.join(d, f)))
        except Exception as e: res[f[:-5]] = {"error": str(e)}
json.dump(res, open(out, 'w'), indent=1)
EOF
  # logs, each cut to its last 256 KB so the archive stays small
  local tmp; tmp=$(mktemp -d)
  mkdir -p "$tmp/logs"
  for l in "$WORK"/logs/*.log "$WORK"/logs/*.out; do [ -f "$l" ] && tail -c 262144 "$l" >"$tmp/logs/$(basename "$l")"; done
  tar -C "$tmp" -czf "$outdir/logs.tar.gz" logs 2>/dev/null
  rm -rf "$tmp"
  echo "gpu_check: wrote $f, $outdir/results.json, $outdir/logs.tar.gz"
}

if [ "$device" = cuda ] && ! detect_gpu; then
  if [ -n "$arch" ] && [ "$stages" = build ]; then
    gpu_cc=$arch; echo "gpu_check: $NO_GPU; building for compute capability $arch as asked (--arch)"
  else
    msg="no NVIDIA GPU here ($NO_GPU): nothing to check. Run this on a machine with an NVIDIA GPU (H100/H200), or with --device cpu for a dry run."
    echo "gpu_check: $msg"
    { echo "# lfm2c GPU check"; echo; echo "$msg"; } >"$outdir/report.md"
    exit 0
  fi
fi
[ -n "$arch" ] && gpu_cc=$arch
cc_num=${gpu_cc//./}

# ---- stage: build ----------------------------------------------------------------------------
# use_deps (not in a subshell: it exports): where the system lacks pkg-config / jansson / libmicrohttpd, unpack .gpu-deps/*.deb
# into the build folder and point pkg-config there (prefixes rewritten in the .pc files)
PKGCFG=()
use_deps() {
  local have=1
  command -v pkg-config >/dev/null 2>&1 && pkg-config --exists jansson libmicrohttpd 2>/dev/null || have=0
  { command -v glslc >/dev/null 2>&1 && [ -f /usr/include/vulkan/vulkan.h ]; } || { ls "$ROOT"/.gpu-deps/glslc_*.deb >/dev/null 2>&1 && have=0; }
  [ "${GPU_CHECK_USE_DEPS:-0}" = 1 ] && have=0
  [ "$have" = 1 ] && { DEPS="system pkg-config, jansson, libmicrohttpd"; return 0; }
  ls "$ROOT"/.gpu-deps/*.deb >/dev/null 2>&1 || { DEPS="the system lacks pkg-config / jansson / libmicrohttpd and there is no .gpu-deps/ (scripts/gpu_check.sh --fetch-deps)"; return 0; }
  local d=$build_dir/deps deb
  rm -rf "$d" && mkdir -p "$d/root" "$d/pc" "$d/bin"
  for deb in "$ROOT"/.gpu-deps/*.deb; do
    if command -v dpkg-deb >/dev/null 2>&1; then dpkg-deb -x "$deb" "$d/root"
    else (cd "$d" && ar x "$deb" data.tar.xz && tar -C root -xf data.tar.xz && rm -f data.tar.xz); fi
  done
  local lib=$d/root/usr/lib/x86_64-linux-gnu
  # (Requires.private dropped: the build links the shared libraries, and a machine without
  # gnutls' .pc would otherwise lose libmicrohttpd)
  for pc in "$lib"/pkgconfig/*.pc; do
    sed -e "s|^prefix=.*|prefix=$d/root/usr|" -e '/^Requires.private:/d' "$pc" >"$d/pc/$(basename "$pc")"
  done
  export PKG_CONFIG_PATH=$d/pc${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
  export LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  if ! command -v pkg-config >/dev/null 2>&1; then
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$lib" "$d/root/usr/bin/pkgconf" >"$d/bin/pkg-config"
    chmod +x "$d/bin/pkg-config"
    export PATH=$d/bin:$PATH
    PKGCFG=(-DPKG_CONFIG_EXECUTABLE="$d/bin/pkg-config")
  fi
  DEPS="from .gpu-deps/ ($(ls "$ROOT"/.gpu-deps/*.deb | wc -l) packages, unpacked into $d)"
}
# vulkan_cfg: CMake flags for the Vulkan backend from the unpacked .gpu-deps where the system has no
# headers / glslc (the system's are found by CMake itself)
vulkan_cfg() {
  local r=$build_dir/deps/root lib=$build_dir/deps/root/usr/lib/x86_64-linux-gnu
  { command -v glslc >/dev/null 2>&1 && [ -f /usr/include/vulkan/vulkan.h ]; } && return 0
  [ -x "$r/usr/bin/glslc" ] && [ -f "$r/usr/include/vulkan/vulkan.h" ] || return 0
  mkdir -p "$build_dir/deps/bin"
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$lib" "$r/usr/bin/glslc" >"$build_dir/deps/bin/glslc"
  chmod +x "$build_dir/deps/bin/glslc"
  VKCFG=(-DVulkan_INCLUDE_DIR="$r/usr/include" -DVulkan_LIBRARY="$lib/libvulkan.so" -DLFM2C_GLSLC="$build_dir/deps/bin/glslc")
}
# the build folder's environment in later calls too (a later call starts a fresh shell)
deps_env() {
  local d=$build_dir/deps lib=$build_dir/deps/root/usr/lib/x86_64-linux-gnu
  [ -d "$lib" ] && export LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  [ -x "$d/bin/pkg-config" ] && export PATH=$d/bin:$PATH
  return 0
}

stage_build() {
  begin_stage build
  local nvcc= cfg=(-DCMAKE_BUILD_TYPE=Release)
  use_deps   # sets DEPS, and PKG_CONFIG_PATH etc. in this shell
  echo "- dependencies: $DEPS" | frag
  if [ "$device" = cuda ]; then
    nvcc=$(find_cuda_tool nvcc) || { echo "- **FAILED**: nvcc not found (PATH, /usr/local/cuda/bin)" | frag; BUILD_OK=0; return; }
    export PATH=$(dirname "$nvcc"):$PATH
    cfg+=(-DLFM2C_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc" "-DLFM2C_CUDA_ARCHS=${cc_num}-real;${cc_num}-virtual")
    echo "- nvcc: $nvcc ($("$nvcc" --version | grep -o 'release [0-9.]*' | head -1)); architectures ${cc_num}-real;${cc_num}-virtual" | frag
  fi
  command -v ninja >/dev/null 2>&1 && [ ! -f "$build_dir/CMakeCache.txt" ] && cfg+=(-G Ninja)
  local server=ON
  pkg-config --exists libmicrohttpd 2>/dev/null || { server=OFF; echo "- libmicrohttpd not found: built without the server (the serve stage is skipped)" | frag; }
  VKCFG=(); vulkan_cfg
  [ "${GPU_CHECK_VULKAN:-}" = OFF ] && VKCFG=(-DLFM2C_VULKAN=OFF)   # a shorter build when the vulkan stage is not wanted
  run_step configure 120 cmake -S "$ROOT" -B "$build_dir" "${cfg[@]}" "${PKGCFG[@]}" "${VKCFG[@]}" -DLFM2C_SERVER=$server
  # keep going past a target that does not link there (a test program against that machine's own
  # toolchain), so the engine and the CUDA tests are built whatever else fails
  KEEP=(-- -k); [ -f "$build_dir/build.ninja" ] && KEEP=(-- -k 0)
  # GPU_CHECK_TARGETS="lfm2c": only those targets (a timing-only call; the correct stage needs the tests)
  local TGT=(); [ -n "${GPU_CHECK_TARGETS:-}" ] && TGT=(--target $GPU_CHECK_TARGETS)
  if [ "$RC" = 0 ]; then run_step compile 420 cmake --build "$build_dir" -j"$JOBS" "${TGT[@]}" "${KEEP[@]}"; fi
  if [ "$RC" != 0 ] && [ "$server" = ON ] && grep -q -i -E "microhttpd|gnutls" "$WORK/logs/compile.log" 2>/dev/null; then
    echo "- the server did not link (libmicrohttpd / gnutls): rebuilt without it" | frag
    server=OFF
    run_step configure2 120 cmake -S "$ROOT" -B "$build_dir" -DLFM2C_SERVER=OFF
    [ "$RC" = 0 ] && run_step compile2 420 cmake --build "$build_dir" -j"$JOBS" "${KEEP[@]}"
  fi
  if [ -x "$BIN" ] && { [ "$device" != cuda ] || [ -x "$build_dir/test_cuda_forward" ]; }; then
    BUILD_OK=1
    echo "- build: $( [ "$RC" = 0 ] && echo ok || echo "the engine and the CUDA tests built; **other targets failed** (rc $RC)") in ${DUR}s (-j$JOBS), server $server" | frag
    [ "$RC" = 0 ] || grep -h -E "^FAILED" "$WORK"/logs/compile*.log | cut -c1-160 | sed 's/^/  - /' | frag
    echo '```' | frag; "$BIN" --version 2>&1 | frag; echo '```' | frag
    echo "$( [ "$device" = cuda ] && echo "CUDA ${cc_num}, ")server $server" >"$WORK/build.info"
  else
    BUILD_OK=0
    echo "- **build $(rc_word "$RC")**" | frag; tailog "$( [ -f "$WORK/logs/compile.log" ] && echo compile || echo configure)" 30 | frag
  fi
  echo "{\"ok\": $([ "$BUILD_OK" = 1 ] && echo true || echo false), \"seconds\": $DUR, \"server\": \"$server\", \"cc\": \"$cc_num\"}" >"$WORK/json/build.json"
}

need_bin() {
  [ -x "$BIN" ] && return 0
  echo "- **skipped**: no $BIN (run the build stage first)" | frag
  return 1
}

# ---- stage: correct --------------------------------------------------------------------------
stage_correct() {
  begin_stage correct
  need_bin || return
  # 1. the CUDA tests
  if [ "$device" = cuda ]; then
    # test_cuda_emu (the kernels emulated on the CPU, minutes) runs in CI: not here
    run_step ctest_cuda 300 bash -c "cd '$build_dir' && ctest -R cuda -E emu -V"
    local skipped=false
    grep -q "SKIP: no CUDA device" "$WORK/logs/ctest_cuda.log" && skipped=true
    echo "- \`ctest -R cuda\`: $(rc_word "$RC") in ${DUR}s — $(grep -E 'tests passed|tests failed' "$WORK/logs/ctest_cuda.log" | tail -1)" | frag
    [ "$skipped" = true ] && echo "- **the device tests SKIPPED: CUDA saw no device although nvidia-smi lists one** (driver / runtime mismatch?)" | frag
    echo '```' | frag; grep -E "CUDA vs|batched|FAIL|SKIP|passed, .* failed" "$WORK/logs/ctest_cuda.log" | cut -c1-200 | head -40 | frag; echo '```' | frag
    local rc_tc=$RC
    if [ "$device" = cuda ] && [ -x "$build_dir/test_cuda_forward" ]; then   # the GEMMs in float (gemm_kernel) too
      run_step ctest_cuda_float 240 bash -c "cd '$ROOT/tests' && LFM2C_CUDA_TC=0 '$build_dir/test_cuda_forward'"
      echo "- test_cuda_forward with \`LFM2C_CUDA_TC=0\` (the GEMMs in float, not on the tensor cores): $(rc_word "$RC") in ${DUR}s — $(tail -1 "$WORK/logs/ctest_cuda_float.log")" | frag
      run_step ctest_cuda_fused 240 bash -c "cd '$ROOT/tests' && LFM2C_CUDA_FUSE=1 '$build_dir/test_cuda_forward'"
      echo "- test_cuda_forward with \`LFM2C_CUDA_FUSE=1\` (a decode step's add + norm, routing and conv in the product before them, off by default): $(rc_word "$RC") in ${DUR}s — $(tail -1 "$WORK/logs/ctest_cuda_fused.log")" | frag
      # GPU_CHECK_TEST_ENVS="VAR=VALUE ...": test_cuda_forward again with each one set (variants to make default)
      local tenv
      for tenv in ${GPU_CHECK_TEST_ENVS:-}; do
        run_step "ctest_cuda_${tenv//[^A-Za-z0-9]/_}" 240 env -C "$ROOT/tests" "$tenv" "$build_dir/test_cuda_forward"
        echo "- test_cuda_forward with \`$tenv\`: $(rc_word "$RC") in ${DUR}s — $(tail -1 "$WORK/logs/ctest_cuda_${tenv//[^A-Za-z0-9]/_}.log")" | frag
      done
      # failed: again without the overlapping launches, then also unfused, to name the culprit
      if [ "$rc_tc" != 0 ] && [ "$skipped" = false ]; then
        run_step ctest_cuda_nopdl 240 bash -c "cd '$ROOT/tests' && LFM2C_CUDA_PDL=0 '$build_dir/test_cuda_forward'"
        echo "- failed: again with \`LFM2C_CUDA_PDL=0\` (no overlapping launches): $(rc_word "$RC") — $(tail -1 "$WORK/logs/ctest_cuda_nopdl.log")" | frag
        run_step ctest_cuda_plain 240 bash -c "cd '$ROOT/tests' && LFM2C_CUDA_PDL=0 LFM2C_CUDA_FUSE=0 LFM2C_CUDA_GLU=0 '$build_dir/test_cuda_forward'"
        echo "- and with \`LFM2C_CUDA_PDL=0 LFM2C_CUDA_FUSE=0 LFM2C_CUDA_GLU=0\` (no overlap, nothing fused): $(rc_word "$RC") — $(tail -1 "$WORK/logs/ctest_cuda_plain.log")" | frag
      fi
      RC=$rc_tc
    fi
    echo "{\"rc\": $RC, \"seconds\": $DUR, \"device_tests_skipped\": $skipped}" >"$WORK/json/ctest_cuda.json"
    grep -h -E "SKIP|CUDA vs|batched sessions|FAIL" "$WORK/logs/ctest_cuda.log" | head -40 >"$WORK/logs/ctest_cuda.summary"
  else
    echo "- \`ctest -R cuda\`: not run (--device cpu)" | frag
  fi
  # 2. golden logits of every fixture, device vs the CPU --reference path; 3. greedy continuations
  local data=$ROOT/tests/data n=0
  : >"$WORK/logs/logits.tsv"
  for js in "$data"/*.golden.json; do
    local name; name=$(basename "$js" .golden.json)
    local ids; ids=$(py "$js" <<<'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["token_ids"])))')
    local o=$WORK/logits/$name; mkdir -p "$o"
    run_step "logits_$name" 60 bash -c "
      '$BIN' logits -m '$data/$name.gguf' --tokens $ids --device $device -o '$o/dev.f32' &&
      '$BIN' logits -m '$data/$name.gguf' --tokens $ids --device $device --one-by-one -o '$o/one.f32' &&
      '$BIN' logits -m '$data/$name.gguf' --tokens $ids --reference -o '$o/ref.f32'"
    echo -e "$name\t$RC" >>"$WORK/logs/logits.tsv"
    n=$((n+1))
  done
  py "$data" "$WORK/logits" "$WORK/logs/logits.tsv" "$device" "$WORK/json/correct_logits.json" >"$WORK/logs/logits_table.md" <<'EOF'
import array, json, os, sys
data, ldir, tsv, device, out = sys.argv[1:6]
def rd(p):
    a = array.array('f')
    with open(p, 'rb') as f: a.frombytes(f.read())
    return a
def maxabs(a, b):
    if len(a) != len(b): return float('inf')
    return max(abs(x - y) for x, y in zip(a, b)) if a else 0.0
def argmax_agree(a, b, V):
    n = len(a) // V; same = 0
    for i in range(n):
        ra, rb = a[i*V:(i+1)*V], b[i*V:(i+1)*V]
        same += max(range(V), key=ra.__getitem__) == max(range(V), key=rb.__getitem__)
    return same, n
rows, ok_all = [], True
print("| fixture | one-by-one vs batch (≤1e-3) | %s vs --reference | vs golden / dequant-ref | top-1 = reference | verdict |" % device)
print("|---|---:|---:|---:|---:|---|")
for line in open(tsv):
    name, rc = line.split('\t'); rc = int(rc)
    r = {"fixture": name, "rc": rc}
    if rc != 0:
        r["ok"] = False; ok_all = False; rows.append(r)
        print("| %s | | | | | **%s** |" % (name, "skipped (budget spent: rerun this stage)" if rc == 125 else "run failed (rc %d)" % rc)); continue
    g = json.load(open(os.path.join(data, name + '.golden.json'))); V = g["n_vocab"]
    dev, one, ref = (rd(os.path.join(ldir, name, x)) for x in ('dev.f32', 'one.f32', 'ref.f32'))
    gold = rd(os.path.join(data, name + '.golden.logits.f32.bin'))
    f32 = 'f32' in name
    d_one, d_ref = maxabs(dev, one), maxabs(dev, ref)
    same, npos = argmax_agree(dev, ref, V)
    if f32:
        d_gold = maxabs(dev, gold); lim_gold = 1e-3; lim_ref = 1e-3
        gtxt = "golden %.2e (≤1e-3)" % d_gold
    else:
        dq = rd(os.path.join(data, name + '.dequant-ref.logits.f32.bin'))
        d_gold = maxabs(dev, dq); lim_gold = 1.5 * maxabs(gold, dq) + 0.5
        # CUDA keeps activations in float like --reference; the CPU fast path quantizes them
        lim_ref = 1e-2 if device == 'cuda' else float('inf')
        gtxt = "dequant-ref %.3f (≤%.3f)" % (d_gold, lim_gold)
    ok = d_one <= 1e-3 and d_gold <= lim_gold and d_ref <= lim_ref
    ok_all &= ok
    r.update(ok=ok, one_vs_batch=d_one, vs_reference=d_ref, vs_reference_limit=lim_ref if lim_ref != float('inf') else None,
             vs_golden_or_dequant_ref=d_gold, limit=lim_gold, top1_agree=same, positions=npos)
    rows.append(r)
    print("| %s | %.2e | %.2e%s | %s | %d/%d | %s |" % (name, d_one, d_ref,
          " (≤%g)" % lim_ref if lim_ref != float('inf') else " (fast path: no limit)", gtxt, same, npos, "ok" if ok else "**FAIL**"))
json.dump({"ok": ok_all, "fixtures": rows}, open(out, 'w'), indent=1)
print("\n%d fixtures: %s" % (len(rows), "all within limits" if ok_all else "FAILURES"))
EOF
  echo | frag
  echo "### golden logits ($n fixtures, \`lfm2c logits --device $device\` batch and \`--one-by-one\` vs \`--reference\`)" | frag
  echo | frag
  cat "$WORK/logs/logits_table.md" | frag
  local first_bad; first_bad=$(awk -F'\t' '$2 != 0 && $2 != 125 {print $1; exit}' "$WORK/logs/logits.tsv")
  [ -n "$first_bad" ] && echo "(first failure, $first_bad: \`$(tail -1 "$WORK/logs/logits_$first_bad.log" | cut -c1-200)\`)" | frag
  # greedy continuations of the F32 fixtures: device vs the CPU fast path vs the golden text
  echo | frag
  echo "### greedy continuations (F32 fixtures, 16 tokens, \`lfm2c run --raw --temp 0\`)" | frag
  echo | frag
  local gjson="[" sep=""
  for js in "$data"/*f32.golden.json; do
    local name; name=$(basename "$js" .golden.json)
    local prompt; prompt=$(py "$js" <<<'import json,sys; print(json.load(open(sys.argv[1]))["prompt"])')
    local o=$WORK/logits/$name
    run_step "greedy_$name" 60 bash -c "
      '$BIN' run -m '$data/$name.gguf' -p \"\$1\" -n 16 --temp 0 --raw --ignore-eos --special -ctk f32 -ctv f32 --device $device >'$o/greedy_dev.txt' &&
      '$BIN' run -m '$data/$name.gguf' -p \"\$1\" -n 16 --temp 0 --raw --ignore-eos --special -ctk f32 -ctv f32 --device cpu >'$o/greedy_cpu.txt'" _ "$prompt"
    local verdict
    verdict=$(py "$js" "$o/greedy_dev.txt" "$o/greedy_cpu.txt" "$RC" <<'EOF'
import json, sys
g = json.load(open(sys.argv[1]))
if sys.argv[4] != '0':
    print("**%s**|false" % ("skipped (budget spent: rerun this stage)" if sys.argv[4] == '125' else "run failed (rc %s)" % sys.argv[4])); sys.exit()
dev, cpu = open(sys.argv[2], 'rb').read().rstrip(b'\n'), open(sys.argv[3], 'rb').read().rstrip(b'\n')
# the CLI prints invalid UTF-8 as U+FFFD, the golden holds the raw bytes
gold = bytes.fromhex(g["greedy_text_hex"]).decode("utf-8", "replace").encode()
same = dev == cpu
print("%s; device %s the golden text|%s" % ("identical to the CPU" if same else "**DIFFERS from the CPU**",
      "equals" if dev == gold else "differs from", "true" if same else "false"))
EOF
)
    echo "- $name: ${verdict%|*}" | frag
    gjson+="$sep{\"fixture\": \"$name\", \"identical\": ${verdict##*|}}"; sep=", "
  done
  echo "$gjson]" >"$WORK/json/correct_greedy.json"
  echo | frag
  if [ "$device" = cuda ]; then
    echo "- batched sessions == solo: test_cuda_forward (20 sessions in one lfm2c_decode_batch vs one session, every fixture, ≤1e-3; in \`ctest -R cuda\` above):" | frag
    echo '```' | frag; grep -h -E "batched|batch:" "$WORK/logs/ctest_cuda.log" | head -10 | frag; echo "(no line above = no failure reported; see the SKIP note above if any)" | frag; echo '```' | frag
  fi
}

# ---- stage: sanitize (compute-sanitizer memcheck and racecheck on the CUDA tests) ------------
stage_sanitize() {
  begin_stage sanitize
  need_bin || return
  [ "$device" = cuda ] || { echo "- not run (--device cpu)" | frag; return; }
  local cs; cs=$(find_cuda_tool compute-sanitizer) || { echo "- compute-sanitizer not found: not run" | frag; return; }
  local js="{" sep=""
  # a few fixtures (every weight type family, dense and MoE): the sanitizers slow kernels 10-100x
  local fx=${GPU_CHECK_SANITIZE_FIXTURES:-lfm2-tiny-dense-f32,lfm2-tiny-moe-q4_0,lfm2-kq-moe-q4_k_m,lfm2-kq-dense-q4_k_m}
  for tool in memcheck racecheck; do
    for t in test_cuda_forward; do   # (test_cuda_math runs on the host: nothing to instrument)
      [ -x "$build_dir/$t" ] || continue
      local f=$fx; [ "$tool" = racecheck ] && f=${fx%%,*}   # racecheck is the slower: one fixture
      run_step "${tool}_$t" 240 bash -c "cd '$ROOT/tests' && LFM2C_TEST_FIXTURES='$f' '$cs' --tool $tool --error-exitcode 99 '$build_dir/$t'"
      local summary; summary=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed|failed" "$WORK/logs/${tool}_$t.log" | tail -2 | tr '\n' ' ')
      echo "- $tool $t ($f): $(rc_word "$RC") in ${DUR}s — $summary" | frag
      [ "$RC" = 0 ] || tailog "${tool}_$t" 20 | frag
      js+="$sep\"${tool}_$t\": {\"rc\": $RC, \"seconds\": $DUR}"; sep=", "
    done
  done
  echo "$js}" >"$WORK/json/sanitize.json"
}

# ---- the synthetic 24B-A2B -------------------------------------------------------------------
# make_model TYPE: the model's path on stdout (made once; kept in the build folder between calls)
make_model() {
  local type=$1 m=$WORK/models/lfm2-24b-a2b-$1$( [ "$quick" = 1 ] && echo -quick).gguf extra=()
  [ "$quick" = 1 ] && extra=(--layers 4 --experts 8 --experts-used 2 --dense-layers 1)
  if [ ! -s "$m" ]; then
    run_step "synth_$type" 300 "$BIN" synth --preset lfm2-24b-a2b --type "$type" -t "$JOBS" "${extra[@]}" -o "$m.part"
    [ "$RC" = 0 ] && mv "$m.part" "$m" || { rm -f "$m.part"; return 1; }
    echo "- made $(basename "$m") in ${DUR}s: $(tail -1 "$WORK/logs/synth_$type.log" | sed 's/^wrote [^:]*: //' | cut -c1-200)" | frag
  fi
  echo "$m"
}
# run_bench NAME WANT ARGS...: lfm2c bench ARGS -o json, its JSON into logs/NAME.out (stdout
# alone: stderr's notes go to the log), then bench_rows
run_bench() {
  local name=$1 want=$2; shift 2
  run_step "$name" "$want" bash -c '"$@" -o json >"$0"' "$WORK/logs/$name.out" "$BIN" bench "$@"
}
# bench_rows NAME: the llama-bench-style JSON of logs/NAME.out as markdown rows + json/NAME.json
bench_rows() {
  py "$WORK/logs/$1.out" "$WORK/json/$1.json" <<'EOF'
import json, sys
try: rows = json.load(open(sys.argv[1]))
except Exception: rows = []
json.dump(rows, open(sys.argv[2], 'w'), indent=1)
for r in rows:
    print("| %s | %s | %.1f ± %.1f | %s |" % (r.get("test"), r.get("backend"), r.get("avg_ts", 0), r.get("stddev_ts", 0),
          ("%.1f" % r["gbps"]) if r.get("gbps") else ""))
EOF
}

# bench_variant NAME VAR=VALUE LABEL WHAT BENCH-ARGS...: stage_speed's model ($m) on CUDA again with
# one variable set, one repetition; its rows join the speed table as "cuda, LABEL"
bench_variant() {
  local name=$1 set=$2 label=$3 what=$4
  # GPU_CHECK_VARIANTS="nograph fin ...": only those (names without bench_); default every one
  [ -z "${GPU_CHECK_VARIANTS+x}" ] || [[ " $GPU_CHECK_VARIANTS " == *" ${name#bench_} "* ]] || return 0
  local -x "$set"
  shift 4
  run_bench "$name" 120 -m "$m" --device cuda "$@" -r 1
  echo "- \`$set lfm2c bench $* -r 1\` ($what): $(rc_word "$RC") in ${DUR}s" | frag
  bench_rows "$name" | sed "s/| cuda |/| cuda, $label |/" >>"$WORK/logs/speed_table.md"
}

stage_speed() {
  begin_stage speed
  need_bin || return
  local m; m=$(make_model q4_k_m) || { echo "- **could not make the Q4_K_M model**" | frag; tailog synth_q4_k_m | frag; return; }
  # sizes: the issue's, or GPU_CHECK_SINGLE="P N REPS" / GPU_CHECK_BATCH="B P N" (to fit a short lease)
  local p=512 n=128 b=1024 bp=1024 bn=512 reps=3
  [ "$quick" = 1 ] && p=64 n=16 b=8 bp=32 bn=16 reps=1
  [ -n "${GPU_CHECK_SINGLE:-}" ] && read -r p n reps <<<"$GPU_CHECK_SINGLE"
  [ -n "${GPU_CHECK_BATCH:-}" ] && read -r b bp bn <<<"$GPU_CHECK_BATCH"
  echo "| test | backend | tok/s | GB/s |" >"$WORK/logs/speed_table.md"
  echo "|---|---|---:|---:|" >>"$WORK/logs/speed_table.md"
  run_bench bench_single 240 -m "$m" --device "$device" -p $p -n $n -r $reps
  echo "- \`lfm2c bench --device $device -p $p -n $n -r $reps\` on $(basename "$m"): $(rc_word "$RC") in ${DUR}s (target on H100: tg128 ≥ 600 tok/s; llama.cpp 293; bandwidth bound ~2,400)" | frag
  bench_rows bench_single >>"$WORK/logs/speed_table.md"
  # where a decode step's device time goes, stage by stage (events between the stages: plain launches;
  # GPU_CHECK_PROFILE=0: not run)
  if [ "$device" = cuda ] && [ "${GPU_CHECK_PROFILE:-1}" != 0 ]; then
    LFM2C_CUDA_PROFILE=1 run_bench bench_profile 120 -m "$m" --device cuda -p $p -n $n -r 1
    echo "- \`LFM2C_CUDA_PROFILE=1 lfm2c bench -p $p -n $n -r 1\` (plain launches with an event after each stage; the prefill's and the decode's forwards together): $(rc_word "$RC") in ${DUR}s" | frag
    echo '```' | frag; sed -n '/^CUDA profile/,$p' "$WORK/logs/bench_profile.log" | head -30 | frag; echo '```' | frag
    LFM2C_CUDA_PROFILE=1 run_bench bench_profile_tg 120 -m "$m" --device cuda -p 0 -n $n -r 1
    echo "- the same with \`-p 0\` (decode steps only, one token each):" | frag
    echo '```' | frag; sed -n '/^CUDA profile/,$p' "$WORK/logs/bench_profile_tg.log" | head -30 | frag; echo '```' | frag
  fi
  # the decode, then the prefill, with one of the backend's variables set: what each change bought
  if [ "$device" = cuda ]; then
    bench_variant bench_nograph LFM2C_CUDA_GRAPH=0 "no graph" "plain launches, no CUDA graph (the launch overhead the graph saves)" -p 0 -n $n
    bench_variant bench_noglu LFM2C_CUDA_GLU=0 "three-launch GLU" "gate, up and SwiGLU as three launches, as before they were one" -p 0 -n $n
    bench_variant bench_nopdl LFM2C_CUDA_PDL=0 "no overlap" "no kernel starts before the one before it ends" -p 0 -n $n
    bench_variant bench_fin LFM2C_CUDA_FUSE=1 "fused" "the residual add and norm, the routing and the conv in the last block of the product before them" -p 0 -n $n
    bench_variant bench_finnorm LFM2C_CUDA_FUSE=norm "fused add + norm" "only the residual add and norm in the product before" -p 0 -n $n
    bench_variant bench_finroute LFM2C_CUDA_FUSE=route "fused routing" "only the routing in the router's product" -p 0 -n $n
    bench_variant bench_finconv LFM2C_CUDA_FUSE=conv "fused conv" "only the conv in the conv in-projection" -p 0 -n $n
    bench_variant bench_wmma LFM2C_CUDA_TC=wmma "wmma GEMM" "the prefill GEMM on dequantized weights, as before the K-quant mma kernels" -p $p -n 0
    bench_variant bench_mma LFM2C_CUDA_TC=mma "Q4_K GEMM through shared memory" "Q4_K's GEMM with the weights as halves in shared memory, as before the register GEMM" -p $p -n 0
    bench_variant bench_mmab LFM2C_CUDA_TC=mma "Q4_K GEMM through shared memory" "the same, batched" -b $b -p $bp -n $bn
    bench_variant bench_half LFM2C_CUDA_TC=half "x as one half" "the K-quant GEMMs with x rounded to one half: half the tensor-core products, less precise" -p $p -n 0
  fi
  run_bench bench_batched 300 -m "$m" --device "$device" -b $b -p $bp -n $bn -r 1
  echo "- \`lfm2c bench --device $device -b $b -p $bp -n $bn\`: $(rc_word "$RC") in ${DUR}s (target on H100: ≥ 30K total tok/s; vLLM 26.8K at BF16)" | frag
  bench_rows bench_batched >>"$WORK/logs/speed_table.md"
  if [ "$RC" != 0 ] && [ "$RC" != 125 ]; then   # too slow or too big for the full size: a quarter of it
    tailog bench_batched 4 | frag
    run_bench bench_batched_small 120 -m "$m" --device "$device" -b $((b / 4)) -p $((bp / 4)) -n $((bn / 4)) -r 1
    echo "- the full batch did not finish; \`-b $((b / 4)) -p $((bp / 4)) -n $((bn / 4))\`: $(rc_word "$RC") in ${DUR}s" | frag
    bench_rows bench_batched_small >>"$WORK/logs/speed_table.md"
  fi
  echo | frag; cat "$WORK/logs/speed_table.md" | frag; echo | frag
  grep -h -E "peak RSS|weights read" "$WORK"/logs/bench_single.log 2>/dev/null | sed 's/^/    /' | frag
  # the device's own time (CUDA events around each forward) beside the wall time
  { echo; echo "| test | backend | tok/s | GB/s | device tok/s | device GB/s | device / wall |"; echo "|---|---|---:|---:|---:|---:|---:|"
    vulkan_bench_rows bench_single; } | frag
  # where a decode step's time goes: nsys
  local nsys
  if [ "$device" = cuda ] && nsys=$(find_cuda_tool nsys); then
    # GPU_CHECK_NSYS="ARGS": the bench nsys traces (default a decode of 64 tokens; e.g. "-b 128 -p 256 -n 32")
    local rep=$WORK/nsys_decode nargs=${GPU_CHECK_NSYS:--p 0 -n 64}
    run_step nsys_decode 240 bash -c "'$nsys' profile -f true -o '$rep' --trace=cuda,osrt '$BIN' bench -m '$m' --device cuda $nargs -r 1 &&
      '$nsys' stats -f csv -r cuda_gpu_kern_sum,cuda_api_sum,cuda_gpu_mem_time_sum '$rep.nsys-rep'"
    echo "- nsys (\`lfm2c bench $nargs -r 1\`): $(rc_word "$RC"); the kernel and API summaries are in logs/nsys_decode.log:" | frag
    echo '```' | frag; grep -A16 -i "cuda_gpu_kern_sum" "$WORK/logs/nsys_decode.log" | cut -c1-200 | head -20 | frag; echo '```' | frag
  else
    echo "- nsys: $( [ "$device" = cuda ] && echo "not found (PATH, /usr/local/cuda/bin, /opt/nvidia/nsight-systems)" || echo "not run (--device cpu)")" | frag
  fi
  # each kernel alone: Nsight Compute's speed-of-light and occupancy of a decode step's kernels
  # and of the prefill GEMMs (GPU_CHECK_NCU=0: not run)
  local ncu
  if [ "$device" = cuda ] && [ "${GPU_CHECK_NCU:-1}" != 0 ] && ncu=$(find_cuda_tool ncu); then
    local sec=(--section SpeedOfLight --section Occupancy --section LaunchStats)
    run_step ncu_decode 150 "$ncu" --csv --page details "${sec[@]}" -k "regex:gemv|attention|qk_kernel|rmsnorm|route|conv|embed|rope" \
      --launch-skip 400 --launch-count 16 "$BIN" bench -m "$m" --device cuda -p 0 -n 8 -r 1
    echo "- ncu, a decode step's kernels each alone: $(rc_word "$RC") in ${DUR}s" | frag
    ncu_table ncu_decode | frag
    run_step ncu_prefill 150 "$ncu" --csv --page details "${sec[@]}" -k "regex:gemm" --launch-skip 20 --launch-count 8 \
      "$BIN" bench -m "$m" --device cuda -p 512 -n 0 -r 1
    echo "- ncu, prefill GEMMs (\`-p 512\`) each alone: $(rc_word "$RC") in ${DUR}s" | frag
    ncu_table ncu_prefill | frag
  else
    echo "- ncu: $( [ "$device" = cuda ] && echo "not run (GPU_CHECK_NCU=0, or not found: PATH, /usr/local/cuda/bin, /opt/nvidia/nsight-compute)" || echo "not run (--device cpu)")" | frag
  fi
}

# ncu_table NAME: the kernels of logs/NAME.log (ncu --csv --page details) as a markdown table
ncu_table() {
  py "$WORK/logs/$1.log" <<'EOF2'
import csv, io, re, sys
text = open(sys.argv[1], errors='replace').read()
start = text.find('"ID"')
rows = list(csv.DictReader(io.StringIO(text[start:]))) if start >= 0 else []
want = [("Duration", "time"), ("DRAM Throughput", "DRAM %"), ("Compute (SM) Throughput", "SM %"),
        ("Achieved Occupancy", "occupancy %"), ("Registers Per Thread", "registers")]
kern = {}
for r in rows:
    k = kern.setdefault(r.get("ID"), {"name": r.get("Kernel Name", ""), "grid": r.get("Grid Size", ""),
                                      "block": r.get("Block Size", "")})
    k[r.get("Metric Name")] = (r.get("Metric Value", ""), r.get("Metric Unit", ""))
if not kern:
    print("    (no kernels in the output)"); sys.exit()
print("| kernel | grid | block | " + " | ".join(h for _, h in want) + " |")
print("|---|---|---|" + "---:|" * len(want))
for k in kern.values():
    name = re.sub(r"\(.*", "", k["name"])[:48]
    cells = []
    for m, _ in want:
        v = k.get(m)
        cells.append((v[0] + (" " + v[1] if m == "Duration" else "")) if v else "")
    print("| %s | %s | %s | %s |" % (name, k["grid"], k["block"], " | ".join(cells)))
EOF2
}

# ---- stage: serve under load -----------------------------------------------------------------
stage_serve() {
  begin_stage serve
  need_bin || return
  "$BIN" --version 2>/dev/null | grep -q "server: yes" || { echo "- not run: built without the server" | frag; return; }
  local m; m=$(make_model q4_k_m) || { echo "- **could not make the model**" | frag; return; }
  local levels=64,256 np=256 tok=128 load
  [ "$quick" = 1 ] && levels=2,4 np=4 tok=8
  [ -n "${GPU_CHECK_SERVE:-}" ] && read -r levels np tok <<<"$GPU_CHECK_SERVE"   # "LEVELS NP TOKENS"
  # node runs bench/serve_load.mjs; without node (the GPU machines have python3) its python twin
  if command -v node >/dev/null 2>&1 && [ "${GPU_CHECK_NO_NODE:-0}" != 1 ]; then
    load=(node "$ROOT/bench/serve_load.mjs" --skip-reuse 1)
  else
    load=(python3 "$ROOT/bench/serve_load.py")
  fi
  run_step serve_load 420 "${load[@]}" --lfm2c "$BIN" --model "$m" --device "$device" --np $np --tokens $tok --levels $levels
  echo "- \`${load[0]} bench/$(basename "${load[1]}") --device $device --np $np --tokens $tok --levels $levels\` on $(basename "$m"): $(rc_word "$RC") in ${DUR}s" | frag
  echo | frag; grep -E "^\||^model" "$WORK/logs/serve_load.log" | frag
  py "$WORK/logs/serve_load.log" "$WORK/json/serve.json" <<'EOF'
import json, sys
rows = []
for l in open(sys.argv[1]):
    c = [x.strip() for x in l.strip().strip('|').split('|')]
    if len(c) >= 8 and c[0].isdigit():
        rows.append(dict(concurrency=int(c[0]), wall_s=float(c[2]), total_tps=float(c[3]), per_stream_tps=float(c[4]),
                         ttft_p50_ms=float(c[5]), ttft_p90_ms=float(c[6]), ttft_p99_ms=float(c[7])))
json.dump(rows, open(sys.argv[2], 'w'), indent=1)
EOF
}

# ---- stage: bf16 (the batched figure at BF16, vLLM's precision) -------------------------------
stage_bf16() {
  begin_stage bf16
  need_bin || return
  # the BF16 24B-A2B is ~48 GB: make room by dropping the Q4_K_M file if the disk is short
  local need_gb=$([ "$quick" = 1 ] && echo 1 || echo 52) free_gb
  free_gb=$(df -BG --output=avail "$WORK/models" | tail -1 | tr -dc 0-9)
  if [ "$free_gb" -lt "$need_gb" ] && ls "$WORK"/models/*q4_k_m*.gguf >/dev/null 2>&1; then
    rm -f "$WORK"/models/*q4_k_m*.gguf
    echo "- removed the Q4_K_M model to make room (${free_gb} GB free, BF16 needs ~${need_gb})" | frag
    free_gb=$(df -BG --output=avail "$WORK/models" | tail -1 | tr -dc 0-9)
  fi
  [ "$free_gb" -ge "$need_gb" ] || [ -s "$WORK/models/lfm2-24b-a2b-bf16.gguf" ] || { echo "- not run: ${free_gb} GB free, BF16 needs ~${need_gb}" | frag; return; }
  local m; m=$(make_model bf16) || { echo "- **could not make the BF16 model**" | frag; tailog synth_bf16 | frag; return; }
  local b=1024 bp=1024 bn=512 p=512 n=128
  [ "$quick" = 1 ] && b=8 bp=32 bn=16 p=64 n=16
  echo "| test | backend | tok/s | GB/s |" >"$WORK/logs/bf16_table.md"; echo "|---|---|---:|---:|" >>"$WORK/logs/bf16_table.md"
  run_bench bench_bf16_single 200 -m "$m" --device "$device" -p $p -n $n -r 2
  echo "- \`lfm2c bench --device $device -p $p -n $n\` (BF16): $(rc_word "$RC") in ${DUR}s" | frag
  bench_rows bench_bf16_single >>"$WORK/logs/bf16_table.md"
  run_bench bench_bf16_batched 300 -m "$m" --device "$device" -b $b -p $bp -n $bn -r 1
  echo "- \`lfm2c bench --device $device -b $b -p $bp -n $bn\` (BF16; vLLM 26.8K, target ≥ 30K): $(rc_word "$RC") in ${DUR}s" | frag
  bench_rows bench_bf16_batched >>"$WORK/logs/bf16_table.md"
  if [ "$RC" != 0 ] && [ "$RC" != 125 ]; then
    tailog bench_bf16_batched 4 | frag
    run_bench bench_bf16_batched_small 120 -m "$m" --device "$device" -b $((b / 4)) -p $((bp / 4)) -n $((bn / 4)) -r 1
    echo "- the full batch did not finish; \`-b $((b / 4)) -p $((bp / 4)) -n $((bn / 4))\`: $(rc_word "$RC") in ${DUR}s" | frag
    bench_rows bench_bf16_batched_small >>"$WORK/logs/bf16_table.md"
  fi
  echo | frag; cat "$WORK/logs/bf16_table.md" | frag
}

# ---- stage: vulkan (the Vulkan backend on this machine's GPU: tests, bench) --------------------
# the NVIDIA driver's Vulkan ICD: its JSON where the driver installed one; else one written here
# for the driver's libGLX_nvidia.so.0 (containers given the driver's libraries but not its files)
vulkan_icd() {
  local f
  for f in /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json; do
    [ -f "$f" ] && { echo "driver ICD $f"; return 0; }
  done
  local lib
  lib=$(ldconfig -p 2>/dev/null | awk '/libGLX_nvidia\.so\.0/ {print $NF; exit}')
  [ -n "$lib" ] || lib=$(ls /usr/lib/x86_64-linux-gnu/libGLX_nvidia.so.0 /usr/lib64/libGLX_nvidia.so.0 2>/dev/null | head -1)
  [ -n "$lib" ] || { echo "no NVIDIA Vulkan ICD (no nvidia_icd.json, no libGLX_nvidia.so.0): the tests run on whatever Vulkan device there is"; return 0; }
  printf '{"file_format_version": "1.0.0", "ICD": {"library_path": "%s", "api_version": "1.3"}}\n' "$lib" >"$WORK/nvidia_icd.json"
  export VK_ICD_FILENAMES=$WORK/nvidia_icd.json VK_DRIVER_FILES=$WORK/nvidia_icd.json
  echo "ICD written for $lib ($WORK/nvidia_icd.json)"
}
# vulkan_bench_rows NAME: bench_rows plus the device's own time (timestamp queries: tok/s and GB/s
# of weights read in it, and its share of the wall time); empty cells where the device has none
vulkan_bench_rows() {
  py "$WORK/logs/$1.out" "$WORK/json/$1.json" <<'EOF'
import json, sys
try: rows = json.load(open(sys.argv[1]))
except Exception: rows = []
json.dump(rows, open(sys.argv[2], 'w'), indent=1)
for r in rows:
    d, w = r.get("device_seconds", 0), r.get("wall_seconds", 0)
    print("| %s | %s | %.1f ± %.1f | %s | %s | %s | %s |" % (r.get("test"), r.get("backend"), r.get("avg_ts", 0),
          r.get("stddev_ts", 0), ("%.1f" % r["gbps"]) if r.get("gbps") else "",
          ("%.1f" % r["device_ts"]) if d else "", ("%.1f" % r["device_gbps"]) if r.get("device_gbps") else "",
          ("%.0f%%" % (100 * d / w)) if d and w else ""))
EOF
}
stage_vulkan() {
  begin_stage vulkan
  need_bin || return
  if ! "$BIN" --version 2>/dev/null | grep -q "^vulkan: yes"; then
    echo "- **skipped**: built without the Vulkan backend (no Vulkan headers / glslc: run --fetch-deps where apt works and carry .gpu-deps)" | frag
    echo '{"built": false}' >"$WORK/json/vulkan.json"
    return
  fi
  echo "- $(vulkan_icd)" | frag
  if command -v vulkaninfo >/dev/null 2>&1; then
    run_step vulkaninfo 30 vulkaninfo --summary
    echo "- vulkaninfo: $(grep -m3 -E "deviceName|driverName" "$WORK/logs/vulkaninfo.log" | tr -s ' ' | tr '\n' ';')" | frag
  fi
  local ts=$build_dir/test_vulkan_forward rct=-1 rcc=-1 skip=false
  if [ -x "$ts" ]; then
    run_step vulkan_tests 300 bash -c "cd '$ROOT/tests' && '$ts'"
    rct=$RC
    grep -q "^SKIP" "$WORK/logs/vulkan_tests.log" && skip=true
    echo "- test_vulkan_forward (every fixture: goldens, --reference, one-by-one, batched == solo): $(rc_word "$RC") in ${DUR}s; $(grep -m1 "^Vulkan device" "$WORK/logs/vulkan_tests.log"); $(tail -1 "$WORK/logs/vulkan_tests.log")" | frag
    [ "$skip" = true ] && echo "- **the Vulkan tests skipped on a GPU machine: no Vulkan device seen**" | frag
    [ "$RC" != 0 ] && tailog vulkan_tests 12 | frag
  fi
  run_step vulkan_cli 120 bash -c "cd '$ROOT/tests' && bash test_vulkan_cli.sh '$BIN'"
  rcc=$RC
  echo "- test_vulkan_cli: $(rc_word "$RC"); $(tail -1 "$WORK/logs/vulkan_cli.log")" | frag
  local p=512 n=128 reps=3
  [ "$quick" = 1 ] && p=64 n=16 reps=1
  echo "| model | test | backend | tok/s | GB/s | device tok/s | device GB/s | device / wall |" >"$WORK/logs/vulkan_table.md"
  echo "|---|---|---|---:|---:|---:|---:|---:|" >>"$WORK/logs/vulkan_table.md"
  local m m12=$WORK/models/lfm2-1.2b-q4_k_m$( [ "$quick" = 1 ] && echo -quick).gguf name extra=()
  [ "$quick" = 1 ] && extra=(--layers 4)
  m=$(make_model q4_k_m) || m=
  if [ ! -s "$m12" ]; then
    run_step synth_1.2b 300 "$BIN" synth --preset lfm2-1.2b --type q4_k_m -t "$JOBS" "${extra[@]}" -o "$m12.part"
    [ "$RC" = 0 ] && mv "$m12.part" "$m12" || rm -f "$m12.part"
  fi
  for name in 24b 1.2b; do
    local mm=$m; [ "$name" = 1.2b ] && mm=$m12
    [ -s "$mm" ] || { echo "- no $name model: bench not run" | frag; continue; }
    run_bench "vulkan_bench_$name" 240 -m "$mm" --device vulkan -p $p -n $n -r $reps
    echo "- \`lfm2c bench --device vulkan -p $p -n $n -r $reps\` on $(basename "$mm"): $(rc_word "$RC") in ${DUR}s" | frag
    [ "$RC" != 0 ] && tailog "vulkan_bench_$name" 6 | frag
    vulkan_bench_rows "vulkan_bench_$name" | sed "s/^|/| $name |/" >>"$WORK/logs/vulkan_table.md"
  done
  echo | frag; cat "$WORK/logs/vulkan_table.md" | frag; echo | frag
  echo "{\"built\": true, \"tests_rc\": $rct, \"cli_rc\": $rcc, \"tests_skipped\": $skip}" >"$WORK/json/vulkan.json"
}

# ---- stage: throughput (issue 71: the batched server's figures, one call) ---------------------
# cuBLASLt on this machine (bench/cublas_probe.cu, built with nvcc -lcublasLt: BF16 products of
# the 24B-A2B's shapes at 64..8192 tokens, TFLOPS), the per-stage device time of a batched decode
# at 1,024 sequences (LFM2C_CUDA_PROFILE=1: attention's share), `lfm2c bench -b 1024 -p 1024 -n 512`,
# and serve under load at 1,024 clients.
# GPU_CHECK_THROUGHPUT="B P N MAX_TOKENS CLIENTS TOKENS" sets other sizes.
stage_throughput() {
  begin_stage throughput
  need_bin || return
  local m; m=$(make_model q4_k_m) || { echo "- **could not make the Q4_K_M model**" | frag; return; }
  local b=1024 p=1024 n=512 maxn=8192 clients=1024 tok=512
  [ "$quick" = 1 ] && b=8 p=32 n=8 maxn=128 clients=4 tok=8
  [ -n "${GPU_CHECK_THROUGHPUT:-}" ] && read -r b p n maxn clients tok <<<"$GPU_CHECK_THROUGHPUT"
  local nvcc; nvcc=$(find_cuda_tool nvcc 2>/dev/null) || nvcc=
  if [ "$device" = cuda ] && [ -n "$nvcc" ]; then
    local ccs=${gpu_cc:-9.0}
    run_step cublas_build 180 "$nvcc" -O2 -arch=sm_${ccs//./} -o "$WORK/cublas_probe" "$ROOT/bench/cublas_probe.cu" -lcublasLt
    if [ "$RC" = 0 ]; then
      run_step cublas_probe 150 "$WORK/cublas_probe" "$maxn"
      echo "- cuBLASLt probe (BF16 x BF16 -> F32, the 24B-A2B's shapes, 64..$maxn tokens): $(rc_word "$RC") in ${DUR}s" | frag
      echo | frag; grep -E "^\||^cuBLASLt" "$WORK/logs/cublas_probe.log" | frag; echo | frag
    else
      echo "- cuBLASLt probe: **could not build** (no libcublasLt with this toolkit?)" | frag; tailog cublas_build 6 | frag
    fi
  else
    echo "- cuBLASLt probe: not run (device $device, nvcc ${nvcc:-not found})" | frag
  fi
  echo "| test | backend | tok/s | GB/s |" >"$WORK/logs/throughput_table.md"; echo "|---|---|---:|---:|" >>"$WORK/logs/throughput_table.md"
  if [ "$device" = cuda ]; then
    LFM2C_CUDA_PROFILE=1 run_bench tp_profile 150 -m "$m" --device cuda -b $b -p $p -n 4 -r 1
    echo "- \`LFM2C_CUDA_PROFILE=1 lfm2c bench -b $b -p $p -n 4\` (the stages' device time, attention's among them): $(rc_word "$RC") in ${DUR}s" | frag
    echo '```' | frag; sed -n '/^CUDA profile/,$p' "$WORK/logs/tp_profile.log" | head -30 | frag; echo '```' | frag
  fi
  run_bench tp_batched 300 -m "$m" --device "$device" -b $b -p $p -n $n -r 1
  echo "- \`lfm2c bench --device $device -b $b -p $p -n $n\` (vLLM on an H100: 26.8K total tok/s; target ≥ 30K): $(rc_word "$RC") in ${DUR}s" | frag
  bench_rows tp_batched >>"$WORK/logs/throughput_table.md"
  if [ "$device" = cuda ]; then
    # the batched products through cuBLASLt (LFM2C_CUDA_BLAS=1, off by default: docs/CUDA.md) beside
    # the kernels': a prefill of $p tokens each way, then the same batched run with it
    local pp=$p; [ "$pp" -lt 64 ] && pp=64
    run_bench tp_prefill 150 -m "$m" --device cuda -p $pp -n 0 -r 3
    bench_rows tp_prefill >>"$WORK/logs/throughput_table.md"
    LFM2C_CUDA_BLAS=1 run_bench tp_prefill_blas 150 -m "$m" --device cuda -p $pp -n 0 -r 3
    echo "- \`LFM2C_CUDA_BLAS=1 lfm2c bench -p $pp -n 0\` (the non-expert linears and the head in BF16 through cuBLASLt from 64 columns) beside the default: $(rc_word "$RC") in ${DUR}s" | frag
    bench_rows tp_prefill_blas | sed "s/| cuda |/| cuda, cuBLASLt BF16 |/" >>"$WORK/logs/throughput_table.md"
    LFM2C_CUDA_BLAS=1 run_bench tp_batched_blas 300 -m "$m" --device cuda -b $b -p $p -n $n -r 1
    echo "- \`LFM2C_CUDA_BLAS=1 lfm2c bench -b $b -p $p -n $n\`: $(rc_word "$RC") in ${DUR}s" | frag
    bench_rows tp_batched_blas | sed "s/| cuda |/| cuda, cuBLASLt BF16 |/" >>"$WORK/logs/throughput_table.md"
  fi
  echo | frag; cat "$WORK/logs/throughput_table.md" | frag
  if "$BIN" --version 2>/dev/null | grep -q "server: yes"; then
    local load=(python3 "$ROOT/bench/serve_load.py")
    command -v node >/dev/null 2>&1 && [ "${GPU_CHECK_NO_NODE:-0}" != 1 ] && load=(node "$ROOT/bench/serve_load.mjs" --skip-reuse 1)
    run_step tp_serve 420 "${load[@]}" --lfm2c "$BIN" --model "$m" --device "$device" --np $clients --tokens $tok --levels $clients
    echo "- \`serve --device $device -np $clients\` under $(basename "${load[1]}") at $clients clients, $tok tokens each (short fixed prompts, not yet vLLM's random ones up to 1,024): $(rc_word "$RC") in ${DUR}s" | frag
    echo | frag; grep -E "^\|" "$WORK/logs/tp_serve.log" | frag
  else
    echo "- serve: not run (built without the server)" | frag
  fi
}

# ---- run the stages asked for -----------------------------------------------------------------
deps_env
BUILD_OK=1
[ -n "$gpu_name" ] && echo "gpu_check: $gpu_name (compute capability $gpu_cc, driver $gpu_driver, $gpu_mem)"
# a fresh machine (the build folder gone since the last call): build first, whatever was asked
if [[ ",$stages," != *",build,"* ]] && [ ! -x "$BIN" ]; then
  echo "gpu_check: no $BIN: building first"
  stages=build,$stages
fi
for s in $ALL_STAGES; do
  [[ ",$stages," == *",$s,"* ]] || continue
  "stage_$s"
  if [ "$s" = build ] && [ "$BUILD_OK" = 0 ]; then echo "gpu_check: the build failed: later stages skipped"; break; fi
done
write_report
exit 0
