#!/usr/bin/env bash
# Deterministic out-of-memory: strace makes mmap/mremap fail with ENOMEM for a window of 40
# calls starting at wfmm's k-th mapping call, for a sweep of k, while oom_probe runs on wfmm.
# Each run must exit 0 ("oom ok"): no crash, correct errno, intact blocks, full recovery
# once the window closes. Calls made before main (the loader, the C++ runtime's start-up)
# are counted up to the probe's marker mapping (3 pages, PROT_NONE) and skipped.
set -u
lib="$1"; probe="$2"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
strace -o "$tmp/trace" -e trace=mmap,mremap -E LD_PRELOAD="$lib" "$probe" >/dev/null 2>&1 || {
  echo "FAIL: the probe does not pass without injection"; exit 1; }
base=$(grep -n "mmap(NULL, 12288, PROT_NONE" "$tmp/trace" | head -1 | cut -d: -f1)
total=$(wc -l < "$tmp/trace")
[ -n "$base" ] || { echo "FAIL: no marker mapping seen"; exit 1; }
echo "$base mapping calls up to main; $total in all"
fail=0
for k in 1 2 3 4 5 6 8 10 13 17 21 27 34 44 55; do
  first=$((base + k))
  [ $first -le "$total" ] || break
  out=$(strace -f -o /dev/null -e trace=mmap,mremap -E LD_PRELOAD="$lib" \
        -e inject=mmap,mremap:error=ENOMEM:when=$first..$((first + 40)) "$probe" 2>&1)
  rc=$?
  if [ $rc -ne 0 ] || ! grep -q "oom ok" <<<"$out"; then
    echo "FAIL: mapping calls $first..$((first + 40)) refused: exit $rc"; echo "$out" | tail -5; fail=1
  else
    echo "ok: mapping calls $first..$((first + 40)) refused: $(grep -o '[0-9]* allocations refused' <<<"$out")"
  fi
done
[ $fail -eq 0 ] && echo "oom sweep ok"
exit $fail
