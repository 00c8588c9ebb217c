#!/usr/bin/env bash
# test_replicas.sh — scale-out on loopback: three `lfm2c serve` replicas behind HAProxy (the
# layout of deploy/haproxy.cfg), readiness while loading, affinity by X-Session-Id, one replica
# killed (SIGKILL) and one drained (SIGTERM) mid-load (tests/replicas/replicas.mjs), lifecycle
# metrics, and the deployment files in deploy/ parsed and checked.
# usage: bash test_replicas.sh PATH/TO/lfm2c   (needs haproxy, node, curl, python3: scripts/setup.sh)
set -u
LFM2C=$(realpath "$1")
cd "$(dirname "$0")"
MODEL=data/lfm2-tiny-moe-f32.gguf
KEY=replica-key
TMP=$(mktemp -d)
pass=0 fail=0
PIDS=()
# KEEP_TMP=1 keeps the logs (replicas, haproxy) for a look after a failure
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; if [ -n "${KEEP_TMP:-}" ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi; }
trap cleanup EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*" >&2; }
check() { if eval "$2"; then ok; else bad "$1"; fi; }

for tool in haproxy node curl python3; do
  command -v $tool >/dev/null || { echo "FAIL $tool is not installed (scripts/setup.sh)"; echo "0 passed, 1 failed"; exit 1; }
done

# ---- deployment files: parse and check the fields that matter ------------------------------
check "deploy/ manifests and haproxy.cfg" 'python3 replicas/check_deploy.py ../deploy'
check "haproxy accepts deploy/haproxy.cfg" 'haproxy -c -f ../deploy/haproxy.cfg >/dev/null 2>&1'

# free_port: a TCP port nobody listens on now
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_replica NAME PORT ARGS...: starts and waits for its "listening on" line (model loaded)
start_replica() {
  local name=$1 port=$2; shift 2
  "$LFM2C" serve -m $MODEL --host 127.0.0.1 --port "$port" -np 4 -c 2048 --api-key $KEY --metrics \
    --alias fixture "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
  local pid=$!
  PIDS+=("$pid")
  eval "PID_$name=$pid"
  for _ in $(seq 100); do
    grep -q '^listening on' "$TMP/$name.out" && return 0
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
  done
  echo "replica $name did not start:" >&2; cat "$TMP/$name.err" >&2
  return 1
}

