#!/usr/bin/env bash
# Builds the Debian packages from the release builds (make deb runs the builds first):
#   build/deb/libcoprocess_<version>_<arch>.deb     the library, its header, coprocess.pc
#   build/deb/coprocess-grpc_<version>_<arch>.deb   the gRPC server, its unit, /etc/coprocess
# Each is staged under build/deb/<package>/ and built with dpkg-deb --root-owner-group; no
# debhelper. docs/packages.md describes the result.
#
# Environment: CARGO_TARGET_DIR (default target/), DEB_VERSION (default: the crate versions),
# DEB_MAINTAINER (the control files' Maintainer), SOURCE_DATE_EPOCH (default: the last
# commit's time; file times are clamped to it, so the same binaries give the same .deb).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/build/deb
RELEASE=${CARGO_TARGET_DIR:-$ROOT/target}/release
LIB_SRC=$RELEASE/libcoprocess.so
BIN_SRC=$RELEASE/coprocess-grpc
PKG=$ROOT/packaging

die() { echo "build-deb: $*" >&2; exit 1; }

for f in "$LIB_SRC" "$BIN_SRC"; do
	[ -f "$f" ] || die "$f is missing: run cargo build --release --locked (and -p coprocess-grpc), or make deb"
done
for tool in dpkg-deb strip objdump nm; do
	command -v "$tool" >/dev/null || die "$tool is missing (dpkg, binutils)"
done

ARCH=$(dpkg --print-architecture)
MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
[ -n "$MULTIARCH" ] || die "cannot tell the multiarch triplet (dpkg-architecture, gcc -print-multiarch)"

# Versions from cargo: the cdylib crate builds libcoprocess.so, coprocess-grpc the server.
crate_version() {
	cargo metadata --no-deps --format-version 1 --locked --offline 2>/dev/null \
		| python3 -c 'import json,sys; n=sys.argv[1]; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]==n))' "$1"
}
LIB_VERSION=${DEB_VERSION:-$(crate_version coprocess-cdylib)}
GRPC_VERSION=${DEB_VERSION:-$(crate_version coprocess-grpc)}
[ -n "$LIB_VERSION" ] && [ -n "$GRPC_VERSION" ] || die "cannot read the crate versions (cargo metadata)"

MAINTAINER=${DEB_MAINTAINER:-coprocess maintainers <coprocess@localhost>}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)}
umask 022

# Depends of the ELF files given: dpkg-shlibdeps where it exists (versioned, from the
# shlibs/symbols files of the installed libraries), else the packages owning each NEEDED
# library (unversioned).
shlib_depends() {
	if command -v dpkg-shlibdeps >/dev/null; then
		local work=$OUT/shlibdeps
		rm -rf "$work" && mkdir -p "$work/debian"
		printf 'Source: coprocess\n\nPackage: coprocess\nArchitecture: any\n' >"$work/debian/control"
		local args=()
		for f in "$@"; do args+=("-e$f"); done
		(cd "$work" && dpkg-shlibdeps -O "${args[@]}" 2>"$work/warnings") \
			| sed -n 's/^shlibs:Depends=//p'
		rm -rf "$work"
	else
		objdump -p "$@" | awk '$1 == "NEEDED" {print $2}' | sort -u | while read -r so; do
			path=$(ldconfig -p | awk -v so="$so" '$1 == so {print $NF; exit}')
			[ -n "$path" ] && dpkg -S "$(readlink -f "$path")" 2>/dev/null | cut -d: -f1
		done | sort -u | paste -sd, | sed 's/,/, /g'
	fi
}

# Strip as dh_strip does: debug info and symbols a shared library's users do not need
# (the dynamic symbol table stays), all symbols of an executable (its dynamic ones stay).
strip_lib() { strip --remove-section=.comment --remove-section=.note --strip-unneeded -o "$2" "$1"; }
strip_bin() { strip --strip-all --remove-section=.comment --remove-section=.note -o "$2" "$1"; }

# .debug_gdb_scripts is loaded data (rustc's pointer to its pretty-printers), not debug info.
no_debug_info() {
	if objdump -h "$1" | grep '\.debug_' | grep -qv '\.debug_gdb_scripts'; then die "$1 still has debug sections"; fi
}

