#!/usr/bin/env bash
# ls -R, awk associative arrays, gzip round trip: small everyday programs.
ls -laR /usr/include 2>/dev/null | md5sum
seq 1 200000 | awk '{ s[$1 % 1000] = s[$1 % 1000] $1 } END { n = 0; for (k in s) n += length(s[k]); print n }'
seq 1 300000 | gzip -c | gunzip | md5sum
