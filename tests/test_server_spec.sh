#!/usr/bin/env bash
# test_server_spec.sh LFM2C — speculative decoding in `lfm2c serve` (per slot, inside the batched
# step): at temperature 0 the completions of a server with a draft model (-md) and with prompt
# lookup (--spec-lookup) are the plain server's, for requests one at a time and 6 at once on 3
# slots (speculating slots share each step with the others); /metrics counts drafted / accepted
# tokens; the per-request overrides speculative.n_max / n_min / p_min are honoured (n_max 0: no
# draft) and checked (400); a draft model with another vocabulary stops the server with a message.
set -u
LFM2C=$(realpath "$1")
cd "$(dirname "$0")"
MODEL=data/lfm2-tiny-dense-f32.gguf
TMP=$(mktemp -d)
source ./serve_lib.sh
serve_logs "$TMP"
trap 'serve_cleanup "$TMP"' EXIT
SERVE_ARGS=(-m $MODEL -np 3 -c 512 -t 1 --metrics)

# completions NAME EXTRA_JSON: 6 prompts one at a time, then the same 6 at once; texts to NAME.serial / NAME.par
PROMPTS=("one two three one two three one two" "The quick brown fox" "a b a b a b a b a b" "Hello there" "x y z x y z" "Once upon a time")
completions() {
  local name=$1 extra=$2
  : >"$TMP/$name.serial"
  for i in "${!PROMPTS[@]}"; do
    curl -s "http://127.0.0.1:$PORT/v1/completions" -H 'Content-Type: application/json' \
      -d "{\"prompt\": \"${PROMPTS[$i]}\", \"max_tokens\": 48, \"temperature\": 0 $extra}" |
      python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["choices"][0]["text"]))' >>"$TMP/$name.serial"
  done
  for i in "${!PROMPTS[@]}"; do
    curl -s "http://127.0.0.1:$PORT/v1/completions" -H 'Content-Type: application/json' \
      -d "{\"prompt\": \"${PROMPTS[$i]}\", \"max_tokens\": 48, \"temperature\": 0 $extra}" >"$TMP/$name.par.$i" &
  done
  wait $(jobs -p | grep -v "^$PID$") 2>/dev/null
  : >"$TMP/$name.par"
  for i in "${!PROMPTS[@]}"; do
    python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["choices"][0]["text"]))' "$TMP/$name.par.$i" >>"$TMP/$name.par"
  done
}
metric() { curl -s "http://127.0.0.1:$PORT/metrics" | sed -n "s/^$1 //p"; }

start_server plain || exit 1
completions plain ""
stop_server
[ "$(wc -l <"$TMP/plain.serial")" = 6 ] && cmp -s "$TMP/plain.serial" "$TMP/plain.par" && ok || bad "plain server: serial and parallel differ"

for cfg in "draft:-md $MODEL --draft-p-min 0 --draft-max 4" "q4:-md data/lfm2-tiny-dense-q4_0.gguf --draft-p-min 0" "lookup:--spec-lookup 1..3"; do
  name=${cfg%%:*} args=${cfg#*:}
  start_server $name $args || continue
  grep -q "speculative decoding" "$TMP/$name.err" && ok || bad "$name: no startup line"
  completions $name ""
  cmp -s "$TMP/plain.serial" "$TMP/$name.serial" && ok || bad "$name: serial completions differ from the plain server's"
  cmp -s "$TMP/plain.serial" "$TMP/$name.par" && ok || bad "$name: concurrent completions differ from the plain server's"
  d=$(metric lfm2c_spec_drafted_tokens_total) a=$(metric lfm2c_spec_accepted_tokens_total) st=$(metric lfm2c_spec_steps_total)
  [ -n "$d" ] && [ "$d" -gt 0 ] && [ "$a" -le "$d" ] && [ "$st" -gt 0 ] && ok || bad "$name: metrics drafted=$d accepted=$a steps=$st"
  if [ $name = draft ]; then   # the target as its own draft accepts everything
    [ "$a" = "$d" ] && ok || bad "own draft: $a of $d accepted"
  fi
  if [ $name = q4 ]; then   # per request: n_max 0 drafts nothing; the output stays the same
    completions q4n0 ', "speculative.n_max": 0'
    d2=$(metric lfm2c_spec_drafted_tokens_total)
    [ "$d2" = "$d" ] && ok || bad "speculative.n_max 0 still drafted ($d -> $d2)"
    cmp -s "$TMP/plain.serial" "$TMP/q4n0.serial" && ok || bad "speculative.n_max 0: output differs"
    completions q4n2 ', "speculative.n_max": 2, "speculative.n_min": 1, "speculative.p_min": 0.0'
    d3=$(metric lfm2c_spec_drafted_tokens_total) s3=$(metric lfm2c_spec_steps_total)
    s2=$st
    [ "$d3" -gt "$d2" ] && [ $((d3 - d2)) -le $((2 * ($(metric lfm2c_spec_steps_total) - s2))) ] && ok || bad "n_max 2: drafted $((d3 - d2)) in $((s3 - s2)) steps"
    cmp -s "$TMP/plain.serial" "$TMP/q4n2.serial" && ok || bad "speculative.n_max 2: output differs"
    for bad_body in '"speculative.n_max": -1' '"speculative.n_max": "4"' '"speculative.p_min": 1.5' '"speculative.n_min": 999'; do
      code=$(curl -s -o "$TMP/err.json" -w '%{http_code}' "http://127.0.0.1:$PORT/v1/completions" -H 'Content-Type: application/json' \
        -d "{\"prompt\": \"x\", \"max_tokens\": 2, $bad_body}")
      [ "$code" = 400 ] && grep -q speculative "$TMP/err.json" && ok || bad "$bad_body: HTTP $code $(cat "$TMP/err.json")"
    done
  fi
  # chat completions speculate too, and sampled requests finish
  code=$(curl -s -o "$TMP/chat.json" -w '%{http_code}' "http://127.0.0.1:$PORT/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 20, "temperature": 0.8, "seed": 3}')
  [ "$code" = 200 ] && python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["usage"]["completion_tokens"] >= 1' "$TMP/chat.json" \
    && ok || bad "$name: sampled chat completion: $code $(cat "$TMP/chat.json")"
  stop_server
done

# a draft model with another vocabulary: the server says so and exits
"$LFM2C" synth --preset lfm2-350m --type f32 -o "$TMP/v.gguf" --hidden 64 --layers 2 --attn-layers 1 --heads 4 --kv-heads 2 \
  --ff 128 --vocab 4096 --ctx 256 -t 1 >/dev/null 2>&1
timeout 20 "$LFM2C" serve -m $MODEL --host 127.0.0.1 --port 0 -t 1 -md "$TMP/v.gguf" >/dev/null 2>"$TMP/v.err"
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "vocabulary" "$TMP/v.err" && ok || bad "vocabulary mismatch: rc=$rc $(cat "$TMP/v.err")"
timeout 20 "$LFM2C" serve -m $MODEL --host 127.0.0.1 --port 0 -md $MODEL --spec-lookup >/dev/null 2>"$TMP/two.err"
grep -q "two drafters" "$TMP/two.err" && ok || bad "two drafters accepted: $(cat "$TMP/two.err")"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
