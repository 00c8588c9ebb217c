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
#                        [--build-dir DIR] [--device cuda|cpu] [--arch CC] [--quick] [--prepared] [--dry-run] OUTDIR
#   scripts/gpu_check.sh --fetch-deps     (here, before the GPU call: .gpu-deps/, see below)
#   scripts/gpu_check.sh --fetch-peer     (here: .gpu-peer/, llama.cpp's llama-bench built for Vulkan)
#
# --prepared: issue 82's one prepared run (bench/GPU.md, "The prepared run"): build, correct
# (goldens, batched == solo, the new paths' test run, memcheck), throughput (each stage's device
# time, decode attention both ways, the experts three ways, a quarter batch each way, the full
# -b 1024 -p 1024 -n 512 with the fastest, serve at 1,024 clients), serve at 64 clients, then
# vulkan (lfm2c beside llama.cpp's Vulkan build on the same file), in a budget of 540 s, each step
# sized to what is left; --dry-run: the same stages on the CPU here (--device cpu --quick), GPU
# steps said and not run, then the plan of the GPU run with each step's timeout.
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
  sed -n '13,16p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
die() { echo "gpu_check: $*" >&2; exit 2; }

stages=all device=cuda build_dir= budget=570 arch= quick=0 outdir= fetch=0 prepared=0 dry=0 fetch_peer=0
while [ $# -gt 0 ]; do
  case $1 in
    --stage) [ $# -ge 2 ] || usage; stages=$2; shift 2;;
    --device) [ $# -ge 2 ] || usage; device=$2; shift 2;;
    --build-dir) [ $# -ge 2 ] || usage; build_dir=$2; shift 2;;
    --budget) [ $# -ge 2 ] || usage; budget=$2; shift 2;;
    --arch) [ $# -ge 2 ] || usage; arch=$2; shift 2;;
    --quick) quick=1; shift;;
    --fetch-deps) fetch=1; shift;;
    --fetch-peer) fetch_peer=1; shift;;
    --prepared) prepared=1; shift;;
    --dry-run) dry=1; prepared=1; shift;;
    -h|--help) sed -n "2,35p" "$0" | sed "s/^# \{0,1\}//"; exit 0;;
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
# --fetch-peer: llama.cpp's llama-bench with its Vulkan backend, built here (static, for any x86-64:
# GGML_NATIVE=OFF) from a llama.cpp source tree and packed into .gpu-peer/ (git-ignored; carried to
# the GPU machine, about 10 MB): the vulkan stage times it beside lfm2c on the same file. Building
# it there instead would cost minutes of device time (its shaders alone are hundreds of glslc
# runs). GPU_CHECK_LLAMA_SRC: the source (default /work/peers/llama.cpp), GPU_CHECK_PEER_BUILD:
# its build folder (kept; default build-peer-vulkan/, not carried), GPU_CHECK_PEER_CMAKE: more
# CMake arguments. The SPIR-V headers it needs
# come from Debian's spirv-headers, unpacked into .gpu-peer/ where the system has none. Peer code
# is never committed.
if [ "$fetch_peer" = 1 ]; then
  src=${GPU_CHECK_LLAMA_SRC:-/work/peers/llama.cpp} pb=${GPU_CHECK_PEER_BUILD:-$ROOT/build-peer-vulkan}
  [ -f "$src/CMakeLists.txt" ] || die "no llama.cpp source at $src (GPU_CHECK_LLAMA_SRC)"
  mkdir -p "$ROOT/.gpu-peer" || exit 1
  # its Vulkan backend needs the SPIR-V headers: Debian's spirv-headers, unpacked here where the
  # system has none (its CMake config names /usr/include: the headers' folder is given too)
  spv=()
  if [ ! -f /usr/include/spirv/unified1/spirv.hpp ]; then
    sd=$ROOT/.gpu-peer/spirv
    if [ ! -f "$sd/usr/include/spirv/unified1/spirv.hpp" ]; then
      (cd "$ROOT/.gpu-peer" && apt-get download spirv-headers >/dev/null 2>&1 && dpkg -x spirv-headers_*.deb spirv) \
        || die "no SPIR-V headers: install spirv-headers, or apt-get download it (apt-get update first)"
    fi
    spv=(-DSPIRV-Headers_DIR="$sd/usr/share/cmake/SPIRV-Headers" -DCMAKE_CXX_FLAGS="-isystem $sd/usr/include")
  fi
  # shellcheck disable=SC2086
  cmake -S "$src" -B "$pb" -DCMAKE_BUILD_TYPE=Release -DGGML_VULKAN=ON -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_BACKEND_DL=OFF \
    "${spv[@]}" ${GPU_CHECK_PEER_CMAKE:-} >"$ROOT/.gpu-peer/configure.log" 2>&1 || die "configure failed: .gpu-peer/configure.log"
  cmake --build "$pb" -j"$(nproc 2>/dev/null || echo 2)" --target llama-bench >"$ROOT/.gpu-peer/build.log" 2>&1 \
    || die "build failed: .gpu-peer/build.log"
  xz -T0 -6 -c "$pb/bin/llama-bench" >"$ROOT/.gpu-peer/llama-bench-vulkan.xz" || die "xz failed"
  git -C "$src" rev-parse --short=9 HEAD >"$ROOT/.gpu-peer/COMMIT" 2>/dev/null || echo unknown >"$ROOT/.gpu-peer/COMMIT"
  echo "gpu_check: .gpu-peer/llama-bench-vulkan.xz ($(du -h "$ROOT/.gpu-peer/llama-bench-vulkan.xz" | cut -f1), llama.cpp $(cat "$ROOT/.gpu-peer/COMMIT")); carry .gpu-peer/llama-bench-vulkan.xz and .gpu-peer/COMMIT"
  exit 0
