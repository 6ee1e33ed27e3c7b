#!/usr/bin/env bash
# GNU sort --parallel=2 over generated lines.
s=${SCALE:-1}
seq 1 $((400000 * s)) | awk '{ printf "%08d %s\n", ($1 * 7919) % 1000003, $1 }' | sort --parallel=2 -S 16M -k1,1 | md5sum
