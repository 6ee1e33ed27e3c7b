#!/usr/bin/env bash
# Runs one tests/debug program and judges what its tool said.
#   expect.sh clean -- command...       exit 0 and no report by ASan, TSan, memcheck or wfmm
#   expect.sh report REGEX -- command... a nonzero exit and output matching REGEX (the tool
#                                        caught the planted use-after-reclaim or race);
#                                        REGEX is matched against the whole output at
#                                        once (grep -z), so it may span lines
set -uo pipefail
want="$1"; shift
regex=""
if [ "$want" = report ]; then regex="$1"; shift; fi
[ "$1" = "--" ] && shift
out="$("$@" 2>&1)"
rc=$?
printf '%s\n' "$out" | tail -n 60
reports='ERROR: AddressSanitizer|WARNING: ThreadSanitizer|Invalid (read|write)|Mismatched free|wfmm: '
if [ "$want" = clean ]; then
  if [ $rc -ne 0 ]; then echo "expect.sh: FAIL: exit status $rc on a clean run"; exit 1; fi
  if printf '%s\n' "$out" | grep -Eq "$reports"; then
    echo "expect.sh: FAIL: a clean run drew a report"; exit 1
  fi
  echo "expect.sh: ok: clean run, no report"
else
  if [ $rc -eq 0 ]; then echo "expect.sh: FAIL: exit status 0: the tool missed the planted bug"; exit 1; fi
  if ! printf "%s\n" "$out" | grep -Ezq "$regex"; then
    echo "expect.sh: FAIL: no report matching /$regex/"; exit 1
  fi
  if printf '%s\n' "$out" | grep -q 'wfmm: '; then
    echo "expect.sh: FAIL: wfmm itself reported (it should have accepted the program's calls)"; exit 1
  fi
  echo "expect.sh: ok: the tool reported the planted bug (exit status $rc)"
fi
