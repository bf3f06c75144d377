#!/bin/bash
# tests/packaging/test-rock.sh — `make test-rock` (needs cargo, as root).
#   1. `make rock`: dist/rocks/ holds the .src.rock (rockspec + source archive) and a
#      manifest; SHA256SUMS verifies.
#   2. For Prosody 0.12, 13.0.1 and the newest 13.0.x, each with its own
#      installer_plugin_path (a private rock tree, never /var/lib/prosody):
#      `prosodyctl install --server=<abs>/dist/rocks mod_invites_register` builds the library
#      with cargo and installs <tree>/share/lua/5.4/mod_invites_register.lua and
#      <tree>/lib/lua/5.4/invites_register.so; the server (no plugin_paths) loads the plugin
#      and the library from there, module:get_directory() is the rock's metadata folder
#      <tree>/lib/luarocks/rocks-5.4/mod_invites_register/<version>-1, and an account
#      registers with a fresh invite; the rock also wins over a `make install` copy in
#      plugin_paths (Prosody searches its rock tree first); `prosodyctl remove
#      mod_invites_register` removes both files.
# CARGO_TARGET_DIR (default build/rock-target) is shared by the three installs, so cargo
# compiles once; TEST_ROCK_FRESH=1 gives each install its own (about 20 s each).
# Ends with "N passed, N failed".
. "$(dirname "$0")/lib.sh"

VERSION=$(. packaging/common.sh >/dev/null 2>&1; echo "$VERSION")
ROCK=dist/rocks/mod_invites_register-$VERSION-1.src.rock
# prosodyctl install runs luarocks; luarocks unpacks the .src.rock with unzip.
need_pkg luarocks unzip

check "make rock" make -s rock
check "$ROCK exists" test -s "$ROCK"
check "dist/rocks/manifest lists it" grep -q "\"$VERSION-1\"" dist/rocks/manifest
same ".src.rock members" "$(unzip -Z1 "$ROCK" | sort | tr '\n' ' ')" \
	"mod_invites_register-$VERSION-1.rockspec mod_invites_register-$VERSION.tar.gz "
check "SHA256SUMS lists the rock and verifies" \
	bash -c "cd dist && grep -q ' rocks/$(basename "$ROCK")\$' SHA256SUMS && sha256sum --quiet -c SHA256SUMS"

if [ "${TEST_ROCK_FRESH:-0}" != 1 ]; then
	export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/build/rock-target}
fi

# rock_cell NAME LAUNCHER PROSODYCTL
rock_cell() {
	local name=$1 bin=$2 ctl=$3 dir=$WORK/$1 tree v
	tree=$dir/custom_plugins
	v=$(pversion "$bin")
	write_cfg "$dir" "$(free_port)" "installer_plugin_path = \"$tree\""
	if [ "${TEST_ROCK_FRESH:-0}" = 1 ]; then export CARGO_TARGET_DIR=$dir/target; fi
	if "$ctl" --config "$dir/prosody.cfg.lua" install --server="$ROOT/dist/rocks" mod_invites_register \
		>"$dir/install.log" 2>&1; then
		ok "$name: prosodyctl install --server=dist/rocks mod_invites_register (Prosody $v)"
	else
		grep -v '^Warning: Failed searching manifest' "$dir/install.log" | tail -n 20
		not_ok "$name: prosodyctl install (Prosody $v)"
		return
	fi
	echo "# $name: files in the rock tree:"
	(cd "$tree" && find . -type f | sort | sed 's/^\./#   <tree>/')
	check "$name: <tree>/share/lua/5.4/mod_invites_register.lua" test -f "$tree/share/lua/5.4/mod_invites_register.lua"
	check "$name: <tree>/lib/lua/5.4/invites_register.so" test -f "$tree/lib/lua/5.4/invites_register.so"
	serve_and_register "$name" "$bin" "$ctl" "installer_plugin_path = \"$tree\"" \
		"$tree/share/lua/5.4/mod_invites_register.lua" "$tree/lib/lua/5.4/invites_register.so" \
		"$tree/lib/luarocks/rocks-5.4/mod_invites_register/$VERSION-1"
	# Prosody searches the rock tree before plugin_paths: the rock wins over a folder copy.
	[ -d "$WORK/local" ] || make -s install PLUGIN_DIR="$WORK/local" >/dev/null
	serve_and_register "$name+make-install" "$bin" "$ctl" \
		"installer_plugin_path = \"$tree\"; plugin_paths = { \"$WORK/local\" }" \
		"$tree/share/lua/5.4/mod_invites_register.lua" "$tree/lib/lua/5.4/invites_register.so"
	if "$ctl" --config "$dir/prosody.cfg.lua" remove mod_invites_register >"$dir/remove.log" 2>&1; then
		ok "$name: prosodyctl remove mod_invites_register"
	else
		tail -n 10 "$dir/remove.log"
		not_ok "$name: prosodyctl remove mod_invites_register"
	fi
	same "$name: nothing of the rock left in the tree" \
		"$(find "$tree" -name '*invites_register*' | sort | tr '\n' ' ')" ""
}

rock_cell "rock-0.12" /usr/bin/prosody /usr/bin/prosodyctl
if prosody13_prefixes; then
	rock_cell "rock-13.0.1" "$P13" "$P13CTL"
	rock_cell "rock-13-latest" "$P13L" "$P13LCTL"
else
	not_ok "Prosody 13 prefixes (tools/matrix/prosody13.sh)"
fi

finish