# DEBIAN/md5sums, Installed-Size, file times, then the .deb.
finish() {
	local stage=$1 name=$2 version=$3
	(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
		| xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
	chmod 0644 "$stage/DEBIAN/md5sums"
	local size
	size=$(du -sk --apparent-size --exclude=DEBIAN "$stage" | cut -f1)
	sed -i "s/^Installed-Size: .*/Installed-Size: $size/" "$stage/DEBIAN/control"
	find "$stage" -newermt "@$SOURCE_DATE_EPOCH" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
	local deb=$OUT/${name}_${version}_${ARCH}.deb
	dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
	echo "build-deb: $deb ($(du -k "$deb" | cut -f1) KiB)"
	dpkg-deb --contents "$deb" | awk '{printf "    %s %s %9s %s\n", $1, $2, $3, $6}'
}

mkdir -p "$OUT"
rm -rf "$OUT/libcoprocess" "$OUT/coprocess-grpc" "$OUT"/*.deb

# ---- libcoprocess: the library, its header and pkg-config file. The library has no SONAME:
# programs linked with -lcoprocess record NEEDED libcoprocess.so and the gateway loads that
# file, so it ships as libcoprocess.so itself, runtime and development files in one package
# (the ABI version is CoProcessAbiVersion(), not a soname).
S=$OUT/libcoprocess
LIBDIR=/usr/lib/$MULTIARCH
install -d "$S/DEBIAN" "$S$LIBDIR/pkgconfig" "$S/usr/include/coprocess" "$S/usr/share/doc/libcoprocess"
strip_lib "$LIB_SRC" "$S$LIBDIR/libcoprocess.so"
chmod 0644 "$S$LIBDIR/libcoprocess.so"
no_debug_info "$S$LIBDIR/libcoprocess.so"
# The stripped library still has the ABI: 7 exports, 5 weak host-function imports.
n=$(nm -D --defined-only "$S$LIBDIR/libcoprocess.so" | grep -cwE 'Dispatch|DispatchEvent|Reload|CoProcessFree|CoProcessLastError|CoProcessAbiVersion|CoProcessMetrics')
[ "$n" = 7 ] || die "the stripped libcoprocess.so exports $n of the 7 ABI symbols"
n=$(nm -D --undefined-only "$S$LIBDIR/libcoprocess.so" | grep -wE 'TykTriggerEvent|CoProcessLog|TykStoreData|TykGetData|CoProcessStoreDataIfAbsent' | grep -c ' w ')
[ "$n" = 5 ] || die "the stripped libcoprocess.so weakly imports $n of the 5 host functions"
install -m 0644 "$ROOT/include/api.h" "$S/usr/include/coprocess/api.h"
cat >"$S$LIBDIR/pkgconfig/coprocess.pc" <<EOF
prefix=/usr
libdir=\${prefix}/lib/$MULTIARCH
includedir=\${prefix}/include/coprocess

Name: coprocess
Description: native gateway plugin middleware (coprocess ABI)
Version: $LIB_VERSION
Libs: -L\${libdir} -lcoprocess
Cflags: -I\${includedir}
EOF
chmod 0644 "$S$LIBDIR/pkgconfig/coprocess.pc"
install -m 0644 "$PKG/copyright" "$S/usr/share/doc/libcoprocess/copyright"
install -m 0644 "$ROOT/docs/packages.md" "$S/usr/share/doc/libcoprocess/packages.md"
LIB_DEPENDS=$(shlib_depends "$S$LIBDIR/libcoprocess.so")
cat >"$S/DEBIAN/control" <<EOF
Package: libcoprocess
Version: $LIB_VERSION
Architecture: $ARCH
Multi-Arch: same
Section: libs
Priority: optional
Maintainer: $MAINTAINER
Installed-Size: 0
Depends: $LIB_DEPENDS
Description: native plugin middleware for the Tyk API gateway (coprocess ABI)
 libcoprocess.so implements the gateway's coprocess plugin ABI (Dispatch,
 DispatchEvent, Reload, ...) over the built-in middleware: HMAC and static
 token authentication, upstream request signing, header injection, ReqHub.
 .
 The package also holds the C header (/usr/include/coprocess/api.h) and the
 pkg-config file (coprocess.pc) to build hosts against it, with cc or with
 cgo's "#cgo pkg-config: coprocess".
EOF
# A shared library in a standard directory: refresh the ld.so cache after changes.
echo "activate-noawait ldconfig" >"$S/DEBIAN/triggers"
chmod 0644 "$S/DEBIAN/control" "$S/DEBIAN/triggers"
finish "$S" libcoprocess "$LIB_VERSION"

# ---- coprocess-grpc: the server, its systemd unit and default configuration (conffiles).
S=$OUT/coprocess-grpc
install -d "$S/DEBIAN" "$S/usr/bin" "$S/lib/systemd/system" "$S/etc/coprocess" "$S/usr/share/doc/coprocess-grpc"
strip_bin "$BIN_SRC" "$S/usr/bin/coprocess-grpc"
chmod 0755 "$S/usr/bin/coprocess-grpc"
no_debug_info "$S/usr/bin/coprocess-grpc"
"$S/usr/bin/coprocess-grpc" --version >/dev/null || die "the stripped coprocess-grpc does not run"
install -m 0644 "$PKG/coprocess-grpc/coprocess-grpc.service" "$S/lib/systemd/system/coprocess-grpc.service"
# 0640: the middleware configuration holds secrets; postinst gives the group to the service.
install -m 0640 "$PKG/coprocess-grpc/coprocess-grpc.json" "$S/etc/coprocess/coprocess-grpc.json"
install -m 0640 "$PKG/coprocess-grpc/coprocess.json" "$S/etc/coprocess/coprocess.json"
install -m 0644 "$PKG/copyright" "$S/usr/share/doc/coprocess-grpc/copyright"
install -m 0644 "$ROOT/docs/packages.md" "$S/usr/share/doc/coprocess-grpc/packages.md"
for script in postinst prerm postrm; do
	install -m 0755 "$PKG/coprocess-grpc/$script" "$S/DEBIAN/$script"
done
printf '/etc/coprocess/coprocess-grpc.json\n/etc/coprocess/coprocess.json\n' >"$S/DEBIAN/conffiles"
GRPC_DEPENDS=$(shlib_depends "$S/usr/bin/coprocess-grpc")
cat >"$S/DEBIAN/control" <<EOF
Package: coprocess-grpc
Version: $GRPC_VERSION
Architecture: $ARCH
Section: net
Priority: optional
Maintainer: $MAINTAINER
Installed-Size: 0
Depends: $GRPC_DEPENDS, adduser
Description: coprocess middleware as the Tyk gateway's gRPC plugin server
 coprocess-grpc serves the gateway's gRPC plugin service (coprocess.Dispatcher)
 with the same middleware, configuration and reload as libcoprocess, for
 gateways that do not load a shared library.
 .
 The package runs it as a hardened systemd service (coprocess-grpc.service)
 under its own system user, listening on /run/coprocess-grpc/coprocess-grpc.sock;
 the configuration is in /etc/coprocess.
EOF
chmod 0644 "$S/DEBIAN/control" "$S/DEBIAN/conffiles"
finish "$S" coprocess-grpc "$GRPC_VERSION"
