#!/usr/bin/env bash
# cpu_bench.sh — reproduces the CPU speed table of issue 4 on this machine:
# builds lfm2c, writes the synthetic real-size models (once; 5-15 GB each, outside the repo),
# measures read bandwidth, then pp512 / tg128 with 1 and 2 threads next to the decode limit.
# usage: bash bench/cpu_bench.sh [MODELS_DIR]   (default /tmp/lfm2c-models; REPS=3 by default)
#        bash bench/cpu_bench.sh --contention [MODELS_DIR]
#   contention mode (issue 17): tg64 and pp128 at each of THREADS (default "1 2 4 16") on an
#   idle machine and with one competing busy process (a shell loop) running the whole time, on
#   the tiny test fixture and the synthetic CONTENTION_PRESETS (default "lfm2-350m lfm2-8b-a1b"; set empty for the fixture only);
#   prints t/s and the ratios the issue's targets name (busy -t 2 / -t 1, -t 16 / -t 2).
#   With LLAMA_DIR, llama-bench runs the same tests right after each lfm2c run (two more columns).
#        LLAMA_DIR=DIR bash bench/cpu_bench.sh --side [MODELS_DIR]
#   side-by-side mode (issue 17): pp512 / tg128 of lfm2c bench and llama-bench interleaved on the
#   same synthetic files (each round: llama-bench -mmp 0, lfm2c, llama-bench mapped; the ratio
#   is against the better llama.cpp run of the round) (DEPTH_PRESETS, default all four of 350M, 1.2B, 8B-A1B, 24B-A2B, Q4_K_M)
#   at each of THREADS (default 2), ROUNDS rounds, with the worst ratio; the depth mode's table.
#        bash bench/cpu_bench.sh --depth [MODELS_DIR]
#   depth mode (issue 17, long context): pp512 / tg128 on top of DEPTHS tokens of context
#   (default "0,4096,16384,32768"; llama-bench's -d) with the KV cache types CTK / CTV (default
#   f16), THREADS (default 2), on DEPTH_PRESETS (default "lfm2-1.2b lfm2-24b-a2b"). With
#   LLAMA_DIR (a llama.cpp build directory holding bin/llama-bench) llama-bench runs on the same
#   files with the same -d / -ctk / -ctv and -fa 1, interleaved with lfm2c over ROUNDS rounds
#   (default 2), and the table shows both and the worst ratio lfm2c / llama.cpp. DEPTH_FILES
#   adds GGUF files of one's own (set DEPTH_PRESETS="" for those only).
#        LLAMA_DIR=DIR bash bench/cpu_bench.sh --batch [MODELS_DIR]
#   batch mode (issue 17, many users): B sequences of a 128-token prompt + 64 generated tokens
#   each, total tok/s, for each B of BATCHES (default 4,8,16): `lfm2c bench -b` beside
#   `llama-batched-bench -npl` (same threads, F16 KV, -fa 1), on BATCH_PRESETS (default 8B-A1B
#   and 24B-A2B), ROUNDS rounds (default 1), with the worst ratio.
#        bash bench/cpu_bench.sh --decode [MODELS_DIR]
#   decode mode (issue 17, decode at the read bandwidth): ROUNDS rounds (default 3) of, for each of
#   DECODE_PRESETS (default all four) and THREADS (default "1 2"): membw over 1 GB (each thread one
#   slice, the best of its stream / prefetch patterns; the mean of a run before and one after the
#   decode, as this VM's bandwidth drifts within minutes); membw over a buffer of the model file's
#   size, for MoE models in random pieces of one expert matrix (what the decode reads, from as much
#   memory: on a virtual machine 12 GB read slower than 1 GB, whatever the pattern); and `lfm2c
#   bench -n 128 -r REPS --warm-read` (every weight byte read once before the rows: the first read
#   of a fresh copy can run at a fraction of the bandwidth, and a server decodes for hours; the
#   rate of that read is the last column). Prints every round and the medians: decode GB/s (t/s x weights
#   read per token) as a fraction of each bandwidth, and from the decode profile the share of
#   decode time inside the weight products and the GB/s they read at (the kernels' own stream);
#   then bench's replay of the decode's own reads (src/cpu/replay.c): its GB/s job by job, and the
#   products' share of it token by token ("paired"), the ceiling on the weights' own pages.
#        LLAMA_DIR=DIR bash bench/cpu_bench.sh --paired [MODELS_DIR]
#   paired mode (issue 34, a VM whose bandwidth flips): tg128 of llama-bench (-mmp 0 and mapped,
#   the better taken) and of lfm2c bench, one after the other, with `membw 1024` before, between
#   and after, for ROUNDS rounds (default 6) at each of THREADS (default "1 2") on PAIRED_PRESETS
#   (default all four). On the 2-core Zen 4 VMs the two-thread bandwidth flips within seconds
#   between ~37 and ~65-75 GB/s (bench/CPU.md "2026-11-27"), so a ratio of runs a minute apart
#   can compare two machines. Each run is put in the bandwidth state its two probes agree on
#   ("low": below 75% of the best probe), and each state compares lfm2c's slowest run with
#   llama.cpp's fastest, and gives lfm2c's decode GB/s as a share of its probes' mean.
#   PAIRED_DEPTH=D decodes on top of D tokens of context (llama-bench's -d; F16 KV, -fa 1 for
#   llama.cpp), PAIRED_REPS repetitions a run (default 2). At two threads and more each probe also
#   gives membw's cross-core round trip, timed before its bandwidth (about 50 ns: the vCPUs share a
#   core complex, the low state there; 300 ns and more: two complexes, the high state; a flip can
#   fall between the two), and each lfm2c run its whole decode step's share of a plain one-pass
#   read of its own weights, token by token (bench's `replay_paired_whole_share`), which no flip
#   between the probes can skew.
set -euo pipefail
cd "$(dirname "$0")/.."
contention=0; depth=0; side=0; batch=0; decode=0; paired=0
if [ "${1:-}" = "--decode" ]; then decode=1; shift; fi
if [ "${1:-}" = "--paired" ]; then paired=1; shift; fi
if [ "${1:-}" = "--batch" ]; then batch=1; shift; fi
if [ "${1:-}" = "--contention" ]; then contention=1; shift; fi
if [ "${1:-}" = "--depth" ]; then depth=1; shift; fi
if [ "${1:-}" = "--side" ]; then depth=1; side=1; shift; fi
dir=${1:-/tmp/lfm2c-models}; reps=${REPS:-3}
mkdir -p "$dir"
# every measurement starts from the same page cache: the other models' pages dropped, this one
# read in (after llama.cpp's repacked copy a file's pages may be gone; no side pays the disk)
warm() {
  for other in "$dir"/*.gguf; do
    [ "$other" = "$1" ] || python3 -c "import os,sys; os.posix_fadvise(os.open(sys.argv[1], os.O_RDONLY), 0, 0, os.POSIX_FADV_DONTNEED)" "$other"
  done
  cat "$1" > /dev/null
}
# "GB/s round-trip-ns": membw over $1 MB with $2 threads ($3: pieces of that many KB, optional);
# the cross-core round trip is "-" at one thread
membw_probe() { ./build/membw "$1" "$2" ${3:+"$3"} | awk -v t="$2" '$1=="cross-core"{rt=$4} $1=="threads" && $2==t":"{g=$3} END{print g, (rt=="" ? "-" : rt)}'; }
membw_gbs() { membw_probe "$@" | cut -d' ' -f1; }
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target lfm2c_cli membw >/dev/null
# every table names the machine it came from: the CPU kind (family / model), AMX or not, the date
amx=$(grep -qw amx_tile /proc/cpuinfo && echo "AMX" || echo "no AMX")
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1) ($(grep -m1 vendor_id /proc/cpuinfo | sed 's/.*: //') family \
$(grep -m1 '^cpu family' /proc/cpuinfo | sed 's/.*: //') model $(grep -m1 '^model' /proc/cpuinfo | sed 's/.*: //'), $amx), \
$(nproc) CPUs; $(date -u +%F); lfm2c $(git rev-parse --short HEAD 2>/dev/null || echo '?')"

if [ $decode = 1 ]; then
  presets=${DECODE_PRESETS-lfm2-350m lfm2-1.2b lfm2-8b-a1b lfm2-24b-a2b}; rounds=${ROUNDS:-3}; reps=${REPS:-4}
  log=$(mktemp)
  for preset in $presets; do
    f="$dir/$preset-q4_k_m.gguf"
    [ -f "$f" ] || ./build/lfm2c synth --preset $preset --type q4_k_m -o "$f" >/dev/null
  done
  echo "| round | model | threads | tg128 t/s | decode GB/s | membw 1 GB | fraction | membw model-sized | fraction | in weight products | their GB/s | replay GB/s | paired | warm read GB/s |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for r in $(seq 1 "$rounds"); do
    for preset in $presets; do
      f="$dir/$preset-q4_k_m.gguf"
      info=$(./build/lfm2c info -m "$f")
      piece_kb=$(echo "$info" | python3 -c "
import re,sys; s=sys.stdin.read(); e=re.search(r'expert FFN (\d+)', s); h=re.search(r'hidden (\d+)', s)
print(int(e.group(1))*int(h.group(1))*144//256//1024 if e else 0)")
      mb=$(( $(stat -c %s "$f") >> 20 ))
      warm "$f"
      for t in ${THREADS:-1 2}; do
        bw0=$(membw_gbs 1024 "$t")
        pbw=$(membw_gbs "$mb" "$t" $([ "$piece_kb" = 0 ] || echo "$piece_kb"))
        ./build/lfm2c bench -m "$f" -p 0 -n 128 -t "$t" -r "$reps" --warm-read -o json > "$log.json" 2>/dev/null
        bw=$(python3 -c "import sys; print('%.1f' % ((float(sys.argv[1]) + float(sys.argv[2])) / 2))" "$bw0" "$(membw_gbs 1024 "$t")")
        python3 - "$log.json" "$r" "$preset" "$t" "$bw" "$pbw" <<'PY' | tee -a "$log"
import json, sys
js, r, preset, t, bw, pbw = sys.argv[1:]
d = json.load(open(js))
d = d[0] if isinstance(d, list) else d
s = d["samples_ts"]
ts = sum(s) / len(s)
gb = ts * d["gbps"] / d["avg_ts"]   # t/s x weights read per token
ps, pg = d.get("samples_matmul_share", [0]), d.get("samples_matmul_gbps", [0])   # lfm2c_model_decode_profile
share, mgb = sum(ps) / len(ps), sum(pg) / len(pg)
# the ceiling on the decode's own pages (src/cpu/replay.c): its reads read again job by job, and
# the products' share of that rate token by token ("paired")
rg, pr = d.get("replay_gbps_jobs", 0), d.get("replay_paired_share", 0)
print(f"| {r} | {preset} | {t} | {ts:.2f} | {gb:.1f} | {bw} | {gb / float(bw) * 100:.0f}% | {pbw} | {gb / float(pbw) * 100:.0f}% | {share * 100:.1f}% | {mgb:.1f} | {rg:.1f} | {pr * 100:.0f}% | {d.get('warm_read_gbps', 0):.1f} |")
PY
      done
    done
  done
  echo
  echo "medians over the rounds:"
  python3 - "$log" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    c = [x.strip() for x in line.strip().strip("|").split("|")]
    rows.setdefault((c[1], c[2]), []).append(c)
print("| model | threads | tg128 t/s | decode GB/s | of membw 1 GB | of membw model-sized | in weight products | their GB/s | replay GB/s | paired |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for (m, t), rs in rows.items():
    med = lambda i: statistics.median(float(x[i].rstrip("%")) for x in rs)
    print(f"| {m} | {t} | {med(3):.2f} | {med(4):.1f} | {med(6):.0f}% | {med(8):.0f}% | {med(9):.1f}% | {med(10):.1f} | {med(11):.1f} | {med(12):.0f}% |")
PY
  rm -f "$log" "$log.json"
  exit 0
fi

if [ $paired = 1 ]; then
  [ -n "${LLAMA_DIR:-}" ] || { echo "--paired needs LLAMA_DIR (a llama.cpp build directory)" >&2; exit 2; }
  rounds=${ROUNDS:-6}; n=${PAIRED_N:-128}; d=${PAIRED_DEPTH:-0}; pr=${PAIRED_REPS:-2}; log=$(mktemp)
  for preset in ${PAIRED_PRESETS-lfm2-350m lfm2-1.2b lfm2-8b-a1b lfm2-24b-a2b}; do
    f="$dir/$preset-q4_k_m.gguf"
    [ -f "$f" ] || ./build/lfm2c synth --preset $preset --type q4_k_m -o "$f" >/dev/null
    warm "$f"
    for t in ${THREADS:-1 2}; do
      for r in $(seq 1 "$rounds"); do
        read -r b0 rt0 <<< "$(membw_probe 1024 "$t")"
        l0=$("$LLAMA_DIR/bin/llama-bench" -m "$f" -p 0 -n "$n" -d "$d" -t "$t" -r "$pr" -fa 1 -mmp 0 -o json 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)[-1]['avg_ts'])")
        l1=$("$LLAMA_DIR/bin/llama-bench" -m "$f" -p 0 -n "$n" -d "$d" -t "$t" -r "$pr" -fa 1 -o json 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)[-1]['avg_ts'])")
        read -r b1 rt1 <<< "$(membw_probe 1024 "$t")"
        o=$(./build/lfm2c bench -m "$f" -p 0 -n "$n" -d "$d" -t "$t" -r "$pr" -o json 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin)[-1]; print(d['avg_ts'], d['gbps'], d.get('replay_paired_whole_share', 0))")
        read -r b2 rt2 <<< "$(membw_probe 1024 "$t")"
        echo "$preset$([ "$d" = 0 ] || echo "@d$d") $t $r $b0 $b1 $b2 $l0 $l1 $o $rt0/$rt1/$rt2" | tee -a "$log"
      done
    done
  done
  python3 - "$log" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
print("\n| model | threads | round | membw 1 GB before / between / after (round trip, ns) | llama.cpp -mmp 0 / mapped | lfm2c | ratio | lfm2c GB/s, of membw around it | whole step, of a one-pass read of its weights (paired) |")
print("|---|---:|---:|---|---|---:|---:|---|---:|")
best = {}
for m, t, r, *v in rows:
    best[t] = max(best.get(t, 0), *map(float, v[:3]))
state = lambda t, x: "high" if float(x) >= 0.75 * best[t] else "low"
runs = {}   # (model, threads, state) -> {"llama": [t/s], "lfm2c": [(t/s, share of membw, whole-step share)]}
for m, t, r, b0, b1, b2, l0, l1, o, dec, whole, rts in rows:   # dec: lfm2c's decode GB/s (t/s x weights read per token)
    l = max(float(l0), float(l1)); o = float(o); dec = float(dec); whole = float(whole)
    rt = "" if rts == "-/-/-" else f" ({rts})"
    wh = f"{whole * 100:.0f}%" if whole > 0 else "-"
    print(f"| {m} | {t} | {r} | {b0} / {b1} / {b2}{rt} | {float(l0):.2f} / {float(l1):.2f} | {o:.2f} | {o / l:.2f}x | {dec:.1f}, {dec / ((float(b1) + float(b2)) / 2) * 100:.0f}% | {wh} |")
    # a run belongs to a bandwidth state when the probes on both sides of it agree
    if state(t, b0) == state(t, b1):
        runs.setdefault((m, t, state(t, b1)), {"llama": [], "lfm2c": []})["llama"].append(l)
    if state(t, b1) == state(t, b2):
        runs.setdefault((m, t, state(t, b2)), {"llama": [], "lfm2c": []})["lfm2c"].append((o, dec / ((float(b1) + float(b2)) / 2), whole))
print("\nBy bandwidth state (a run counts where the probes before and after it are in the same state;")
print("\"low\" is below 75% of the best probe at that thread count); the ratio is lfm2c's slowest run")
print("against llama.cpp's fastest in the same state:\n")
print("| model | threads | bandwidth state | llama.cpp runs: best t/s | lfm2c runs: slowest t/s | ratio | lfm2c decode / membw (worst) | whole step / one-pass read (worst) |")
print("|---|---:|---|---|---|---:|---:|---:|")
for (m, t, st), v in sorted(runs.items()):
    L, O = v["llama"], v["lfm2c"]
    lb = max(L) if L else 0; ow = min(x[0] for x in O) if O else 0
    ratio = "%.2fx" % (ow / lb) if L and O else "-"
    share = "%.0f%%" % (min(x[1] for x in O) * 100) if O else "-"
    whole = "%.0f%%" % (min(x[2] for x in O) * 100) if O and min(x[2] for x in O) > 0 else "-"
    print(f"| {m} | {t} | {st} | {len(L)}: {lb:.2f} | {len(O)}: {ow:.2f} | {ratio} | {share} | {whole} |")
PY
  rm -f "$log"
  exit 0
fi

if [ $batch = 1 ]; then
  [ -n "${LLAMA_DIR:-}" ] || { echo "--batch needs LLAMA_DIR (a llama.cpp build directory)" >&2; exit 2; }
  bs=${BATCHES:-4,8,16}; threads=${THREADS:-2}; rounds=${ROUNDS:-1}
  out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
  for preset in ${BATCH_PRESETS-lfm2-8b-a1b lfm2-24b-a2b}; do
    f="$dir/$preset-q4_k_m.gguf"
    [ -f "$f" ] || ./build/lfm2c synth --preset $preset --type q4_k_m -o "$f" >/dev/null
    for r in $(seq 1 "$rounds"); do
      warm "$f"
      ./build/lfm2c bench -m "$f" -b "$bs" -p 128 -n 64 -t "$threads" -r 1 -o json > "$out/$preset.lfm2c.$r.json"
      warm "$f"
      maxb=$(echo "$bs" | tr , '\n' | sort -n | tail -1)
      "$LLAMA_DIR/bin/llama-batched-bench" -m "$f" -c $((maxb * 192 + 256)) -b 2048 -ub 512 -npp 128 -ntg 64 -npl "$bs" \
        -t "$threads" -fa on -ctk f16 -ctv f16 --output-format jsonl 2>/dev/null | grep '^{' > "$out/$preset.llama.$r.jsonl"
    done
  done
  python3 - "$out" "$threads" <<'PY'
import glob, json, os, sys
out, threads = sys.argv[1:]
print(f"\n| model | threads | B | llama-batched-bench t/s | lfm2c bench -b t/s | lfm2c / llama.cpp (worst round) |")
print("|---|---:|---:|---:|---:|---:|")
for lf in sorted(glob.glob(os.path.join(out, "*.lfm2c.1.json"))):
    preset = os.path.basename(lf).split(".lfm2c.")[0]
    ours = [{r["n_batch"]: r["avg_ts"] for r in json.load(open(p))} for p in sorted(glob.glob(os.path.join(out, preset + ".lfm2c.*.json")))]
    theirs = [{r["pl"]: r["speed"] for r in map(json.loads, open(p))} for p in sorted(glob.glob(os.path.join(out, preset + ".llama.*.jsonl")))]
    for b in sorted(ours[0]):
        o = [x[b] for x in ours]; l = [x.get(b) for x in theirs]
        ratio = "%.2fx" % min(a / c for a, c in zip(o, l)) if l and all(l) else "-"
        fmt = lambda v: "-" if not v or not all(v) else "/".join("%.1f" % x for x in v)
        print(f"| {preset} | {threads} | {b} | {fmt(l)} | {fmt(o)} | {ratio} |")
PY
  exit 0
fi
if [ $depth = 1 ]; then
  if [ $side = 1 ]; then
    depths=${DEPTHS:-0}; presets=${DEPTH_PRESETS-lfm2-350m lfm2-1.2b lfm2-8b-a1b lfm2-24b-a2b}
    [ -n "${LLAMA_DIR:-}" ] || { echo "--side needs LLAMA_DIR (a llama.cpp build directory)" >&2; exit 2; }
  else
    depths=${DEPTHS:-0,4096,16384,32768}; presets=${DEPTH_PRESETS-lfm2-1.2b lfm2-24b-a2b}
  fi
  ctk=${CTK:-f16}; ctv=${CTV:-f16}; threads=${THREADS:-2}; rounds=${ROUNDS:-2}
  llama_bench=
  if [ -n "${LLAMA_DIR:-}" ]; then
    llama_bench=$LLAMA_DIR/bin/llama-bench
    [ -x "$llama_bench" ] || { echo "no llama-bench at $llama_bench" >&2; exit 1; }
  fi
  out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
  files=()
  for preset in $presets; do
    f="$dir/$preset-q4_k_m.gguf"
    [ -f "$f" ] || ./build/lfm2c synth --preset $preset --type q4_k_m -o "$f" >/dev/null
    files+=("$f")
  done
  for f in ${DEPTH_FILES:-}; do files+=("$f"); done   # other GGUF files, e.g. real models
  for f in "${files[@]}"; do
    preset=$(basename "$f" .gguf)
    ./build/lfm2c info -m "$f" -ctk "$ctk" -ctv "$ctv" | sed -n 's/^memory: *//p' | sed "s/^/$preset: /"
    for t in $threads; do
      for r in $(seq 1 "$rounds"); do
        # llama.cpp twice a round, around lfm2c: copied into memory (-mmp 0), then mapped (its
        # default); the table compares with the better of the two, test by test
        if [ -n "$llama_bench" ]; then
          warm "$f"
          "$llama_bench" -m "$f" -p 512 -n 128 -d "$depths" -ctk "$ctk" -ctv "$ctv" -fa 1 -t "$t" -r "$reps" -mmp 0 \
            -o json > "$out/$preset.t$t.llama.$r.mmp0.json" 2>/dev/null
        fi
        warm "$f"
        ./build/lfm2c bench -m "$f" -p 512 -n 128 -d "$depths" -ctk "$ctk" -ctv "$ctv" -t "$t" -r "$reps" -o json \
          > "$out/$preset.t$t.lfm2c.$r.json"
        if [ -n "$llama_bench" ]; then
          warm "$f"
          "$llama_bench" -m "$f" -p 512 -n 128 -d "$depths" -ctk "$ctk" -ctv "$ctv" -fa 1 -t "$t" -r "$reps" -o json \
            > "$out/$preset.t$t.llama.$r.json" 2>/dev/null
        fi
      done
    done
  done
  python3 - "$out" "$ctk" "$ctv" <<'PY'
import glob, json, os, sys
out, ctk, ctv = sys.argv[1:]
solo = {}   # (preset.tT, test) -> [passes run solo, passes]: lfm2c's pool went solo on a busy machine
def rows(path, key=None):
    res = {}
    for r in json.load(open(path)):
        test = ("pp%d" % r["n_prompt"]) if r["n_prompt"] else ("tg%d" % r["n_gen"])
        if r.get("n_depth", 0): test += " @ d%d" % r["n_depth"]
        res[test] = r["avg_ts"]
        if key and r.get("pool_went_solo"):   # more than a lost probe of the solo mode (lfm2c bench)
            c = solo.setdefault((key, test), [0, 0])
            c[0] += r["pool_solo_steps"]; c[1] += r["pool_steps"]
    return res
print(f"\n| model | threads | K/V | test | llama.cpp t/s | lfm2c t/s | lfm2c / llama.cpp (worst round) |")
print("|---|---:|---|---|---:|---:|---:|")
for lf in sorted(glob.glob(os.path.join(out, "*.lfm2c.1.json"))):
    key = os.path.basename(lf).split(".lfm2c.")[0]       # PRESET.tT
    preset, t = key.rsplit(".t", 1)
    ours = [rows(p, key) for p in sorted(glob.glob(os.path.join(out, key + ".lfm2c.*.json")))]
    theirs = []   # per round, each test's better llama.cpp run (mapped or -mmp 0)
    for p in sorted(glob.glob(os.path.join(out, key + ".llama.[0-9]*.json"))):
        if p.endswith(".mmp0.json"): continue
        best = rows(p)
        m = p[:-len(".json")] + ".mmp0.json"
        if os.path.exists(m):
            for test, v in rows(m).items(): best[test] = max(v, best.get(test, 0))
        theirs.append(best)
    for test in ours[0]:
        o = [r[test] for r in ours if test in r]
        l = [r[test] for r in theirs if test in r]
        ratio = "-"
        if l and len(l) == len(o): ratio = "%.2fx" % min(a / b for a, b in zip(o, l))
        fmt = lambda v: "-" if not v else "%.2f-%.2f" % (min(v), max(v)) if len(v) > 1 else "%.2f" % v[0]
        mark = " *" if (key, test) in solo else ""
        print(f"| {preset} | {t} | {ctk}/{ctv} | {test} | {fmt(l)} | {fmt(o)}{mark} | {ratio} |")
if solo:
    print("\n\\* lfm2c's thread pool ran some of these passes on one thread: it measured other processes")
    print("holding the cores (a busy machine), so the row is not a quiet-machine figure; run it again.")
    for (key, test), (n, m) in sorted(solo.items()): print(f"{key} {test}: {n} of {m} passes solo (rounds with any)")
PY
  exit 0
fi
if [ $contention = 1 ]; then
  threads=${THREADS:-1 2 4 16}
  models=(tests/data/lfm2-tiny-moe-q4_0.gguf)
  for preset in ${CONTENTION_PRESETS-lfm2-350m lfm2-8b-a1b}; do
    f="$dir/$preset-q4_k_m.gguf"
    [ -f "$f" ] || ./build/lfm2c synth --preset $preset --type q4_k_m -o "$f" >/dev/null
    models+=("$f")
  done
  # llama-bench's CSV: the avg_ts of the row with n_prompt = $1 and n_gen = $2 ("none" if absent)
  llama_csv='import csv, sys
rows = list(csv.DictReader(sys.stdin))
v = [r["avg_ts"] for r in rows if r.get("n_prompt") == sys.argv[1] and r.get("n_gen") == sys.argv[2]]
print("%.2f" % float(v[0]) if v else "none")'
  busy_pid=
  trap '[ -n "$busy_pid" ] && kill $busy_pid 2>/dev/null; true' EXIT
  llama_bench=
  [ -n "${LLAMA_DIR:-}" ] && llama_bench=$LLAMA_DIR/bin/llama-bench
  echo "| model | load | threads | pp128 t/s | tg64 t/s | tg vs -t 1 | tg vs -t 2 | llama.cpp pp128 | llama.cpp tg64 |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
  for f in "${models[@]}"; do
    cat "$f" > /dev/null
    for load in idle busy; do
      if [ $load = busy ]; then sh -c 'while :; do :; done' & busy_pid=$!; sleep 0.5; fi
      tg1=; tg2=
      for t in $threads; do
        out=$(timeout 600 ./build/lfm2c bench -m "$f" -p 128 -n 64 -t "$t" -r "$reps" -o csv || true)
        pp=$(echo "$out" | awk -F, '$4==128{print $6}'); tg=$(echo "$out" | awk -F, '$5==64{print $6}')
        pp=${pp:-none}; tg=${tg:-none}
        [ "$t" = 1 ] && tg1=$tg
        [ "$t" = 2 ] && tg2=$tg
        r1=$(python3 -c "import sys; a,b=sys.argv[1:]; print(f'{float(a)/float(b):.2f}' if b not in ('','none') and a!='none' else '-')" "$tg" "${tg1:-}")
        r2=$(python3 -c "import sys; a,b=sys.argv[1:]; print(f'{float(a)/float(b):.2f}' if b not in ('','none') and a!='none' else '-')" "$tg" "${tg2:-}")
        lpp=-; ltg=-
        if [ -n "$llama_bench" ]; then
          lout=$(timeout 600 "$llama_bench" -m "$f" -p 128 -n 64 -t "$t" -r "$reps" -o csv 2>/dev/null || true)
          lpp=$(echo "$lout" | python3 -c "$llama_csv" 128 0); ltg=$(echo "$lout" | python3 -c "$llama_csv" 0 64)
        fi
        echo "| $(basename "$f" .gguf) | $load | $t | $pp | $tg | $r1 | $r2 | $lpp | $ltg |"
      done
      if [ $load = busy ]; then kill $busy_pid; wait $busy_pid 2>/dev/null || true; busy_pid=; fi
    done
  done
  exit 0
fi
for preset in lfm2-24b-a2b lfm2-8b-a1b; do
  f="$dir/$preset-q4_k_m.gguf"
  [ -f "$f" ] || ./build/lfm2c synth --preset $preset --type q4_k_m -o "$f"
done
echo "## memory read bandwidth"
./build/membw | tee "$dir/membw.txt"
bw1=$(awk '/^threads 1:/{print $3}' "$dir/membw.txt")
bw2=$(awk '/^threads 2:/{print $3}' "$dir/membw.txt")
echo
echo "| model | threads | pp512 t/s | tg128 t/s | decode GB/s | bandwidth limit t/s | fraction | peak RSS MB |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for preset in lfm2-24b-a2b lfm2-8b-a1b; do
  f="$dir/$preset-q4_k_m.gguf"
  # only this model in the page cache: 14.4 + 5.0 GB and prefill's buffers do not fit together
  # on a 24 GB machine, and weights evicted mid-run would time the disk
  warm "$f"   # the table measures compute and memory, not the disk
  for t in 1 2; do
    out=$(./build/lfm2c bench -m "$f" -p 512 -n 128 -t $t -r "$reps" -o csv)
    pp=$(echo "$out" | awk -F, '$4==512{print $6}'); tg=$(echo "$out" | awk -F, '$5==128{print $6}')
    gb=$(echo "$out" | awk -F, '$5==128{print $8}'); rss=$(echo "$out" | awk -F, '$5==128{print $9}')
    bytes=$(./build/lfm2c info -m "$f" | sed -n 's/.*read per token \([0-9.]*\) GB.*/\1/p')
    bw=$([ $t = 1 ] && echo "$bw1" || echo "$bw2")
    lim=$(python3 -c "print(f'{$bw/$bytes:.1f}')"); frac=$(python3 -c "print(f'{$tg/($bw/$bytes)*100:.0f}%')")
    echo "| $preset Q4_K_M | $t | $pp | $tg | $gb | $lim | $frac | $rss |"
  done
done
