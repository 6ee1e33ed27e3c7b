#!/usr/bin/env bash
# wfmm as a user gets it, from a clean prefix: cmake --install, then find_package(wfmm 0.1)
# (shared, static, versions agree; 1.0 refused), pkg-config (--modversion), the README's
# -Wl,-rpath link line, the installed launcher running a program on wfmm; then cpack -G DEB,
# unpacked with dpkg-deb -x (never installed): its fields, files, and programs linked
# against the unpacked copy. Prints "install ok" at the end; any failure exits non-zero.
set -euo pipefail
build=$(cd "$1" && pwd -P)
src=$(cd "$(dirname "$0")" && pwd -P)
version=$(sed -n 's/^#define WFMM_VERSION "\(.*\)"$/\1/p' "$src/../include/wfmm/wfmm.h")
major=${version%%.*}
libdir=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:PATH=//p' "$build/CMakeCache.txt")
libdir=${libdir:-lib}
tmp=$(mktemp -d)
tmp=$(cd "$tmp" && pwd -P)  # the launcher reports resolved paths
trap 'rm -rf "$tmp"' EXIT
fail() { echo "install test: FAILED: $*" >&2; exit 1; }
# Checks take a command's whole output first: under pipefail, `cmd | grep -q` fails whenever
# grep stops at the first match and cmd then dies of SIGPIPE.
holds() { local text=$1; shift; grep -q "$@" <<<"$text"; }
step() { echo "install test: $*"; }

installed_files="bin/wfmm include/wfmm/wfmm.h include/wfmm/reclaim.hpp $libdir/libwfmm.so
  $libdir/libwfmm.so.$major $libdir/libwfmm.so.$version $libdir/libwfmm.a
  $libdir/cmake/wfmm/wfmmConfig.cmake $libdir/cmake/wfmm/wfmmConfigVersion.cmake
  $libdir/pkgconfig/wfmm.pc"

# --- cmake --install into an empty prefix -------------------------------------------------
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in $installed_files; do [ -e "$prefix/$f" ] || fail "cmake --install left out $f"; done
holds "$(readelf -d "$prefix/$libdir/libwfmm.so.$version")" "SONAME.*\[libwfmm.so.$major\]" ||
  fail "libwfmm.so.$version has no SONAME libwfmm.so.$major"
step "cmake --install: files and SONAME libwfmm.so.$major"

# --- find_package(wfmm 0.1) ---------------------------------------------------------------
cmake -S "$src/install" -B "$tmp/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
LD_LIBRARY_PATH="$prefix/$libdir" "$tmp/consumer/consumer_shared"
"$tmp/consumer/consumer_static"
[ "$(LD_LIBRARY_PATH="$prefix/$libdir" "$tmp/consumer/consumer_version")" = "wfmm $version" ] ||
  fail "consumer_version"
holds "$(readelf -d "$tmp/consumer/consumer_shared")" "NEEDED.*\[libwfmm.so.$major\]" ||
  fail "consumer_shared does not record libwfmm.so.$major"
if cmake -S "$src/install" -B "$tmp/consumer_next" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
     -DWFMM_WANT=$((major + 1)).0 >"$tmp/next.log" 2>&1; then
  fail "find_package(wfmm $((major + 1)).0) accepted $version"
fi
grep -q "wfmmConfig.cmake, version: $version" "$tmp/next.log" ||
  fail "find_package(wfmm $((major + 1)).0) failed for another reason: $(cat "$tmp/next.log")"
step "find_package(wfmm 0.1): shared, static, version $version; $((major + 1)).0 refused"

# --- pkg-config ---------------------------------------------------------------------------
export PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig"
[ "$(pkg-config --modversion wfmm)" = "$version" ] || fail "pkg-config --modversion wfmm"
pkg-config --atleast-version=0.1 wfmm || fail "pkg-config --atleast-version=0.1"
# shellcheck disable=SC2046
cc $(pkg-config --cflags wfmm) "$src/link_c.c" -o "$tmp/pc" $(pkg-config --libs wfmm)
LD_LIBRARY_PATH="$prefix/$libdir" "$tmp/pc"
step "pkg-config --modversion wfmm = $version; a program links and runs"

# --- the README's link line: no install, -Wl,-rpath to the build folder --------------------
cc "$src/link_c.c" -I"$src/../include" -L"$build" -lwfmm -Wl,-rpath,"$build" -o "$tmp/rpath"
env -u LD_LIBRARY_PATH "$tmp/rpath"
step "cc prog.c -Iinclude -Lbuild -lwfmm -Wl,-rpath,\$PWD/build runs"

