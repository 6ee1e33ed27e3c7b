#!/usr/bin/env bash
# cmake --install, then a consumer project uses find_package(wfmm) (shared and static) and
# pkg-config; each program must get wfmm as its malloc.
set -euo pipefail
build="$1"; src="$(cd "$(dirname "$0")" && pwd)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cmake -S "$src/install" -B "$tmp/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/consumer/consumer_shared"
"$tmp/consumer/consumer_static"
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
cc $(pkg-config --cflags wfmm) "$src/link_c.c" -o "$tmp/pc" $(pkg-config --libs wfmm)
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/pc"
echo "install ok"
