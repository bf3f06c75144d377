#!/bin/bash
# packaging/deb.sh — `make deb`.
#
# Writes dist/prosody-mod-invites-register_<version>_<arch>.deb (version from Cargo.toml,
# arch from `dpkg --print-architecture`) with plain dpkg-deb, and refreshes dist/SHA256SUMS.
# Why dpkg-deb and not cargo-deb: the package is two files and a control file, dpkg-deb
# ships with every Debian (dpkg), and cargo-deb would be one more tool to install
# (`cargo install cargo-deb`) for nothing it does better here; dpkg-shlibdeps (dpkg-dev)
# computes the libc6/libgcc-s1 dependencies from the library as Debian's own builds do.
#
# Contents, in the layout of Debian's prosody-modules package (one folder per module):
#     /usr/lib/prosody/modules/mod_invites_register/mod_invites_register.lua
#     /usr/lib/prosody/modules/mod_invites_register/invites_register.so
#     /usr/share/doc/prosody-mod-invites-register/{copyright,README.md.gz}
# Prosody's loader tries mod_x/mod_x.lua before mod_x.lua in every plugin directory, so
# this folder wins over the stock /usr/lib/prosody/modules/mod_invites_register.lua beside
# it (which the package never touches): installing switches the server to this module at
# its next (re)start, removing switches back. No maintainer scripts, no conffiles: dpkg -r
# and dpkg -P leave nothing behind.
# Depends: prosody (>= 0.12), lua5.4 and the shared libraries of the .so. Built for Lua 5.4
# (Debian's Prosody runs lua5.4).
. "$(dirname "$0")/common.sh"

[ "${LUA_VERSION:-5.4}" = 5.4 ] || die "the .deb is for Debian's Prosody, which runs Lua 5.4 (LUA_VERSION=${LUA_VERSION})"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (this builds a Debian package)"
command -v dpkg-shlibdeps >/dev/null || need_pkg dpkg-dev

PKG=prosody-mod-invites-register
ARCH=$(dpkg --print-architecture)
OUT=$DIST/${PKG}_${VERSION}_${ARCH}.deb
STAGE=$ROOT/build/deb
PKGROOT=$STAGE/root
MODDIR=usr/lib/prosody/modules/$MODULE
DOCDIR=usr/share/doc/$PKG

rm -rf "$STAGE"
mkdir -p "$PKGROOT/DEBIAN" "$PKGROOT/$MODDIR" "$PKGROOT/$DOCDIR" "$DIST"
build_lib 5.4 "$PKGROOT/$MODDIR/$LIB.so"
install -m 644 "lua/$MODULE.lua" "$PKGROOT/$MODDIR/$MODULE.lua"
{
	echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
	echo "Upstream-Name: mod_invites_register"
	echo
	echo "Files: *"
	echo "Copyright: mod_invites_register authors"
	echo "License: MIT"
	sed -e 's/^$/./' -e 's/^/ /' LICENSE
} >"$PKGROOT/$DOCDIR/copyright"
gzip -n -9 -c README.md >"$PKGROOT/$DOCDIR/README.md.gz"
chmod 644 "$PKGROOT/$DOCDIR"/*

# Shared-library dependencies of the .so, as Debian computes them (e.g. "libc6 (>= 2.34),
# libgcc-s1 (>= 4.2)"); dpkg-shlibdeps wants a debian/control naming the package.
mkdir -p "$STAGE/src/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$PKG" "$PKG" >"$STAGE/src/debian/control"
SHLIBS=$(cd "$STAGE/src" && dpkg-shlibdeps -O -e "$PKGROOT/$MODDIR/$LIB.so" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$SHLIBS" ] || die "dpkg-shlibdeps found no dependencies for $LIB.so"

INSTALLED_SIZE=$(du -sk --exclude=DEBIAN "$PKGROOT" | cut -f1)
cat >"$PKGROOT/DEBIAN/control" <<EOF
Package: $PKG
Version: $VERSION
Architecture: $ARCH
Maintainer: mod_invites_register authors <noreply@invalid>
Installed-Size: $INSTALLED_SIZE
Depends: prosody (>= 0.12), lua5.4, $SHLIBS
Enhances: prosody
Section: net
Priority: optional
Description: native drop-in replacement for Prosody's mod_invites_register
 Invite-based account registration for Prosody (XEP-0401, XEP-0445, XEP-0379)
 with the stock module's name, options and storage, its logic in a Rust
 library, and without the stock module's holes (single-use invites,
 username-bound invites, brute-force throttle, fail-closed loading).
 .
 Installs mod_invites_register/ into /usr/lib/prosody/modules, which takes
 precedence over Prosody's own mod_invites_register.lua there: the existing
 "invites_register" entry of modules_enabled loads this module after a
 restart of Prosody; removing the package switches back.
EOF
(cd "$PKGROOT" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$PKGROOT/DEBIAN/md5sums"
chmod 644 "$PKGROOT/DEBIAN/control" "$PKGROOT/DEBIAN/md5sums"
find "$PKGROOT" -type d -exec chmod 755 {} +
find "$PKGROOT" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

dpkg-deb --root-owner-group -Zxz --build "$PKGROOT" "$OUT.tmp" >&2
mv "$OUT.tmp" "$OUT"
sums
echo "dist/$(basename "$OUT") ($(stat -c %s "$OUT") bytes)"
