#!/bin/sh
# lib-packages.sh BINARY...: the Debian packages that own the shared libraries
# the binaries load (ldd: the whole closure, not only their DT_NEEDED), one
# per line, sorted.  deploy/Containerfile runs it in the builder on `ferry` to
# know which runtime packages the image needs; it fails when a library is
# missing or belongs to no package, rather than leave the image without it.
set -eu
[ $# -ge 1 ] || { echo "usage: lib-packages.sh BINARY..." >&2; exit 2; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for bin in "$@"; do
	ldd "$bin" >"$out.ldd" || { echo "lib-packages: ldd $bin failed" >&2; rm -f "$out.ldd"; exit 1; }
	if grep -q 'not found' "$out.ldd"; then
		echo "lib-packages: $bin: $(grep 'not found' "$out.ldd" | tr -s ' \t\n' ' ')" >&2
		rm -f "$out.ldd"
		exit 1
	fi
	# "libx.so.1 => /lib/x86_64-linux-gnu/libx.so.1 (0x...)" and the loader's
	# own line "/lib64/ld-linux-x86-64.so.2 (0x...)"; linux-vdso has no file.
	awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' "$out.ldd" |
	while read -r lib; do
		# dpkg knows a file by the path its package ships, which with merged
		# /usr may be the /lib alias of the /usr/lib path (or the reverse).
		real=$(readlink -f "$lib")
		pkg=
		for p in "$lib" "$real" "/usr${real#/usr}" "${real#/usr}"; do
			pkg=$(dpkg-query -S "$p" 2>/dev/null | head -n 1 | cut -d: -f1) && [ -n "$pkg" ] && break
		done
		[ -n "$pkg" ] || { echo "lib-packages: $bin: no package owns $lib ($real)" >&2; exit 1; }
		echo "$pkg"
	done >>"$out"
	rm -f "$out.ldd"
done
sort -u "$out"
