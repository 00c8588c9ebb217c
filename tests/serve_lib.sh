# tests/serve_lib.sh — what the shell tests that start servers share; sourced, never run.
# The tally (ok / bad / check / tally, and the "N passed, M failed" line the runner reads), the
# servers started (PIDS, killed on exit with the scratch folder) and starting one on a free port:
#   serve_logs DIR              where start_server writes NAME.out / NAME.err (the test's scratch)
#   wait_port FILE PID [TRIES]  sets PORT from the server's "listening on" line (TRIES x 0.1 s);
#                               fails when the server exits first or never says it
#   serve_start NAME ARGS...    `$LFM2C serve --host 127.0.0.1 --port 0 ${SERVE_ARGS[@]} ARGS`
#                               in the background; sets PORT and PID; a server that does not start
#                               is a failure (bad, with its log's end) and returns 1
#   start_server NAME ARGS...   serve_start, unless the test defines its own over it
#   stop_server                 the last one started, waited for
pass=0 fail=0
PIDS=()
SERVE_ARGS=()
SERVE_LOGS=
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*" >&2; }
check() { if eval "$2"; then ok; else bad "$1"; fi; }
# tally NAME OUT: adds the "N passed, M failed" last line of a script's output OUT to the totals
tally() {
  local line p f
  line=$(echo "$2" | tail -1)
  p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
  f=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
  if [ -n "$p" ]; then pass=$((pass + p)); fail=$((fail + f)); else bad "$1 did not finish: $line"; fi
}
# serve_cleanup [DIR]: every server started, then the scratch folder
serve_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  [ -z "${1:-}" ] || rm -rf "$1"
}
serve_logs() { SERVE_LOGS=$1; }
wait_port() {
  local file=$1 pid=$2 tries=${3:-200}
  PORT=
  for _ in $(seq "$tries"); do
    PORT=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$file" 2>/dev/null)
    [ -n "$PORT" ] && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
serve_start() {
  local name=$1; shift
  "$LFM2C" serve --host 127.0.0.1 --port 0 "${SERVE_ARGS[@]}" "$@" >"$SERVE_LOGS/$name.out" 2>"$SERVE_LOGS/$name.err" &
  PID=$!
  PIDS+=("$PID")
  wait_port "$SERVE_LOGS/$name.out" "$PID" 300 && return 0
  bad "server $name did not start: $(tail -c 600 "$SERVE_LOGS/$name.err")"
  return 1
}
start_server() { serve_start "$@"; }
stop_server() { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }
