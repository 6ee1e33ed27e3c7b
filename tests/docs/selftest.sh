#!/usr/bin/env bash
# Self-test of run_blocks.py: the fixtures in fixtures/ that must pass do, and each kind of
# broken block (compile error, warning, non-zero exit, an expect-fail that succeeds, a bad
# docs-test comment, an unclosed fence, no block at all) fails and names its file:line.
#   selftest.sh SRC BUILD CC CXX
set -uo pipefail
src=$1 build=$2 cc=$3 cxx=$4
here=$(cd "$(dirname "$0")" && pwd)
fails=0
declare -A outs rcs
run() {  # run FIXTURE -> output in $out, exit status in $rc (each fixture runs once)
  if [ -z "${rcs[$1]:-}" ]; then
    outs[$1]=$(python3 "$here/run_blocks.py" --src "$src" --build "$build" --cc "$cc" \
               --cxx "$cxx" "$here/fixtures/$1" 2>&1)
    rcs[$1]=$?
  fi
  out=${outs[$1]} rc=${rcs[$1]}
}
expect_pass() {  # FIXTURE PATTERN: exit 0 and PATTERN in the output
  run "$1"
  if [ "$rc" -ne 0 ] || ! grep -q -- "$2" <<<"$out"; then
    echo "selftest: $1 should pass with '$2' in the output (exit $rc):"; echo "$out"; fails=$((fails + 1))
  fi
}
expect_fail() {  # FIXTURE PATTERN: exit 1 and PATTERN (file:line and the reason) in the output
  run "$1"
  if [ "$rc" -ne 1 ] || ! grep -q -- "$2" <<<"$out"; then
    echo "selftest: $1 should fail with '$2' in the output (exit $rc):"; echo "$out"; fails=$((fails + 1))
  fi
}
expect_pass good.md "7 blocks in 1 files: 5 passed, 2 skipped, 0 failed"
expect_pass good.md "good.md:37: \`\`\`cpp block: ok: failed as expected: killed by signal 6"
expect_pass good.md "good.md:57: \`\`\`cpp block: skipped: needs <no/such/header.h>"
expect_fail compile_error.md "compile_error.md:3: \`\`\`cpp block: FAILED: does not compile"
# The compiler's message points into the Markdown file (a #line directive).
expect_fail compile_error.md "fixtures/compile_error.md:4:21: error:"
expect_fail warning.md "warning.md:1: \`\`\`c block: FAILED: does not compile"
expect_fail exit_status.md "exit_status.md:4: \`\`\`c block: FAILED: exit status 3"
expect_fail exit_status.md "block says why"
expect_fail expect_fail_passes.md "expect_fail_passes.md:2: \`\`\`c block: FAILED: expect-fail, but the program exited 0"
expect_fail bad_key.md "bad_key.md:1: error: unknown or malformed docs-test key 'expect-fial'"
expect_fail dangling.md "dangling.md:1: error: docs-test comment not followed by"
expect_fail unclosed.md "unclosed.md:1: error: fence \`\`\`c is never closed"
expect_fail empty.md "no \`\`\`c or \`\`\`cpp block found"
if [ "$fails" -ne 0 ]; then
  echo "selftest: $fails checks failed"; exit 1
fi
echo "run_blocks selftest ok"
