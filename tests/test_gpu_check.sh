#!/usr/bin/env bash
# test_gpu_check.sh — scripts/gpu_check.sh where CI is: without a GPU it says so and exits 0
# (nvidia-smi hidden, so this holds on a GPU machine too); bad arguments exit 2; a CPU dry run
# of its correctness stage (--device cpu, reusing this build) compares every fixture and writes
# the report and the JSON; --dry-run's throughput steps keep the fastest variant and print the
# GPU run's plan. Usage: bash test_gpu_check.sh PATH/TO/lfm2c
bin=${1:?usage: test_gpu_check.sh PATH/TO/lfm2c}
script=$(cd .. && pwd)/scripts/gpu_check.sh
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*" >&2; }

# no GPU: one line saying why, exit 0, the report says it too
out=$(GPU_CHECK_NVIDIA_SMI=/nonexistent/nvidia-smi bash "$script" "$tmp/nogpu" 2>&1); rc=$?
echo "$out"
[[ $rc == 0 && $out == *"no NVIDIA GPU here (nvidia-smi not found)"* ]] && ok || bad "no GPU: rc=$rc out=$out"
grep -q "no NVIDIA GPU here" "$tmp/nogpu/report.md" 2>/dev/null && ok || bad "no GPU: report.md does not say why"
# the throughput stage (issue 71) is a stage like the others: without a GPU, the same answer
out=$(GPU_CHECK_NVIDIA_SMI=/nonexistent/nvidia-smi bash "$script" --stage throughput "$tmp/nogpu3" 2>&1); rc=$?
[[ $rc == 0 && $out == *"no NVIDIA GPU here"* ]] && ok || bad "--stage throughput without a GPU: rc=$rc out=$out"
# an nvidia-smi that finds no device (a driver without a GPU) counts as no GPU
printf '#!/bin/sh\necho "No devices were found"\n' >"$tmp/smi"; chmod +x "$tmp/smi"
out=$(GPU_CHECK_NVIDIA_SMI=$tmp/smi bash "$script" "$tmp/nogpu2" 2>&1); rc=$?
[[ $rc == 0 && $out == *"lists no GPU"* ]] && ok || bad "no device: rc=$rc out=$out"

# bad arguments: exit 2 with a message, nothing run
for args in "" "--stage nope $tmp/x" "--device tpu $tmp/x" "--budget soon $tmp/x" "$tmp/a $tmp/b" "--arch sm90 $tmp/x" "--frobnicate $tmp/x"; do
  bash "$script" $args >"$tmp/out" 2>&1; rc=$?
  [[ $rc == 2 && -s "$tmp/out" ]] && ok || bad "args '$args': rc=$rc $(head -c 300 "$tmp/out")"
done
bash "$script" --help >"$tmp/out" 2>&1 && grep -q -- "--stage" "$tmp/out" && ok || bad "--help"

# the CPU dry run of the correctness stage against this build
bdir=$(cd "$(dirname "$bin")" && pwd)
out=$(bash "$script" --device cpu --build-dir "$bdir" --stage correct "$tmp/cpu" 2>&1); rc=$?
[[ $rc == 0 ]] && ok || bad "cpu dry run: rc=$rc $(echo "$out" | tail -5)"
grep -q "10 fixtures: all within limits" "$tmp/cpu/report.md" 2>/dev/null && ok || bad "cpu dry run: logits $(cat "$tmp/cpu/report.md" 2>/dev/null | head -40)"
n=$(grep -c "identical to the CPU; device equals the golden text" "$tmp/cpu/report.md" 2>/dev/null)
[[ $n == 2 ]] && ok || bad "cpu dry run: greedy continuations ($n of 2)"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if r['correct_logits']['ok'] and len(r['correct_logits']['fixtures'])==10 else 1)" "$tmp/cpu/results.json" && ok || bad "results.json"
tar -tzf "$tmp/cpu/logs.tar.gz" | grep -q "logs/logits_lfm2-tiny-dense-f32.log" && ok || bad "logs.tar.gz"

# issue 82's prepared run: --dry-run's throughput steps on the CPU (small sizes), the best kept,
# the report's rows and the plan of the GPU run; --fetch-peer without a llama.cpp source says so
out=$(GPU_CHECK_TP_STEPS="attention variants full" GPU_CHECK_THROUGHPUT="2 8 2 16 2 4" \
  bash "$script" --dry-run --build-dir "$bdir" --stage throughput "$tmp/dry" 2>&1); rc=$?
[[ $rc == 0 ]] && ok || bad "dry run: rc=$rc $(echo "$out" | tail -5)"
grep -q "the fastest at a quarter of the batch" "$tmp/dry/report.md" 2>/dev/null && grep -q "decode attention: not run (--device cpu)" "$tmp/dry/report.md" && ok || bad "dry run: report $(head -c 2000 "$tmp/dry/report.md" 2>/dev/null)"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if r['tp_variants']['default'] > 0 and r['tp_batched'] else 1)" "$tmp/dry/results.json" && ok || bad "dry run: results.json"
grep -q "The prepared run on a GPU" "$tmp/dry/plan.md" 2>/dev/null && ok || bad "dry run: plan.md"
out=$(GPU_CHECK_LLAMA_SRC=/nonexistent bash "$script" --fetch-peer 2>&1); rc=$?
[[ $rc == 2 && $out == *"no llama.cpp source"* ]] && ok || bad "--fetch-peer without a source: rc=$rc $out"

echo "$pass passed, $fail failed"
[[ $fail == 0 ]]
