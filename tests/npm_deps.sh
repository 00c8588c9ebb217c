#!/usr/bin/env bash
# tests/npm_deps.sh DIR PACKAGE...: makes sure tests/DIR/node_modules holds each PACKAGE, running
# `npm ci` there (its package-lock.json pins the versions) when one is missing. Tests that share a
# folder (test_server and test_docs both use tests/server) may run at once under ctest -j, so the
# check and the install hold an flock on DIR/.npm-lock: the second waits for the first's install
# instead of racing it. Prints one FAIL line and exits 1 when npm fails.
set -u
dir=$(cd "$(dirname "$0")/$1" && pwd); shift
exec 9>"$dir/.npm-lock"
flock -w 600 9 || { echo "FAIL waiting for another npm install in $dir"; exit 1; }
need=0
for p in "$@"; do [ -d "$dir/node_modules/$p" ] || need=1; done
[ $need = 0 ] && exit 0
(cd "$dir" && timeout 300 npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1) ||
  { echo "FAIL npm ci in tests/$(basename "$dir")"; exit 1; }
