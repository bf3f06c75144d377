#!/bin/bash
# tests/packaging/test-deb.sh — `make test-deb` (as root; installs and removes the package).
#   1. `make deb`: control fields (Depends prosody (>= 0.12), lua5.4), exactly the module
#      folder's two files and two doc files, no maintainer scripts, SHA256SUMS verifies.
#   2. `dpkg -i`: Prosody 0.12 with no plugin_paths loads the package's
#      /usr/lib/prosody/modules/mod_invites_register/ (folder over the stock .lua beside it,
#      which stays byte for byte), registers an account; a `make install` copy under
#      plugin_paths still wins over the package.
#   3. The same precedence on Prosody 13.0.1 and the newest 13.0.x: the package's files
#      unpacked (dpkg-deb -x) into a private copy of each 13 prefix; removing the folder
#      switches back to the stock module.
#   4. The e2e suite (tests/e2e) against the INSTALLED copy: E2E_INSTALLED=1 runs it without
#      `make install`, with plugin_paths holding only the test plugins, so Prosody takes
#      mod_invites_register from its own module directory, where the package's folder wins.
#      Its pass/fail counts are added to this script's. Storage: TEST_DEB_E2E_STORAGE
#      (default internal: what is under test is which copy loads, not the storage; `make
#      test` and the matrix cover the backends). Extra pytest arguments:
#      TEST_DEB_PYTEST_ARGS; TEST_DEB_E2E=0 skips it.
#   5. `dpkg -r`, then `dpkg -i` + `dpkg -P`: no file of the package left, the module
#      directory as before, the stock module loaded again.
# A package left installed by an earlier run is purged first; on exit it is purged if this
# script installed it. Ends with "N passed, N failed".
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || { echo "test-deb.sh must run as root (dpkg -i)"; echo "0 passed, 1 failed"; exit 1; }
VERSION=$(. packaging/common.sh >/dev/null 2>&1; echo "$VERSION")
PKG=prosody-mod-invites-register
DEB=dist/${PKG}_${VERSION}_$(dpkg --print-architecture).deb
MODULES=/usr/lib/prosody/modules
MODDIR=$MODULES/mod_invites_register
STOCK=$MODULES/mod_invites_register.lua

# ---- 1. the package ----------------------------------------------------------------
check "make deb" make -s deb
check "$DEB exists" test -s "$DEB"
same "Package" "$(dpkg-deb -f "$DEB" Package)" "$PKG"
same "Version (Cargo.toml)" "$(dpkg-deb -f "$DEB" Version)" "$VERSION"
DEPENDS=$(dpkg-deb -f "$DEB" Depends)
check "Depends has prosody (>= 0.12) and lua5.4 ($DEPENDS)" \
	bash -c "echo '$DEPENDS' | tr ',' '\n' | sed 's/^ *//' | grep -qx 'prosody (>= 0.12)' && echo '$DEPENDS' | tr ',' '\n' | sed 's/^ *//' | grep -qx 'lua5.4'"
same "files in the package" "$(dpkg-deb -c "$DEB" | awk '$1 !~ /^d/ { print $6 }' | sort | tr '\n' ' ')" \
	"./usr/lib/prosody/modules/mod_invites_register/invites_register.so ./usr/lib/prosody/modules/mod_invites_register/mod_invites_register.lua ./usr/share/doc/$PKG/README.md.gz ./usr/share/doc/$PKG/copyright "
same "control members (no maintainer scripts, no conffiles)" \
	"$(dpkg-deb --ctrl-tarfile "$DEB" | tar -t | grep -v '/$' | sort | tr '\n' ' ')" "./control ./md5sums "
check "SHA256SUMS lists the .deb and verifies" \
	bash -c "cd dist && grep -q ' $(basename "$DEB")\$' SHA256SUMS && sha256sum --quiet -c SHA256SUMS"

# ---- 2. installed, Prosody 0.12 ----------------------------------------------------
if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q "ok installed"; then
	echo "# $PKG was installed before this run: purging it first"
	dpkg -P "$PKG" >/dev/null
fi
# Everything under the module directory (type, mode, size, path; no directory mtimes).
snapshot() { find "$MODULES" "/usr/share/doc/$PKG" -printf '%y %m %s %p\n' 2>/dev/null | sort; }
STOCK_SUM=$(sha256sum "$STOCK" 2>/dev/null | cut -d' ' -f1)
BEFORE=$(snapshot)
check "the stock module is there ($STOCK)" test -n "$STOCK_SUM"

check "dpkg -i $DEB" dpkg -i "$DEB"
CLEANUP_HOOKS+=("dpkg -P $PKG >/dev/null 2>&1 || true")
check "installed: $MODDIR/{mod_invites_register.lua,invites_register.so}" \
	test -f "$MODDIR/mod_invites_register.lua" -a -f "$MODDIR/invites_register.so"
same "the stock module is untouched" "$(sha256sum "$STOCK" | cut -d' ' -f1)" "$STOCK_SUM"

serve_and_register "deb-0.12" /usr/bin/prosody /usr/bin/prosodyctl "" \
	"$MODDIR/mod_invites_register.lua" "$MODDIR/invites_register.so"
