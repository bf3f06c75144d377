#!/bin/bash
# tools/matrix/lua-versions.sh [VERSION...] — `make test-lua-versions`.
#
# For each Lua version (default: 5.1 5.2 5.3 5.4): build the native library for it
# (`make build LUA_VERSION=X` → build/luaX/invites_register.so, cargo feature luaXY;
# mlua in module mode needs no Lua headers), check that it does not link a liblua of
# its own, and run the busted specs with that interpreter:
#     busted --lua=luaX --cpath='build/luaX/?.so' spec/
# Under Lua 5.1-5.3, Prosody's C helpers in /usr/lib/prosody (built for 5.4) cannot
# load; spec/helpers.lua then uses spec/encodings_standin.lua for util.encodings and
# keeps Prosody's own pure-Lua util.stanza / util.jid (see spec/helpers.lua).
#
# Missing interpreters (lua5.1, lua5.2, lua5.3) are installed with apt-get when run as
# root; Debian's lua-busted works with all four. Prints one line per version and the
# plain line "N passed, N failed" (busted successes; a version that could not build
# or run counts as one failure). Logs: build/test-logs/lua-X.log.
set -uo pipefail

cd "$(dirname "$0")/../.."
VERSIONS=${*:-5.1 5.2 5.3 5.4}
LOG_DIR=${TEST_LOG_DIR:-build/test-logs}
mkdir -p "$LOG_DIR"

missing=""
for v in $VERSIONS; do
	command -v "lua$v" >/dev/null 2>&1 || missing="$missing lua$v"
done
command -v busted >/dev/null 2>&1 || missing="$missing lua-busted"
if [ -n "$missing" ]; then
	if [ "$(id -u)" = 0 ]; then
		echo "installing:$missing"
		export DEBIAN_FRONTEND=noninteractive
		apt-get -o DPkg::Lock::Timeout=300 update -qq
		# shellcheck disable=SC2086
		apt-get -o DPkg::Lock::Timeout=300 install -y -qq $missing >/dev/null
	else
		echo "missing:$missing (apt-get install$missing)" >&2
	fi
fi

count() { # file, word → number from busted's summary line
	grep -oE "[0-9]+ $2" "$1" | tail -n 1 | grep -oE '^[0-9]+' || echo 0
}

passed=0
failed=0
status=0
for v in $VERSIONS; do
	log="$LOG_DIR/lua-$v.log"
	lib="build/lua$v/invites_register.so"
	start=$(date +%s)
	: >"$log"
	result=""
	if ! command -v "lua$v" >/dev/null 2>&1; then
		result="no lua$v interpreter"
	elif ! make -s build LUA_VERSION="$v" >>"$log" 2>&1; then
		result="build failed (cargo build --release --no-default-features --features lua${v/./})"
	elif ldd "$lib" 2>/dev/null | grep -q 'liblua'; then
		result="$lib links a liblua of its own: $(ldd "$lib" | grep liblua)"
	else
		INVITES_REGISTER_LIB_DIR="build/lua$v" busted --lua="lua$v" --cpath="build/lua$v/?.so" \
			spec/ >>"$log" 2>&1
		rc=$?
		p=$(count "$log" success)
		f=$(( $(count "$log" failure) + $(count "$log" error) ))
		if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
		passed=$((passed + p))
		failed=$((failed + f))
		[ "$rc" = 0 ] || status=1
		# Which util.encodings the specs used (the stand-in under a non-5.4 Lua).
		encodings=$(cd /tmp && "lua$v" -e 'package.cpath="/usr/lib/prosody/?.so;"..package.cpath
			print(pcall(require, "util.encodings") and "Prosody util.encodings" or "util.encodings stand-in")' 2>/dev/null)
		printf 'lua%s: %3d passed %2d failed %3ds  (%s; %s)\n' "$v" "$p" "$f" \
			$(( $(date +%s) - start )) "$encodings" "$log"
		continue
	fi
	failed=$((failed + 1))
	status=1
	printf 'lua%s: FAILED: %s (%s)\n' "$v" "$result" "$log"
done
echo "$passed passed, $failed failed"
exit $status
