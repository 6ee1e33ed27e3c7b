#!/usr/bin/env bash
# git: init, many commits, log, repack, fsck. Fixed identities and dates: the hashes are
# the same on every run.
set -e
s=${SCALE:-1}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
cd "$d"
export GIT_AUTHOR_NAME=wfmm GIT_AUTHOR_EMAIL=wfmm@example.invalid
export GIT_COMMITTER_NAME=wfmm GIT_COMMITTER_EMAIL=wfmm@example.invalid
export GIT_AUTHOR_DATE="2026-01-01T00:00:00Z" GIT_COMMITTER_DATE="2026-01-01T00:00:00Z"
export GIT_CONFIG_NOSYSTEM=1 HOME="$d"
git init -q -b main repo
cd repo
for c in $(seq 1 $((40 * s))); do
  for f in $(seq 1 20); do
    seq $((c * f)) $((c * f + 200)) > "file$f.txt"
  done
  git add -A
  git commit -q -m "commit $c"
done
git log --format='%H %s' | head -3
git log --stat --format='%H' | md5sum
git repack -a -d -q
git count-objects -v | grep -E '^(count|in-pack|packs)'
git fsck --no-progress 2>&1 | wc -l
