#!/usr/bin/env bash
# Real programs under LD_PRELOAD=libwfmm.so print exactly what they print without it, and
# the library is really mapped into the preloaded process.
set -u
lib="$1"
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

run_both() {  # name, command...
  local name="$1"; shift
  "$@" >"$tmp/plain.out" 2>&1
  local rc1=$?
  LD_PRELOAD="$lib" "$@" >"$tmp/wfmm.out" 2>&1
  local rc2=$?
  if [ $rc1 -ne $rc2 ] || ! cmp -s "$tmp/plain.out" "$tmp/wfmm.out"; then
    echo "FAIL $name: rc $rc1 vs $rc2"; diff "$tmp/plain.out" "$tmp/wfmm.out" | head -20; fail=1
  else
    echo "ok   $name"
  fi
}

seq 1 200000 | sed 's/$/ line/' | shuf --random-source=<(yes) >"$tmp/in.txt"
run_both "sort --parallel=2" sort --parallel=2 -S 8M "$tmp/in.txt"
run_both "ls -laR /usr/include" ls -laR /usr/include
run_both "awk" awk '{ s[$1 % 1000] = s[$1 % 1000] $2 } END { n = 0; for (k in s) n += length(s[k]); print n }' "$tmp/in.txt"
if command -v python3 >/dev/null; then
  run_both "python3" python3 -c 'import threading, json
d = {str(i): list(range(i % 50)) for i in range(100000)}
out = []
def w(k):
    out.append(sum(len(json.dumps(d[str(j)])) for j in range(k, 100000, 4)))
ts = [threading.Thread(target=w, args=(k,)) for k in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
print(sorted(out), len("".join(str(x) for x in range(200000))))'
fi
run_both "gzip|gunzip" bash -c "gzip -c '$tmp/in.txt' | gunzip | md5sum"

# The preload is active: the library appears in the process's own maps.
if ! LD_PRELOAD="$lib" cat /proc/self/maps | grep -q "$(basename "$lib")"; then
  echo "FAIL: $lib is not mapped in a preloaded process"; fail=1
else
  echo "ok   library mapped"
fi
if [ $fail -ne 0 ]; then echo "0 passed, 1 failed"; exit 1; fi
echo "preload smoke: all programs agree"