fi
[ -n "$outdir" ] || usage
# --prepared: the stages and sizes of issue 82's one run (its GPU_CHECK_* defaults, each still
# settable); --dry-run: that run on the CPU, quick
if [ "$prepared" = 1 ]; then
  [ "$stages" = all ] && stages=build,correct,sanitize,throughput,serve,vulkan
  [ "$budget" = 570 ] && budget=540
  export GPU_CHECK_TP_STEPS=${GPU_CHECK_TP_STEPS-profile attention experts variants full serve}
  if [ "$dry" = 1 ]; then export GPU_CHECK_TARGETS=${GPU_CHECK_TARGETS-lfm2c_cli}
  else export GPU_CHECK_TARGETS=${GPU_CHECK_TARGETS-lfm2c_cli test_cuda_forward test_cuda_math test_vulkan_forward}; fi
  export GPU_CHECK_TEST_ENVS=${GPU_CHECK_TEST_ENVS-LFM2C_CUDA_MOE=grouped+LFM2C_CUDA_ATTN=gqa+LFM2C_CUDA_GRAPH_BUCKETS=1}
  export GPU_CHECK_SANITIZE_FIXTURES=${GPU_CHECK_SANITIZE_FIXTURES-lfm2-kq-moe-q4_k_m}
  export GPU_CHECK_RACECHECK=${GPU_CHECK_RACECHECK-0} GPU_CHECK_FLOAT_FUSED=${GPU_CHECK_FLOAT_FUSED-0}
  [ "$dry" = 1 ] || export GPU_CHECK_SERVE=${GPU_CHECK_SERVE-64 64 256}
  export GPU_CHECK_VULKAN_TESTS=${GPU_CHECK_VULKAN_TESTS-1} GPU_CHECK_VULKAN_CLI=${GPU_CHECK_VULKAN_CLI-0}
  export GPU_CHECK_SERVE_BEST=${GPU_CHECK_SERVE_BEST-1} GPU_CHECK_NCU=${GPU_CHECK_NCU-0}
  export GPU_CHECK_VULKAN_MODELS=${GPU_CHECK_VULKAN_MODELS-24b}
  # the dry run's Vulkan device is lavapipe (the CPU): a tiny fixture, not the fixtures' tests
  [ "$dry" = 1 ] && export GPU_CHECK_VULKAN_MODELS=tiny GPU_CHECK_VULKAN_TESTS=0
  export LFM2C_GPU_MEM_CAP=${LFM2C_GPU_MEM_CAP-80G} # the memory plan of an 80 GB H100: bench/GPU.md
fi
[ "$dry" = 1 ] && { device=cpu; quick=1; }
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
    bad = [f['fixture'] for f in c['fixtures'] if f.get('ok') is False]
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
for x in get('ctest_cuda_envs') or []:
    print("| test_cuda_forward with %s | %s | passed |" % (x['env'], "passed" if x['rc'] == 0 else "**rc %d**" % x['rc']))
for name, label in (('tp_attn', 'decode at depth, default attention'), ('tp_attn_gqa', 'decode at depth, LFM2C_CUDA_ATTN=gqa')):
    r = bench(name, 'tg')
    if r: print("| %s %s | %.1f tok/s | |" % (label, r['test'], r['avg_ts']))
for v in ('kernels', 'grouped', 'cublas'):
    r = bench('tp_experts_' + v, 'pp')
    if r: print("| prefill %s, experts %s | %.0f tok/s | |" % (r['test'], v, r['avg_ts']))
v = get('tp_variants')
if v:
    print("| a quarter batch, total tok/s | %s | the fastest kept: %s |" % (", ".join("%s %d" % (k, x) for k, x in v.items() if k not in ('best', 'best_rate')), v.get('best')))
r = bench('tp_batched', 'b')
if r: print("| batched, the fastest variables, %s | %.0f total tok/s | ≥ 30K on H100 (vLLM 26.8K) |" % (r['test'], r['avg_ts']))
for name in ('serve', 'tp_serve'):
    for r in get(name) or []:
        tpot = " TPOT p50 %.1f / p99 %.1f ms" % (r['tpot_p50_ms'], r['tpot_p99_ms']) if 'tpot_p50_ms' in r else ""
        print("| serve, concurrency %d | %.1f total tok/s, TTFT p50 %.0f / p99 %.0f ms%s | %s |" % (r['concurrency'], r['total_tps'], r['ttft_p50_ms'], r['ttft_p99_ms'], tpot,
              "≥ 30K at 1,024 (H100)" if r['concurrency'] >= 1024 else "≥ 8K, TTFT p99 < 1 s at 64 (H100)" if r['concurrency'] == 64 else ""))
