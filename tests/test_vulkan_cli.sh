#!/usr/bin/env bash
# test_vulkan_cli.sh LFM2C — --device vulkan from the CLI: logits of a prompt equal the CPU's
# --reference within 1e-2, greedy `run` gives the CPU's text, `bench --device vulkan` prints
# sane JSON rows (with the device's timestamp time and GB/s beside the wall's), speculative decoding (--spec-lookup) gives the CPU's greedy text, an unknown
# device is refused, the device is named at start (a warning on a CPU implementation). SKIPs, saying so, in a build without the Vulkan
# backend or on a machine without a Vulkan device (then only checks that it fails cleanly).
set -u
bin=$1; pass=0; fail=0
ok()   { pass=$((pass+1)); }
bad()  { fail=$((fail+1)); echo "FAIL: $*"; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
m=data/lfm2-tiny-moe-q8_0.gguf
"$bin" logits -m $m --tokens 1,2 --device metal -o "$tmp/x" >/dev/null 2>"$tmp/err"; [ $? != 0 ] && grep -q "cpu, cuda or vulkan" "$tmp/err" && ok || bad "unknown device"
if ! "$bin" --version | grep -q "^vulkan: yes"; then
  "$bin" logits -m $m --tokens 1,2 --device vulkan -o "$tmp/x" >/dev/null 2>"$tmp/err"; [ $? != 0 ] && grep -q "no Vulkan backend" "$tmp/err" && ok || bad "vulkan in a build without it: $(cat "$tmp/err")"
  echo "SKIP: built without the Vulkan backend"; echo "$pass passed, $fail failed"; [ $fail = 0 ]; exit
fi
if ! "$bin" logits -m $m --tokens 1,2 --device vulkan -o "$tmp/x" >/dev/null 2>"$tmp/err"; then
  grep -qi "vulkan" "$tmp/err" && ok || bad "no device: unclear error: $(cat "$tmp/err")"
  echo "SKIP: no Vulkan device ($(cat "$tmp/err"))"; echo "$pass passed, $fail failed"; [ $fail = 0 ]; exit
fi
# the device is named at start; where it is the CPU itself (lavapipe) a warning says --device cpu is
# faster. vulkaninfo (vulkan-tools) is the oracle for the names and types of the devices there are.
"$bin" run -m $m -p hi -n 1 --device vulkan >/dev/null 2>"$tmp/err"
name=$(sed -n 's/^lfm2c: device: \(.*\) (Vulkan)$/\1/p' "$tmp/err")
[ -n "$name" ] && ok || bad "run --device vulkan does not name the device: $(cat "$tmp/err")"
if command -v vulkaninfo >/dev/null; then
  vulkaninfo --summary 2>/dev/null | sed -n 's/^\s*deviceType *= *//p; s/^\s*deviceName *= *//p' | paste - - >"$tmp/devs"
  type=$(awk -F'\t' -v n="$name" '$2 == n {print $1; exit}' "$tmp/devs")
  [ -n "$type" ] && ok || bad "the named device '$name' is not one vulkaninfo lists: $(cat "$tmp/devs")"
  if [ "$type" = PHYSICAL_DEVICE_TYPE_CPU ]; then
    grep -q "warning: .*runs on the CPU.*--device cpu" "$tmp/err" && ok || bad "no warning on a CPU implementation: $(cat "$tmp/err")"
  else
    grep -q "warning" "$tmp/err" && bad "a warning on a GPU ($type): $(cat "$tmp/err")" || ok
  fi
fi
"$bin" run -m $m -p hi -n 1 >/dev/null 2>"$tmp/err"
grep -q "device:" "$tmp/err" && bad "the CPU backend names a device: $(cat "$tmp/err")" || ok
toks=1,1098,2318,5117,1711,1238,2002,1437
"$bin" logits -m $m --tokens $toks --device vulkan -ctk f16 -ctv f16 -o "$tmp/vk" >/dev/null 2>&1 && ok || bad "logits --device vulkan"
"$bin" logits -m $m --tokens $toks --reference -ctk f16 -ctv f16 -o "$tmp/ref" >/dev/null 2>&1 && ok || bad "logits --reference"
python3 - "$tmp/vk" "$tmp/ref" <<'PY' && ok || bad "vulkan logits differ from --reference"
import struct, sys
a = open(sys.argv[1], 'rb').read(); b = open(sys.argv[2], 'rb').read()
assert len(a) == len(b) and len(a) > 0, (len(a), len(b))
n = len(a) // 4
x = struct.unpack('%df' % n, a); y = struct.unpack('%df' % n, b)
d = max(abs(p - q) for p, q in zip(x, y))
print("vulkan vs --reference: max abs %.2e" % d)
assert d <= 1e-2, d
PY
a=$("$bin" run -m data/lfm2-tiny-dense-f32.gguf -p "The quick brown fox" -n 8 --temp 0 --device vulkan 2>/dev/null)
b=$("$bin" run -m data/lfm2-tiny-dense-f32.gguf -p "The quick brown fox" -n 8 --temp 0 2>/dev/null)
[ -n "$a" ] && [ "$a" == "$b" ] && ok || bad "greedy run on vulkan differs from the CPU: '$a' vs '$b'"
# speculative decoding (prompt lookup) on the device: a rejected draft rolls the conv state back
p="The cat sat on the mat. The cat sat on the"
a=$("$bin" run -m data/lfm2-tiny-dense-f32.gguf -p "$p" -n 16 --temp 0 --device vulkan --spec-lookup 2>/dev/null)
b=$("$bin" run -m data/lfm2-tiny-dense-f32.gguf -p "$p" -n 16 --temp 0 2>/dev/null)
[ -n "$a" ] && [ "$a" == "$b" ] && ok || bad "run --spec-lookup on vulkan differs from the CPU: '$a' vs '$b'"
"$bin" bench -m $m -p 16 -n 4 -r 1 --device vulkan -o json > "$tmp/bench.json" 2>"$tmp/bench.err" && ok || bad "bench --device vulkan: $(tail -2 "$tmp/bench.err")"
python3 - "$tmp/bench.json" <<'PY' && ok || bad "bench --device vulkan JSON"
import json, sys
rows = json.load(open(sys.argv[1]))
assert len(rows) == 2, rows
for r in rows:
    assert r["avg_ts"] > 0, r
    # the device's own clock (timestamp queries: lavapipe and GPUs have them) beside the wall's
    assert r["device_seconds"] > 0 and r["device_passes"] > 0 and r["device_ts"] > 0, r
    assert r["device_seconds"] <= r["wall_seconds"] * 1.05, r
    assert (r["device_gbps"] > 0) == r["test"].startswith("tg"), r
PY
echo "$pass passed, $fail failed"
[ $fail = 0 ]
