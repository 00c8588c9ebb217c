#!/usr/bin/env bash
# test_memcap.sh LFM2C — a memory cgroup's cap is the machine's memory as lfm2c sees it
# (src/base/os_posix.c's cgroup_mem: a container's limit, a laptop-sized cap of bench/memcap.sh):
# outside a cap `bench -v` copies the fixture's weights into huge pages (when THP is on and RAM
# allows), inside a 512 MiB cap the same run maps them (the copy wants the file + 1 GiB free), and
# inside a cap that holds it the run still works. It makes a cgroup (v2 with the memory controller,
# else v1), so it needs root and a writable cgroup file system: elsewhere it says SKIP.
set -u
bin=$1; pass=0; fail=0
ok()  { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
m=data/lfm2-tiny-dense-q4_0.gguf
skip() { echo "memcap: SKIP: $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "not root"
grep -q '\[never\]' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null && skip "transparent huge pages are off"
name=lfm2c-test-memcap-$$
if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null && mkdir "/sys/fs/cgroup/$name" 2>/dev/null; then
  cg=/sys/fs/cgroup/$name; limit=memory.max
elif [ -d /sys/fs/cgroup/memory ] && mkdir "/sys/fs/cgroup/memory/$name" 2>/dev/null; then
  cg=/sys/fs/cgroup/memory/$name; limit=memory.limit_in_bytes
else
  skip "no writable memory cgroup"
fi
trap 'rmdir "$cg" 2>/dev/null' EXIT
in_cap() { sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' _ "$cg" "$@"; }
out=$("$bin" bench -m $m -p 8 -n 2 -r 1 -t 1 -v 2>&1 >/dev/null)
echo "$out" | grep -q "^weights copied" && ok || bad "outside a cap the fixture is not copied: $(echo "$out" | grep ^weights)"
echo $((512 * 1048576)) >"$cg/$limit"
out=$(in_cap "$bin" bench -m $m -p 8 -n 2 -r 1 -t 1 -v 2>&1 >/dev/null); rc=$?
[ $rc = 0 ] && echo "$out" | grep -q "^weights mapped" && ok ||
  bad "inside a 512 MiB cap: rc $rc, $(echo "$out" | grep ^weights) (the cap not seen)"
echo "memcap: $pass passed, $fail failed"
[ $fail -eq 0 ]