# ---- lifecycle: /health while loading, /ready, --host without a key --------------------------
"$LFM2C" serve -m $MODEL --host 0.0.0.0 --port 0 >/dev/null 2>"$TMP/nokey.err"
check "--host 0.0.0.0 without --api-key is refused" '[ $? = 2 ] && grep -q "api-key" "$TMP/nokey.err"'
P0=$(free_port)
start_replica solo "$P0" --drain-timeout 20 --ready-queue-max 1000 -np 1
check "/ready after load" '[ "$(curl -s -o /dev/null -w "%{http_code}" http://127.0.0.1:$P0/ready)" = 200 ]'
check "/health" 'curl -s http://127.0.0.1:$P0/health | grep -q "\"ok\""'
m=$(curl -s -H "Authorization: Bearer $KEY" http://127.0.0.1:$P0/metrics)
for name in vllm:num_requests_waiting vllm:num_requests_running vllm:kv_cache_usage_perc \
            vllm:prefix_cache_queries_total vllm:prefix_cache_hits_total \
            'vllm:time_to_first_token_seconds_bucket{le="+Inf"}' 'vllm:time_per_output_token_seconds_count' lfm2c_ready; do
  check "metric $name" 'echo "$m" | grep -qF "$name "'
done
# drain: running and queued streams finish, /ready and new requests are 503 meanwhile, exit 0
# (one slot, six streams of up to 2000 tokens: the drain lasts a few seconds)
CURLS=()
for i in 1 2 3 4 5 6; do
  curl -sN -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' http://127.0.0.1:$P0/v1/chat/completions \
    -d '{"messages":[{"role":"user","content":"long '$i'"}],"max_tokens":2000,"stream":true}' >"$TMP/drain$i.sse" &
  CURLS+=($!)
done
for _ in $(seq 100); do # until a stream runs (the machine may be slow to start the clients)
  curl -s -H "Authorization: Bearer $KEY" http://127.0.0.1:$P0/metrics | grep -q '^vllm:num_requests_running 1$' && break
  sleep 0.1
done
kill -TERM $PID_solo
sleep 0.3
ready=$(curl -s -o /dev/null -w "%{http_code}" http://127.0.0.1:$P0/ready)
newreq=$(curl -s -o "$TMP/new.json" -w "%{http_code}" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  http://127.0.0.1:$P0/v1/chat/completions -d '{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}')
wait "${CURLS[@]}"
t0=$(date +%s%N); wait $PID_solo; rc=$?; t1=$(date +%s%N)
check "draining: /ready 503 ($ready)" '[ "$ready" = 503 ]'
check "draining: new request 503 server_draining ($newreq)" '[ "$newreq" = 503 ] && grep -q server_draining "$TMP/new.json"'
# a stream admitted before the signal must finish; one that arrived after it gets the 503
started=0 finished=0 refused=0
for i in 1 2 3 4 5 6; do
  if grep -q server_draining "$TMP/drain$i.sse"; then refused=$((refused + 1)); continue; fi
  started=$((started + 1))
  grep -q "data: \[DONE\]" "$TMP/drain$i.sse" && grep -Eq '"finish_reason":"(length|stop)"' "$TMP/drain$i.sse" && finished=$((finished + 1))
done
check "draining: every admitted stream finished ($finished/$started, $refused refused)" '[ $started -ge 1 ] && [ $finished = $started ]'
check "draining: exit 0 ($rc)" '[ $rc = 0 ]'

# ---- three replicas behind HAProxy ---------------------------------------------------------
P1=$(free_port); P2=$(free_port); P3=$(free_port); LB=$(free_port)
start_replica r1 "$P1" --drain-timeout 20 && start_replica r2 "$P2" --drain-timeout 20 && start_replica r3 "$P3" --drain-timeout 20
sed -e "s/127.0.0.1:8000/127.0.0.1:$LB/" -e "s/127.0.0.1:8081/127.0.0.1:$P1/" -e "s/127.0.0.1:8082/127.0.0.1:$P2/" \
    -e "s/127.0.0.1:8083/127.0.0.1:$P3/" -e 's/^global$/global\n    log stdout format raw local0/' \
    -e 's/^defaults$/defaults\n    log global\n    option httplog/' ../deploy/haproxy.cfg >"$TMP/haproxy.cfg"
haproxy -f "$TMP/haproxy.cfg" -db >"$TMP/haproxy.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$LB/health)" = 200 ] && break
  sleep 0.1
done
sleep 2.5 # two health checks: every replica marked up
out=$(timeout 240 node replicas/replicas.mjs "http://127.0.0.1:$LB" $KEY \
  "http://127.0.0.1:$P1,http://127.0.0.1:$P2,http://127.0.0.1:$P3" "$PID_r1,$PID_r2,$PID_r3" 2>&1)
echo "$out" | grep -v '^[0-9]* passed' >&2
line=$(echo "$out" | tail -1)
p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p'); f=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
if [ -n "$p" ]; then pass=$((pass + p)); fail=$((fail + f)); else bad "replicas.mjs did not finish: $line"; fi
if [ "${f:-1}" != 0 ]; then # what the balancer saw: every answer that was not a 200, and the retries
  echo "haproxy log (not 200, or retried):" >&2
  grep -E '/\+[0-9]+ |/-?[0-9]+ [45][0-9][0-9] |is (DOWN|UP)' "$TMP/haproxy.log" | tail -40 >&2
fi
wait $PID_r2 2>/dev/null; rc=$?
check "drained replica exited 0 ($rc)" '[ $rc = 0 ]'

echo "$pass passed, $fail failed"
[ $fail = 0 ]