for name in ('24b', '1.2b'):
    ours, peer = get('vulkan_bench_' + name) or [], get('vulkan_peer_' + name) or []
    for o in ours:
        t = str(o.get('test', ''))
        p = next((x for x in peer if ("pp%d" % x['n_prompt'] if x.get('n_prompt') else "tg%d" % x.get('n_gen', 0)) == t), None)
        print("| Vulkan %s %s | lfm2c %.1f tok/s%s | at least llama.cpp-Vulkan's |" % (name, t, o.get('avg_ts', 0), ", llama.cpp %.1f" % p['avg_ts'] if p else ""))
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
    for s in build correct sanitize speed throughput serve bf16 vulkan; do [ -f "$WORK/frag/$s.md" ] && { cat "$WORK/frag/$s.md"; echo; }; done
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
  local TGT=() t
  if [ -n "${GPU_CHECK_TARGETS:-}" ] && [ "$RC" = 0 ]; then   # (the ones this configuration has: ninja stops at an unknown one)
    local have; have=$(cmake --build "$build_dir" --target help 2>/dev/null)
    for t in $GPU_CHECK_TARGETS; do grep -qE "(^|[ .:])$t(\$|[ :])" <<<"$have" && TGT+=("$t"); done
    [ ${#TGT[@]} -gt 0 ] && TGT=(--target "${TGT[@]}")
  fi
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
    if [ "$device" = cuda ] && [ -x "$build_dir/test_cuda_forward" ] && [ "${GPU_CHECK_FLOAT_FUSED:-1}" != 0 ]; then   # the GEMMs in float (gemm_kernel) too
      run_step ctest_cuda_float 240 bash -c "cd '$ROOT/tests' && LFM2C_CUDA_TC=0 '$build_dir/test_cuda_forward'"
      echo "- test_cuda_forward with \`LFM2C_CUDA_TC=0\` (the GEMMs in float, not on the tensor cores): $(rc_word "$RC") in ${DUR}s — $(tail -1 "$WORK/logs/ctest_cuda_float.log")" | frag
      run_step ctest_cuda_fused 240 bash -c "cd '$ROOT/tests' && LFM2C_CUDA_FUSE=1 '$build_dir/test_cuda_forward'"
      echo "- test_cuda_forward with \`LFM2C_CUDA_FUSE=1\` (a decode step's add + norm, routing and conv in the product before them, off by default): $(rc_word "$RC") in ${DUR}s — $(tail -1 "$WORK/logs/ctest_cuda_fused.log")" | frag
    fi
    if [ "$device" = cuda ] && [ -x "$build_dir/test_cuda_forward" ]; then
      # GPU_CHECK_TEST_ENVS="VAR=VALUE[+VAR=VALUE] ...": test_cuda_forward again with each entry's
      # variables set (variants to make default; + joins several into one run)
      local tenv tj="[" tsep=""
      for tenv in ${GPU_CHECK_TEST_ENVS:-}; do
        local tn="ctest_cuda_${tenv//[^A-Za-z0-9]/_}" assigns
        IFS=+ read -r -a assigns <<<"$tenv"
        run_step "${tn:0:80}" 240 env -C "$ROOT/tests" "${assigns[@]}" "$build_dir/test_cuda_forward"
        echo "- test_cuda_forward with \`${tenv//+/ }\`: $(rc_word "$RC") in ${DUR}s — $(tail -1 "$WORK/logs/${tn:0:80}.log")" | frag
        tj+="$tsep{\"env\": \"${tenv//+/ }\", \"rc\": $RC}"; tsep=", "
      done
      echo "$tj]" >"$WORK/json/ctest_cuda_envs.json"
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
    echo "- \`ctest -R cuda\`: not run (--device cpu); on a GPU: \`ctest -R cuda -E emu\`, test_cuda_forward with$( [ "${GPU_CHECK_FLOAT_FUSED:-1}" != 0 ] && echo " LFM2C_CUDA_TC=0, LFM2C_CUDA_FUSE=1,") ${GPU_CHECK_TEST_ENVS:-(no other variables)}" | frag
  fi
  # 2. golden logits of every fixture, device vs the CPU --reference path; 3. greedy continuations
  local data=$ROOT/tests/data n=0
  : >"$WORK/logs/logits.tsv"
  for js in "$data"/*.golden.json; do
    local name; name=$(basename "$js" .golden.json)
    # a fixture left out of the working tree sent to the GPU machine (its 64 MiB: bench/GPU.md)
    [ -f "$data/$name.gguf" ] || { echo -e "$name\t126" >>"$WORK/logs/logits.tsv"; continue; }
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
    if rc == 126:
        r["ok"] = None; rows.append(r)
        print("| %s | | | | | not carried (left out of the working tree) |" % name); continue
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
if any(r.get("rc") == 126 for r in rows):
    print("(%d not carried)" % sum(1 for r in rows if r.get("rc") == 126))
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
    [ -f "$data/$name.gguf" ] || continue   # not carried
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
      [ "$tool" = racecheck ] && [ "${GPU_CHECK_RACECHECK:-1}" = 0 ] && { echo "- racecheck: not run (GPU_CHECK_RACECHECK=0)" | frag; continue; }
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

# serve_json LOG NAME: the load script's table in logs/LOG.log as json/NAME.json (TPOT where the
# table has it)
serve_json() {
  py "$WORK/logs/$1.log" "$WORK/json/$2.json" <<'EOF'
import json, sys
rows = []
for l in open(sys.argv[1]):
    c = [x.strip() for x in l.strip().strip('|').split('|')]
    if len(c) >= 8 and c[0].isdigit():
        r = dict(concurrency=int(c[0]), wall_s=float(c[2]), total_tps=float(c[3]), per_stream_tps=float(c[4]),
                 ttft_p50_ms=float(c[5]), ttft_p90_ms=float(c[6]), ttft_p99_ms=float(c[7]))
        if len(c) >= 10: r.update(tpot_p50_ms=float(c[8]), tpot_p99_ms=float(c[9]))
        rows.append(r)
json.dump(rows, open(sys.argv[2], 'w'), indent=1)
EOF
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
  # GPU_CHECK_SERVE_BEST=1: with the throughput stage's fastest variables and the scheduler's
  # device sampling (LFM2C_CUDA_SAMPLE=1), as that stage's 1,024 clients
  local -a assigns=()
  if [ "${GPU_CHECK_SERVE_BEST:-0}" = 1 ] && [ "$device" = cuda ]; then
    [ "$(best_env)" != - ] && IFS=+ read -r -a assigns <<<"$(best_env)"
    assigns+=(LFM2C_CUDA_SAMPLE=1)
  fi
  run_step serve_load 420 env "${assigns[@]}" "${load[@]}" --lfm2c "$BIN" --model "$m" --device "$device" --np $np --tokens $tok --levels $levels
  echo "- \`${assigns[*]} ${load[0]} bench/$(basename "${load[1]}") --device $device --np $np --tokens $tok --levels $levels\` on $(basename "$m"): $(rc_word "$RC") in ${DUR}s" | frag
  echo | frag; grep -E "^\||^model" "$WORK/logs/serve_load.log" | frag
  serve_json serve_load serve
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
# vulkan_peer NAME MODEL P N REPS: llama.cpp's llama-bench with its Vulkan backend (.gpu-peer/,
# --fetch-peer) on the same file, its rows beside lfm2c's as "llama.cpp vulkan"
vulkan_peer() {
  local xzf=$ROOT/.gpu-peer/llama-bench-vulkan.xz lb=$WORK/peer/llama-bench
  if [ ! -f "$xzf" ]; then
    echo "- llama.cpp's Vulkan build: not carried (\`scripts/gpu_check.sh --fetch-peer\` makes .gpu-peer/)" | frag
    return
  fi
  if [ ! -x "$lb" ]; then
    if ! { mkdir -p "$WORK/peer" && xz -dc "$xzf" >"$lb.part" && chmod +x "$lb.part" && mv "$lb.part" "$lb"; }; then
      echo "- llama.cpp's llama-bench: **could not unpack**" | frag
      return
    fi
  fi
  run_step "vulkan_peer_$1" 240 bash -c '"$@" -o json >"$0"' "$WORK/logs/vulkan_peer_$1.out" "$lb" -m "$2" -p "$3" -n "$4" -r "$5" -ngl 99
  echo "- llama.cpp $(cat "$ROOT/.gpu-peer/COMMIT" 2>/dev/null) \`llama-bench -ngl 99 -p $3 -n $4 -r $5\` (Vulkan) on $(basename "$2"): $(rc_word "$RC") in ${DUR}s" | frag
  [ "$RC" != 0 ] && tailog "vulkan_peer_$1" 6 | frag
  py "$WORK/logs/vulkan_peer_$1.out" "$WORK/json/vulkan_peer_$1.json" "$1" >>"$WORK/logs/vulkan_table.md" <<'EOF'
import json, sys
try: rows = json.load(open(sys.argv[1]))
except Exception: rows = []
json.dump(rows, open(sys.argv[2], 'w'), indent=1)
for r in rows:
    test = "pp%d" % r["n_prompt"] if r.get("n_prompt") else "tg%d" % r.get("n_gen", 0)
    print("| %s | %s | llama.cpp vulkan | %.1f ± %.1f | | | | |" % (sys.argv[3], test, r.get("avg_ts", 0), r.get("stddev_ts", 0)))
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
  if [ -x "$ts" ] && [ "${GPU_CHECK_VULKAN_TESTS:-1}" != 0 ]; then
    run_step vulkan_tests 300 bash -c "cd '$ROOT/tests' && '$ts'"
    rct=$RC
    grep -q "^SKIP" "$WORK/logs/vulkan_tests.log" && skip=true
    echo "- test_vulkan_forward (every fixture: goldens, --reference, one-by-one, batched == solo): $(rc_word "$RC") in ${DUR}s; $(grep -m1 "^Vulkan device" "$WORK/logs/vulkan_tests.log"); $(tail -1 "$WORK/logs/vulkan_tests.log")" | frag
    [ "$skip" = true ] && echo "- **the Vulkan tests skipped on a GPU machine: no Vulkan device seen**" | frag
    [ "$RC" != 0 ] && tailog vulkan_tests 12 | frag
  fi
  if [ "${GPU_CHECK_VULKAN_CLI:-1}" != 0 ]; then
    run_step vulkan_cli 120 bash -c "cd '$ROOT/tests' && bash test_vulkan_cli.sh '$BIN'"
    rcc=$RC
    echo "- test_vulkan_cli: $(rc_word "$RC"); $(tail -1 "$WORK/logs/vulkan_cli.log")" | frag
  fi
  local p=512 n=128 reps=3
  [ "$quick" = 1 ] && p=64 n=16 reps=1
  echo "| model | test | backend | tok/s | GB/s | device tok/s | device GB/s | device / wall |" >"$WORK/logs/vulkan_table.md"
  echo "|---|---|---|---:|---:|---:|---:|---:|" >>"$WORK/logs/vulkan_table.md"
  local m m12=$WORK/models/lfm2-1.2b-q4_k_m$( [ "$quick" = 1 ] && echo -quick).gguf name extra=()
  [ "$quick" = 1 ] && extra=(--layers 4)
  m=$(make_model q4_k_m) || m=
  local models=${GPU_CHECK_VULKAN_MODELS:-24b 1.2b}
  if [[ " $models " == *" 1.2b "* ]] && [ ! -s "$m12" ]; then
    run_step synth_1.2b 300 "$BIN" synth --preset lfm2-1.2b --type q4_k_m -t "$JOBS" "${extra[@]}" -o "$m12.part"
    [ "$RC" = 0 ] && mv "$m12.part" "$m12" || rm -f "$m12.part"
  fi
  for name in $models; do
    local mm=$m; [ "$name" = 1.2b ] && mm=$m12
    [ "$name" = tiny ] && mm=$ROOT/tests/data/lfm2-tiny-moe-q4_0.gguf
    [ -s "$mm" ] || { echo "- no $name model: bench not run" | frag; continue; }
    run_bench "vulkan_bench_$name" 240 -m "$mm" --device vulkan -p $p -n $n -r $reps
    echo "- \`lfm2c bench --device vulkan -p $p -n $n -r $reps\` on $(basename "$mm"): $(rc_word "$RC") in ${DUR}s" | frag
    [ "$RC" != 0 ] && tailog "vulkan_bench_$name" 6 | frag
    vulkan_bench_rows "vulkan_bench_$name" | sed "s/^|/| $name |/" >>"$WORK/logs/vulkan_table.md"
    vulkan_peer "$name" "$mm" $p $n $reps
  done
  echo | frag; cat "$WORK/logs/vulkan_table.md" | frag; echo | frag
  echo "{\"built\": true, \"tests_rc\": $rct, \"cli_rc\": $rcc, \"tests_skipped\": $skip}" >"$WORK/json/vulkan.json"
}

# ---- stage: throughput (issues 71 and 82: the batched server's figures, one call) ----------------
# Steps (GPU_CHECK_TP_STEPS, in this order by default): probe — cuBLASLt on this machine
# (bench/cublas_probe.cu: BF16 products of the 24B-A2B's shapes, TFLOPS); profile — each stage's
# device time of a prefill and of a batch's decode steps (LFM2C_CUDA_PROFILE=1: the products per
# shape of layer); attention — decode at depth with the default attention and LFM2C_CUDA_ATTN=gqa;
# experts — a prefill with the experts as kernels, grouped (LFM2C_CUDA_MOE=grouped) and through
# cuBLAS's grouped GEMM (=cublas); variants — a quarter of the batched run with each variant
# (GPU_CHECK_TP_VARIANTS="NAME:VAR=VALUE[+VAR=VALUE] ..."), the fastest of the experts' ways and
# of the BF16 path, with gqa where it won, kept as the best (logs/best.env); full — the batched
# run `-b 1024 -p 1024 -n 512` with the best, its size halved until the quarter run's rate says it
# fits the time left; serve — `lfm2c serve -np 1024` with the best and LFM2C_CUDA_SAMPLE=1 under
# the load script at 1,024 clients, prompts of up to 1,024 tokens and 512 out (TTFT, TPOT).
# GPU_CHECK_THROUGHPUT="B P N MAX_TOKENS CLIENTS TOKENS" sets other sizes. On --device cpu only
# what runs on the CPU runs (the variables are the CUDA backend's); the rest is said.
tp_probe() {
  local nvcc; nvcc=$(find_cuda_tool nvcc 2>/dev/null) || nvcc=
  if [ "$device" != cuda ] || [ -z "$nvcc" ]; then
    echo "- cuBLASLt probe: not run (device $device, nvcc ${nvcc:-not found}): \`nvcc -lcublasLt bench/cublas_probe.cu\`, then \`cublas_probe $maxn\`" | frag
    return
  fi
  local ccs=${gpu_cc:-9.0}
  run_step cublas_build 180 "$nvcc" -O2 -arch=sm_${ccs//./} -o "$WORK/cublas_probe" "$ROOT/bench/cublas_probe.cu" -lcublasLt
  if [ "$RC" = 0 ]; then
    run_step cublas_probe 150 "$WORK/cublas_probe" "$maxn"
    echo "- cuBLASLt probe (BF16 x BF16 -> F32, the 24B-A2B's shapes, 64..$maxn tokens): $(rc_word "$RC") in ${DUR}s" | frag
    echo | frag; grep -E "^\||^cuBLASLt" "$WORK/logs/cublas_probe.log" | frag; echo | frag
  else
    echo "- cuBLASLt probe: **could not build** (no libcublasLt with this toolkit?)" | frag; tailog cublas_build 6 | frag
  fi
}
tp_profile() {
  if [ "$device" != cuda ]; then
    echo "- profile: not run (--device cpu): \`LFM2C_CUDA_PROFILE=1 lfm2c bench -p $pf -n 0\` and a quarter batch's \`-n 4\`" | frag
    return
  fi
  LFM2C_CUDA_PROFILE=1 run_bench tp_profile_pp 90 -m "$m" --device cuda -p $pf -n 0 -r 1
  echo "- \`LFM2C_CUDA_PROFILE=1 lfm2c bench -p $pf -n 0\` (each stage's device time: the products per shape of layer): $(rc_word "$RC") in ${DUR}s" | frag
  echo '```' | frag; sed -n '/^CUDA profile/,$p' "$WORK/logs/tp_profile_pp.log" | head -30 | frag; echo '```' | frag
  local qb=$((b / 4)) qp=$((p / 4)); [ "$qb" -lt 1 ] && qb=1; [ "$qp" -lt 1 ] && qp=1
  LFM2C_CUDA_PROFILE=1 run_bench tp_profile 120 -m "$m" --device cuda -b $qb -p $qp -n 4 -r 1
  echo "- \`LFM2C_CUDA_PROFILE=1 lfm2c bench -b $qb -p $qp -n 4\` (a quarter batch's stages, attention's among them): $(rc_word "$RC") in ${DUR}s" | frag
  echo '```' | frag; sed -n '/^CUDA profile/,$p' "$WORK/logs/tp_profile.log" | head -30 | frag; echo '```' | frag
}
# tp_one NAME LABEL WANT ENVS BENCH-ARGS...: one bench with ENVS' assignments (+ joined; "-":
# none) set, its rows into the table as "$device, LABEL"
tp_one() {
  local name=$1 label=$2 want=$3 envs=$4 a; shift 4
  local -a assigns=()
  [ "$envs" != - ] && IFS=+ read -r -a assigns <<<"$envs"
  for a in "${assigns[@]}"; do local -x "$a"; done
  run_bench "$name" "$want" -m "$m" --device "$device" "$@"
  local shown=${envs//+/ }; [ "$envs" = - ] && shown=
  echo "- \`${shown:+$shown }lfm2c bench $*\` ($label): $(rc_word "$RC") in ${DUR}s" | frag
  bench_rows "$name" | sed "s/| $device |/| $device, $label |/" >>"$WORK/logs/throughput_table.md"
}
# the total tok/s of NAME's row whose test starts with PREFIX (0: none)
tp_rate() {
  py "$WORK/json/$1.json" "$2" <<'EOF'
import json, sys
try: rows = json.load(open(sys.argv[1]))
except Exception: rows = []
print(next((int(r.get("avg_ts", 0)) for r in rows if str(r.get("test", "")).startswith(sys.argv[2])), 0))
EOF
}
tp_attention() {
  local d=4096; [ "$quick" = 1 ] && d=64
  if [ "$device" != cuda ]; then
    echo "- decode attention: not run (--device cpu): \`lfm2c bench -p 0 -n 32 -d $d\` with and without LFM2C_CUDA_ATTN=gqa" | frag
    return
  fi
  tp_one tp_attn "attention default" 60 - -p 0 -n 32 -d $d -r 1
  tp_one tp_attn_gqa "attention gqa" 60 LFM2C_CUDA_ATTN=gqa -p 0 -n 32 -d $d -r 1
}
tp_experts() {
  if [ "$device" != cuda ]; then
    echo "- experts: not run (--device cpu): \`lfm2c bench -p $pf -n 0\` with LFM2C_CUDA_MOE=kernels, grouped, cublas" | frag
    return
  fi
  local v
  for v in kernels grouped cublas; do tp_one "tp_experts_$v" "experts $v" 60 LFM2C_CUDA_MOE=$v -p $pf -n 0 -r 2; done
  grep -h "^cuda:" "$WORK/logs/tp_experts_cublas.log" 2>/dev/null | head -2 | sed 's/^/    /' | frag
}
tp_variants() {
  local qb=$((b / 4)) qp=$((p / 4)) qn=$((n / 4)) v best=- best_rate=0 gqa_rate=0 def_rate=0
  [ "$qb" -lt 1 ] && qb=1; [ "$qp" -lt 1 ] && qp=1; [ "$qn" -lt 1 ] && qn=1
  local vars=${GPU_CHECK_TP_VARIANTS:-default:- grouped:LFM2C_CUDA_MOE=grouped cublas:LFM2C_CUDA_MOE=cublas bf16:LFM2C_CUDA_BF16=1 gqa:LFM2C_CUDA_ATTN=gqa}
  [ "$device" = cuda ] || vars="default:-"
  local js="{" sep=""
  for v in $vars; do
    local nm=${v%%:*} envs=${v#*:} r
    tp_one "tp_q_$nm" "quarter $nm" 90 "$envs" -b $qb -p $qp -n $qn -r 1
    r=$(tp_rate "tp_q_$nm" b)
    js+="$sep\"$nm\": $r"; sep=", "
    case $nm in
      default) def_rate=$r;;
      gqa) gqa_rate=$r;;
      *) if [ "$r" -gt "$best_rate" ]; then best_rate=$r; best=$envs; fi;;
    esac
  done
  if [ "$def_rate" -ge "$best_rate" ]; then best=-; best_rate=$def_rate; fi
  if [ "$gqa_rate" -gt "$def_rate" ]; then
    if [ "$best" = - ]; then best=LFM2C_CUDA_ATTN=gqa; else best="$best+LFM2C_CUDA_ATTN=gqa"; fi
  fi
  echo "$best $best_rate" >"$WORK/logs/best.env"
  echo "$js, \"best\": \"$best\", \"best_rate\": $best_rate}" >"$WORK/json/tp_variants.json"
  echo "- the fastest at a quarter of the batch (\`-b $qb -p $qp -n $qn\`): \`${best//+/ }\` ($best_rate total tok/s; gqa $gqa_rate against $def_rate)" | frag
  [ "$device" = cuda ] || echo "  (on a GPU also: ${GPU_CHECK_TP_VARIANTS:-grouped:LFM2C_CUDA_MOE=grouped cublas:LFM2C_CUDA_MOE=cublas bf16:LFM2C_CUDA_BF16=1 gqa:LFM2C_CUDA_ATTN=gqa})" | frag
}
# the best variant's assignments (+ joined; "-": the defaults) and its quarter rate (tp_variants)
best_env() { if [ -f "$WORK/logs/best.env" ]; then cut -d' ' -f1 "$WORK/logs/best.env"; else echo -; fi; }
best_rate() { if [ -f "$WORK/logs/best.env" ]; then cut -d' ' -f2 "$WORK/logs/best.env"; else echo 0; fi; }
tp_full() {
  local fb=$b fp=$p fn=$n rate want=${GPU_CHECK_FULL_WANT:-120} room
  rate=$(best_rate); room=$(step_timeout "$want")
  # halved while the quarter run's rate says it would not fit (a model load is ~15 s)
  while [ "$rate" -gt 0 ] && [ $((fb * (fp + fn) / rate + 15)) -gt "$room" ] && [ "$fb" -gt 8 ]; do
    fb=$((fb / 2)); fp=$((fp / 2)); fn=$((fn / 2))
  done
  [ "$fb" != "$b" ] && echo "- the full size would not fit the time left at $rate tok/s: \`-b $fb -p $fp -n $fn\` instead" | frag
  local lbl; lbl=$(best_env | tr + ' '); [ "$lbl" = - ] && lbl="the defaults"
  tp_one tp_batched "full, $lbl" "$want" "$(best_env)" -b $fb -p $fp -n $fn -r 1
  echo "  (vLLM on an H100: 26.8K total tok/s; the target ≥ 30K at \`-b 1024 -p 1024 -n 512\`)" | frag
}
tp_serve() {
  if ! "$BIN" --version 2>/dev/null | grep -q "server: yes"; then echo "- serve: not run (built without the server)" | frag; return; fi
  local load=(python3 "$ROOT/bench/serve_load.py") ctx=$((p + tok + 64)) envs sp=$p st=$tok rate
  local want=${GPU_CHECK_SERVE_WANT:-120} room
  envs=$(best_env); rate=$(best_rate); room=$(step_timeout "$want")
  # prompts (half of --prompt-max on average) and outputs halved while the quarter batch's rate
  # says the clients' tokens would not fit (a server start is ~20 s)
  while [ "$rate" -gt 0 ] && [ $((clients * (sp / 2 + st) / rate + 20)) -gt "$room" ] && [ "$st" -gt 16 ]; do
    sp=$((sp / 2)); st=$((st / 2))
  done
  [ "$st" != "$tok" ] && echo "- the clients' full size would not fit the time left at $rate tok/s: prompts of 1..$sp tokens, $st tokens out" | frag
  command -v node >/dev/null 2>&1 && [ "${GPU_CHECK_NO_NODE:-0}" != 1 ] && load=(node "$ROOT/bench/serve_load.mjs" --skip-reuse 1)
  local ctxarg=(--ctx "$ctx"); [ "${load[0]}" = node ] && ctxarg=(--ctx-per-slot "$ctx")
  local -a assigns=()
  [ "$envs" != - ] && IFS=+ read -r -a assigns <<<"$envs"
  [ "$device" = cuda ] && assigns+=(LFM2C_CUDA_SAMPLE=1)
  run_step tp_serve "$want" env "${assigns[@]}" LFM2C_CUDA_SLOTS=$clients LFM2C_CUDA_CTX=$ctx \
    "${load[@]}" --lfm2c "$BIN" --model "$m" --device "$device" --np $clients --tokens $st --levels $clients \
    "${ctxarg[@]}" --prompt-max $sp
  echo "- \`${assigns[*]} lfm2c serve --device $device -np $clients -c $ctx\` under $(basename "${load[1]}") at $clients clients, prompts of 1..$sp tokens (filler words), $st tokens out: $(rc_word "$RC") in ${DUR}s" | frag
  echo | frag; grep -E "^\|" "$WORK/logs/tp_serve.log" | frag
  serve_json tp_serve tp_serve
}
stage_throughput() {
  begin_stage throughput
  need_bin || return
  local m; m=$(make_model q4_k_m) || { echo "- **could not make the Q4_K_M model**" | frag; return; }
  local b=1024 p=1024 n=512 maxn=8192 clients=1024 tok=512 pf=2048
  [ "$quick" = 1 ] && b=8 p=32 n=8 maxn=128 clients=4 tok=8 pf=64
  [ -n "${GPU_CHECK_THROUGHPUT:-}" ] && read -r b p n maxn clients tok <<<"$GPU_CHECK_THROUGHPUT"
  echo "| test | backend | tok/s | GB/s |" >"$WORK/logs/throughput_table.md"; echo "|---|---|---:|---:|" >>"$WORK/logs/throughput_table.md"
  local st
  for st in ${GPU_CHECK_TP_STEPS:-probe profile attention experts variants full serve}; do
    case $st in probe|profile|attention|experts|variants|full|serve) "tp_$st";; *) echo "- unknown step '$st'" | frag;; esac
  done
  echo | frag; cat "$WORK/logs/throughput_table.md" | frag
}

# The prepared run's plan on a GPU (--dry-run prints it, and writes OUTDIR/plan.md): each stage's
# steps and the time each may take there (the figures of bench/GPU.md's leases where they exist,
# else an estimate), beside the budget.
print_plan() {
  cat <<EOF
## The prepared run on a GPU (\`scripts/gpu_check.sh --prepared OUTDIR\`, budget $( [ "$dry" = 1 ] && echo 540 || echo "$budget") s)

| stage | step | may take (s) | what it times or checks |
|---|---|---:|---|
| build | configure + build (${GPU_CHECK_TARGETS:-all}) | 150 | 45–93 s on the H100 / H200 leases (the CUDA sources, now in several files) |
| build | the synthetic 24B-A2B Q4_K_M (\`lfm2c synth\`) | 120 | made once in the build folder |
| correct | \`ctest -R cuda -E emu\` | 60 | test_cuda_forward: every fixture's goldens, batched == solo (20 sessions) |
| correct | test_cuda_forward with ${GPU_CHECK_TEST_ENVS:-(none)} | 40 | the new exact paths on the device |
| correct | golden logits of the fixtures carried, greedy continuations | 45 | \`lfm2c logits --device cuda\` batch, one by one, vs \`--reference\` |
| sanitize | memcheck on ${GPU_CHECK_SANITIZE_FIXTURES:-4 fixtures}$( [ "${GPU_CHECK_RACECHECK:-1}" = 0 ] && echo "; racecheck off (GPU_CHECK_RACECHECK=1: +30 s)") | 30 | compute-sanitizer |
| throughput | profile | 40 | each stage's device time (the products per shape of layer): a 2,048-token prefill, a quarter batch (256 sequences) |
| throughput | attention | 30 | decode at depth 4096, default and LFM2C_CUDA_ATTN=gqa |
| throughput | experts | 30 | prefill 2048: kernels, grouped, cuBLAS grouped |
| throughput | variants | 75 | \`-b 256 -p 256 -n 128\`: default, grouped, cublas, bf16, gqa |
| throughput | full | 120 | \`-b 1024 -p 1024 -n 512\` with the fastest (halved to fit) |
| throughput | serve | 120 | 1,024 clients, prompts up to 1,024 tokens, 512 out (halved to fit), LFM2C_CUDA_SAMPLE=1: TTFT / TPOT |
| serve | 64 clients | 45 | TTFT / TPOT p50 / p99 |
| vulkan | test_vulkan_forward, \`lfm2c bench --device vulkan\`, llama.cpp's llama-bench (Vulkan) | 100 | the goldens on a GPU; lfm2c beside llama.cpp on the same file |

About 1,050 s if every step took its whole allowance; at the last leases' speeds (build 60–90,
the model ~60, the correct stage ~90, each bench row 10–20 s) about 600 s, so the budget may end
the run in its last stage: the stages are in order of importance, each step's timeout is what is
left of the budget, and a step with no time left is reported "skipped (budget)" (the probe,
\`GPU_CHECK_TP_STEPS=probe\`, and racecheck are left out for that). The machine's start (35–65 s)
comes on top: about 10 minutes of the 15. Carry: the working tree less tests/data's three largest files (60 MB with
.gpu-deps), \`.gpu-deps\` and \`.gpu-peer\` (about 10 MB): bench/GPU.md.
EOF
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
# in the order asked (--prepared: build, correct, sanitize, throughput, serve, vulkan)
for s in ${stages//,/ }; do
  "stage_$s"
  if [ "$s" = build ] && [ "$BUILD_OK" = 0 ]; then echo "gpu_check: the build failed: later stages skipped"; break; fi
done
write_report
if [ "$dry" = 1 ]; then
  print_plan >"$outdir/plan.md"
  echo; cat "$outdir/plan.md"
fi
exit 0
