#!/usr/bin/env bash
# Runs one program script without and with LD_PRELOAD=libwfmm.so (plus any extra
# environment given after the script, e.g. WFMM_PURGE_DELAY_MS=0) and requires identical
# output and exit status.
# usage: compare_preload.sh LIB SCRIPT [VAR=VALUE...]
set -u
lib="$1"; script="$2"; shift 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$script" >"$tmp/plain" 2>&1; rc1=$?
env "$@" LD_PRELOAD="$lib" "$script" >"$tmp/wfmm" 2>&1; rc2=$?
if [ $rc1 -ne $rc2 ] || ! cmp -s "$tmp/plain" "$tmp/wfmm"; then
  echo "FAIL $(basename "$script"): exit $rc1 without wfmm, $rc2 with"
  diff "$tmp/plain" "$tmp/wfmm" | head -30
  exit 1
fi
# The preload really was active: the library is mapped in a preloaded process.
if ! env LD_PRELOAD="$lib" cat /proc/self/maps | grep -qF "$(basename "$lib")"; then
  echo "FAIL: $lib is not mapped in a preloaded process"
  exit 1
fi
echo "ok $(basename "$script"): identical output ($(wc -l < "$tmp/plain") lines)"
cat "$tmp/plain"