# --- the installed launcher ---------------------------------------------------------------
w=$prefix/bin/wfmm
holds "$("$w" --help)" "^usage: wfmm " || fail "wfmm --help"
[ "$("$w" --version)" = "wfmm $version ($prefix/$libdir/libwfmm.so.$major)" ] ||
  fail "wfmm --version: $("$w" --version)"
# sort reads its own memory map: the installed library must be mapped, and its statistics
# (printed at exit as JSON) must count the program's allocations.
maps=$(cd / && env -u LD_PRELOAD "$w" --stats=json sort /proc/self/maps 2>"$tmp/stats")
grep -qF "$prefix/$libdir/libwfmm.so.$version" <<<"$maps" ||
  fail "the launcher did not preload $prefix/$libdir/libwfmm.so.$version"
grep -q "^{\"wfmm\": \"$version\", .*\"malloc_count\": [1-9]" "$tmp/stats" ||
  fail "no JSON statistics with allocations: $(cat "$tmp/stats")"
holds "$("$w" --stats true 2>&1)" "^wfmm: statistics" || fail "wfmm --stats"
# An LD_PRELOAD already set stays, after wfmm's library.
# shellcheck disable=SC2016  # the inner shell expands it
seen=$(LD_PRELOAD=/nonexistent/x.so "$w" sh -c 'echo "$LD_PRELOAD"' 2>/dev/null)
[ "$seen" = "$prefix/$libdir/libwfmm.so.$major:/nonexistent/x.so" ] || fail "LD_PRELOAD: $seen"
holds "$(WFMM_DEFERED_FREE=1 "$w" true 2>&1)" \
  -F "wfmm: unknown option WFMM_DEFERED_FREE (did you mean WFMM_DEFERRED_FREE?)" ||
  fail "no warning for a misspelt option through the launcher"
holds "$("$w" --deferred --verbose true 2>&1)" "^wfmm: option deferred_free = 1 " ||
  fail "wfmm --deferred --verbose"
step "launcher: --help, --version, --stats[=json], --deferred, --verbose, LD_PRELOAD kept"

# --- the .deb, built by cpack in the build folder, unpacked (not installed) -----------------
(cd "$build" && cpack -G DEB -B "$tmp/cpack" >"$tmp/cpack.log" 2>&1) ||
  { cat "$tmp/cpack.log" >&2; fail "cpack -G DEB"; }
deb=$(ls "$tmp/cpack/wfmm_${version}_"*.deb)
[ "$(dpkg-deb -f "$deb" Package)" = wfmm ] || fail "Package field"
[ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || fail "Version field"
holds "$(dpkg-deb -f "$deb" Depends)" "^libc6" || fail "Depends: $(dpkg-deb -f "$deb" Depends)"
dpkg-deb -x "$deb" "$tmp/deb"
root=$tmp/deb/usr
for f in $installed_files; do [ -e "$root/$f" ] || fail "the .deb lacks /usr/$f"; done
grep -q "^abs_libdir='/usr/$libdir'$" "$root/bin/wfmm" || fail "the .deb's launcher names no /usr/$libdir"
cc "$src/link_c.c" -I"$root/include" -L"$root/$libdir" -lwfmm -Wl,-rpath,"$root/$libdir" \
  -o "$tmp/deb_prog"
holds "$(ldd "$tmp/deb_prog")" -F "$root/$libdir/libwfmm.so.$major" ||
  fail "deb_prog does not load the unpacked library: $(ldd "$tmp/deb_prog")"
"$tmp/deb_prog"
[ "$(PKG_CONFIG_PATH="$root/$libdir/pkgconfig" pkg-config --modversion wfmm)" = "$version" ] ||
  fail "pkg-config from the .deb"
cmake -S "$src/install" -B "$tmp/consumer_deb" -G Ninja -DCMAKE_PREFIX_PATH="$root" >/dev/null
cmake --build "$tmp/consumer_deb" --target consumer_version >/dev/null
[ "$(LD_LIBRARY_PATH="$root/$libdir" "$tmp/consumer_deb/consumer_version")" = "wfmm $version" ] ||
  fail "find_package from the .deb"
holds "$("$root/bin/wfmm" --version)" -F "($root/$libdir/libwfmm.so.$major)" ||
  fail "the unpacked launcher does not find its library: $("$root/bin/wfmm" --version)"
step "$(basename "$deb"): fields, files, a program linked against the unpacked copy"
echo "install ok"
