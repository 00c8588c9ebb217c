#!/usr/bin/env bash
# test_start.sh LFM2C — scripts/start.sh, the README's first command, on the build LFM2C is in
# (--no-setup: the packages are there; its build step finds the build up to date): without a
# network and nothing cached it chats on the bundled fixture at once, saying it prints noise; with
# the Hub (tests/hub/fake_hub.py on 127.0.0.1) it pulls the default model on first use and serves
# it; then the cached copy serves without a network; bad arguments exit 2. Also the second
# command's option: scripts/test.sh --setup (only its argument handling: it runs everything).
set -u
bin=$1; build=$(cd "$(dirname "$bin")" && pwd); pass=0; fail=0
ok()  { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
tmp=$(mktemp -d); hubpid=; spid=
cleanup() { [ -n "$spid" ] && kill "$spid" 2>/dev/null; [ -n "$hubpid" ] && kill "$hubpid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
export HF_HOME="$tmp/hf"
unset HF_TOKEN HF_HUB_CACHE HF_HUB_OFFLINE PORT
start() { bash ../scripts/start.sh --no-setup --build "$build" "$@"; }

# 1. no network, nothing cached: the fixture, said to print noise, within the connect timeout
t0=$(date +%s)
printf 'Hello\n/exit\n' | HF_ENDPOINT=http://127.0.0.1:9 start chat -n 4 >"$tmp/out" 2>"$tmp/err"; rc=$?
dt=$(( $(date +%s) - t0 ))
[ $rc = 0 ] && [ -s "$tmp/out" ] && ok || bad "start chat offline: rc=$rc $(tail -3 "$tmp/err")"
grep -q "bundled random-weight fixture .* prints noise" "$tmp/err" && ok || bad "offline start does not say it runs the fixture: $(cat "$tmp/err")"
[ $dt -lt 30 ] && ok || bad "offline start took $dt s"

# 2. with the Hub: the default model pulled on first use, then served (the port given to lfm2c)
if "$bin" --version | grep -q "hub (pull, -hf): yes" && "$bin" --version | grep -q "server: yes"; then
  mkdir -p "$tmp/state"
  python3 hub/fake_hub.py "$tmp/port" "$tmp/state" & hubpid=$!
  for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
  export HF_ENDPOINT="http://127.0.0.1:$(cat "$tmp/port")"
  serve_once() {   # serve_once WHAT: start serve, wait for its port, GET /v1/models, stop it
    # (not through the function: $! is then start.sh itself, which execs lfm2c serve)
    bash ../scripts/start.sh --no-setup --build "$build" serve --port 0 >"$tmp/serve" 2>"$tmp/serve.err" & spid=$!
    port=
    for _ in $(seq 200); do
      port=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$tmp/serve"); [ -n "$port" ] && break
      kill -0 $spid 2>/dev/null || break; sleep 0.1
    done
    [ -n "$port" ] && curl -s "http://127.0.0.1:$port/v1/models" | grep -q "LFM2-1.2B-Q4_K_M.gguf" && ok ||
      bad "$1: $(tail -3 "$tmp/serve.err")"
    kill $spid 2>/dev/null; wait $spid 2>/dev/null; spid=
  }
  serve_once "start serve with the Hub"
  [ -L "$HF_HOME/hub/models--LiquidAI--LFM2-1.2B-GGUF/snapshots/$(cat "$HF_HOME/hub/models--LiquidAI--LFM2-1.2B-GGUF/refs/main" 2>/dev/null)/LFM2-1.2B-Q4_K_M.gguf" ] &&
    ok || bad "the default model is not in the cache after start: $(ls -R "$HF_HOME" 2>&1 | head)"
  kill $hubpid 2>/dev/null; wait $hubpid 2>/dev/null; hubpid=
  HF_ENDPOINT=http://127.0.0.1:9 serve_once "start serve offline from the cache"
  grep -q "fixture" "$tmp/serve.err" && bad "the cached model was not used offline: $(cat "$tmp/serve.err")" || ok
else
  echo "SKIP: serve / pull not built: the Hub path not checked"
fi

# 3. arguments
start bogus >/dev/null 2>"$tmp/err"; [ $? = 2 ] && grep -q "neither serve, chat" "$tmp/err" && ok || bad "start bogus: $(cat "$tmp/err")"
bash ../scripts/start.sh --help | grep -q "start.sh \[serve|chat\] \[MODEL\]" && ok || bad "start.sh --help"
bash ../scripts/test.sh --bogus >/dev/null 2>&1; [ $? = 2 ] && ok || bad "test.sh --bogus: exit not 2"
bash ../scripts/test.sh --help | grep -q -- "--setup" && ok || bad "test.sh --help does not name --setup"
echo "start: $pass passed, $fail failed"
[ $fail -eq 0 ]
