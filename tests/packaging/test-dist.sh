#!/bin/bash
# tests/packaging/test-dist.sh — `make test-dist`: the release tarball.
#   1. `make dist` (Lua 5.4): the tarball holds exactly mod_invites_register/{the plugin,
#      the library} and mod_invites_register.{README.md,LICENSE}; SHA256SUMS verifies; the
#      library links no liblua and exports luaopen_invites_register.
#   2. Unpacked into an empty folder listed in plugin_paths (nothing else installed): Prosody
#      0.12, 13.0.1 and the newest 13.0.x load the plugin and library from there, and an
#      account registers with a fresh invite through a real client.
#   3. `make dist LUA_VERSION=5.3` names the tarball lua5.3 and its library loads in lua5.3
#      (not in lua5.4). Skip with TEST_DIST_OTHER_LUA=0.
# Ends with "N passed, N failed".
. "$(dirname "$0")/lib.sh"

VERSION=$(. packaging/common.sh >/dev/null 2>&1; echo "$VERSION")
ARCH=$(uname -m)
TARBALL=dist/mod_invites_register-$VERSION-lua5.4-$ARCH.tar.gz

check "make dist" make -s dist
check "$TARBALL exists" test -s "$TARBALL"
same "tarball members" "$(tar -tzf "$TARBALL" | sort | tr '\n' ' ')" \
	"mod_invites_register.LICENSE mod_invites_register.README.md mod_invites_register/ mod_invites_register/invites_register.so mod_invites_register/mod_invites_register.lua "
check "SHA256SUMS lists the tarball and verifies" \
	bash -c "cd dist && grep -q ' $(basename "$TARBALL")\$' SHA256SUMS && sha256sum --quiet -c SHA256SUMS"

PLUGINS=$WORK/plugins
mkdir -p "$PLUGINS"
tar -xzf "$TARBALL" -C "$PLUGINS"
LIB=$PLUGINS/mod_invites_register/invites_register.so
check "the library links no liblua" bash -c "! ldd '$LIB' | grep -q liblua"
check "the library exports luaopen_invites_register" bash -c "nm -D --defined-only '$LIB' | grep -qw luaopen_invites_register"
same "the plugin is lua/mod_invites_register.lua" \
	"$(cmp -s "$PLUGINS/mod_invites_register/mod_invites_register.lua" lua/mod_invites_register.lua && echo same)" same

CFG="plugin_paths = { \"$PLUGINS\" }"
PLUGIN=$PLUGINS/mod_invites_register/mod_invites_register.lua
serve_and_register "tarball-0.12" /usr/bin/prosody /usr/bin/prosodyctl "$CFG" "$PLUGIN" "$LIB"
if prosody13_prefixes; then
	serve_and_register "tarball-13.0.1" "$P13" "$P13CTL" "$CFG" "$PLUGIN" "$LIB"
	serve_and_register "tarball-13-latest" "$P13L" "$P13LCTL" "$CFG" "$PLUGIN" "$LIB"
else
	not_ok "Prosody 13 prefixes (tools/matrix/prosody13.sh)"
fi

if [ "${TEST_DIST_OTHER_LUA:-1}" != 0 ]; then
	T53=dist/mod_invites_register-$VERSION-lua5.3-$ARCH.tar.gz
	check "make dist LUA_VERSION=5.3" make -s dist LUA_VERSION=5.3
	mkdir -p "$WORK/lua53"
	tar -xzf "$T53" -C "$WORK/lua53"
	L53=$WORK/lua53/mod_invites_register/invites_register.so
	command -v lua5.3 >/dev/null || need_pkg lua5.3
	if command -v lua5.3 >/dev/null; then
		check "the lua5.3 library loads in lua5.3" \
			lua5.3 -e "assert(package.loadlib('$L53', 'luaopen_invites_register'))"
	else
		not_ok "lua5.3 could not be installed (apt-get install lua5.3)"
	fi
	check "the lua5.3 library does not load in lua5.4" \
		lua5.4 -e "assert(not package.loadlib('$L53', 'luaopen_invites_register'))"
	check "SHA256SUMS lists both tarballs" bash -c "cd dist && grep -q lua5.3 SHA256SUMS && grep -q lua5.4 SHA256SUMS && sha256sum --quiet -c SHA256SUMS"
fi

finish
