#!/usr/bin/env bash
# xz -T2: multithreaded compression and decompression round trip.
s=${SCALE:-1}
seq 1 $((300000 * s)) | awk '{ print $1, $1 * $1 % 977, "some repeated text" }' | xz -T2 -3 --block-size=1MiB -c | xz -d -T2 | md5sum