make -s install PLUGIN_DIR="$WORK/local" >/dev/null
serve_and_register "deb-0.12+make-install" /usr/bin/prosody /usr/bin/prosodyctl \
	"plugin_paths = { \"$WORK/local\" }" \
	"$WORK/local/mod_invites_register/mod_invites_register.lua" "$WORK/local/mod_invites_register/invites_register.so"

# ---- 3. Prosody 13.0.1 and the newest 13.0.x -------------------------------------------
# copy_prefix FROM TO: a private copy of a prosody13.sh prefix (its launchers name it).
copy_prefix() {
	local from to=$2
	from=$(cd "$1" && pwd -P)
	mkdir -p "$to"
	cp -a "$from/." "$to/"
	sed -i "s#$from/#$to/#g" "$to/usr/bin/prosody" "$to/usr/bin/prosodyctl"
}
if prosody13_prefixes; then
	for v in 13 13latest; do
		case $v in
			13) src=$(dirname "$(dirname "$(dirname "$P13")")") ;;
			*) src=$(dirname "$(dirname "$(dirname "$P13L")")") ;;
		esac
		p=$WORK/prefix-$v
		copy_prefix "$src" "$p"
		dpkg-deb -x "$DEB" "$p"
		m=$p$MODULES
		serve_and_register "deb-$v" "$p/usr/bin/prosody" "$p/usr/bin/prosodyctl" "" \
			"$m/mod_invites_register/mod_invites_register.lua" "$m/mod_invites_register/invites_register.so"
		serve_and_register "deb-$v+make-install" "$p/usr/bin/prosody" "$p/usr/bin/prosodyctl" \
			"plugin_paths = { \"$WORK/local\" }" \
			"$WORK/local/mod_invites_register/mod_invites_register.lua" "$WORK/local/mod_invites_register/invites_register.so"
		rm -rf "$m/mod_invites_register"
		serve_and_register "deb-$v-removed" "$p/usr/bin/prosody" "$p/usr/bin/prosodyctl" "" \
			"$m/mod_invites_register.lua" none
	done
else
	not_ok "Prosody 13 prefixes (tools/matrix/prosody13.sh)"
fi

# ---- 4. the e2e suite against the installed package ----------------------------------
if [ "${TEST_DEB_E2E:-1}" != 0 ]; then
	eval "extra=(${TEST_DEB_PYTEST_ARGS:-})"
	echo "# e2e suite against $MODDIR (E2E_INSTALLED=1: no make install, Prosody's own module directory)"
	E2E_INSTALLED=1 E2E_STORAGE=${TEST_DEB_E2E_STORAGE:-internal} "$ROOT/.venv/bin/python" -m pytest -q -rfE -p no:cacheprovider tests/e2e "${extra[@]}" \
		>"$WORK/e2e.log" 2>&1
	rc=$?
	summary=$(tail -n 3 "$WORK/e2e.log" | grep -E '[0-9]+ (passed|failed)' | tail -n 1)
	p=$(echo "$summary" | grep -oE '[0-9]+ passed' | cut -d' ' -f1)
	f=$(echo "$summary" | grep -oE '[0-9]+ (failed|errors?)' | cut -d' ' -f1 | awk '{ s += $1 } END { print s + 0 }')
	grep -E '^(FAILED|ERROR) ' "$WORK/e2e.log" | head -n 30
	echo "# e2e against the installed package: $summary"
	PASSED=$((PASSED + ${p:-0}))
	FAILED=$((FAILED + f))
	if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
		tail -n 30 "$WORK/e2e.log"
		not_ok "e2e suite exited $rc"
	fi
	mkdir -p build/test-logs && cp "$WORK/e2e.log" build/test-logs/deb-e2e.log
fi

# ---- 5. removal ----------------------------------------------------------------------
FILES=$(dpkg -L "$PKG" | sort)
check "dpkg -r $PKG" dpkg -r "$PKG"
left=$(for f in $FILES; do [ -e "$f" ] && ! [ -d "$f" ] && echo "$f"; done; [ -e "$MODDIR" ] && echo "$MODDIR"; [ -e "/usr/share/doc/$PKG" ] && echo "/usr/share/doc/$PKG")
same "dpkg -r leaves no file of the package" "$left" ""
same "the module directory is as before the install" "$(snapshot)" "$BEFORE"
same "the stock module is untouched" "$(sha256sum "$STOCK" | cut -d' ' -f1)" "$STOCK_SUM"
serve_and_register "deb-0.12-removed" /usr/bin/prosody /usr/bin/prosodyctl "" "$STOCK" none

check "dpkg -i again" dpkg -i "$DEB"
check "dpkg -P $PKG" dpkg -P "$PKG"
same "dpkg -P leaves no file of the package" \
	"$(for f in $FILES; do [ -e "$f" ] && ! [ -d "$f" ] && echo "$f"; done; [ -e "$MODDIR" ] && echo "$MODDIR")" ""
same "the module directory is as before the install" "$(snapshot)" "$BEFORE"
status=$(dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null)
case "$status" in "" | *" not-installed") ok "dpkg has no trace of the package (${status:-unknown})" ;;
	*) not_ok "dpkg still has the package: $status" ;; esac

finish
