#!/usr/bin/env bash
# memcap.sh — a model in a memory cap the size of a small laptop's RAM (issue 84: the 24B-A2B at
# IQ2_XXS in 8 GB, at Q3_K_M in 16 GB): `lfm2c bench` inside a memory cgroup of CAP bytes (v2 where
# the unified hierarchy has the memory controller, else v1), with what `lfm2c info` says the file
# needs beside what it took: the cgroup's peak (the page cache of the mapped weights counts in it,
# as on a laptop), the process's peak RSS, its major page faults (a weight page read again from the
# disk after the cap pushed it out: zero or a few hundred is "runs without re-reading the weights",
# thousands a decode that thrashes), and the speeds. Root only (it makes the cgroup). The speeds
# are only a laptop's when the machine is quiet.
# usage: bash bench/memcap.sh MODEL.gguf CAP_GB [THREADS] [CTX]   (THREADS 2; CTX 4096: what `info`
#   says the file needs at that context; the bench itself holds -p + -n positions)
#   LFM2C=build/lfm2c  BENCH_ARGS="-p 128 -n 64 -r 1"
set -euo pipefail
model=${1:?usage: bench/memcap.sh MODEL.gguf CAP_GB [THREADS] [CTX]}
cap_gb=${2:?usage: bench/memcap.sh MODEL.gguf CAP_GB [THREADS] [CTX]}
threads=${3:-2}
ctx=${4:-4096}
lfm2c=${LFM2C:-build/lfm2c}
args=${BENCH_ARGS:--p 128 -n 64 -r 1}
[ "$(id -u)" = 0 ] || { echo "memcap: needs root (it makes a memory cgroup)" >&2; exit 2; }
cap=$((cap_gb * 1024 * 1024 * 1024))
name=lfm2c-memcap-$$
if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
  cg=/sys/fs/cgroup/$name
  mkdir "$cg"
  echo "$cap" >"$cg/memory.max"
  echo 0 >"$cg/memory.swap.max" 2>/dev/null || true
  peak_file=memory.peak
elif [ -d /sys/fs/cgroup/memory ]; then
  cg=/sys/fs/cgroup/memory/$name
  mkdir "$cg"
  echo "$cap" >"$cg/memory.limit_in_bytes"
  peak_file=memory.max_usage_in_bytes
else
  echo "memcap: no memory cgroup controller here" >&2
  exit 2
fi
trap 'rmdir "$cg" 2>/dev/null || true' EXIT
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1) (cpu family $(grep -m1 '^cpu family' /proc/cpuinfo | sed 's/.*: //')), $(nproc) CPUs"
echo "file: $model ($(du -h "$model" | cut -f1)); cap ${cap_gb} GB; threads $threads; context $ctx"
"$lfm2c" info -m "$model" -c "$ctx" | grep -iE "^(file type|size|needs|  )" | head -12 || true
# the page cache starts cold for the file inside the cap (what is cached outside is not charged)
sync
echo 1 >/proc/sys/vm/drop_caches 2>/dev/null || echo "(could not drop the page cache: the first read is warm)"
out=$(mktemp)
sh -c 'echo $$ >"$1/cgroup.procs"; shift; exec /usr/bin/time -v "$@"' _ "$cg" \
  "$lfm2c" bench -m "$model" -t "$threads" $args >"$out" 2>"$out.err" || {
  echo "memcap: the bench failed inside the cap:"; tail -5 "$out.err"; rm -f "$out" "$out.err"; exit 1; }
grep -E "^\|" "$out"
echo "cgroup peak: $(($(cat "$cg/$peak_file") / 1048576)) MiB of $((cap / 1048576)) MiB"
echo "process peak RSS: $(($(sed -n 's/.*Maximum resident set size (kbytes): //p' "$out.err") / 1024)) MiB"
echo "major page faults (pages read from the disk): $(sed -n 's/.*Major (requiring I\/O) page faults: //p' "$out.err")"
rm -f "$out" "$out.err"
