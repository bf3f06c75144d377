# tests/packaging/lib.sh — sourced by the packaging tests (bash): TAP-like results, private
# Prosody servers (127.0.0.1, free ports, own data dirs, run_as_root), invites, a real
# registration through tools/register.py, and which plugin file / library a server loaded.
# Every server started here is stopped by pid on exit; only those pids are signalled.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
HOST=example.test
PASSED=0
FAILED=0
SERVER_PIDS=()
WORK=$(mktemp -d "/tmp/pkgtest-${0##*/}.XXXXXX")
CLEANUP_HOOKS=()

ok() { PASSED=$((PASSED + 1)); echo "ok - $*"; }
not_ok() { FAILED=$((FAILED + 1)); echo "not ok - $*"; }
# check DESCRIPTION COMMAND...: ok when COMMAND succeeds.
check() {
	local what=$1
	shift
	if "$@"; then ok "$what"; else not_ok "$what"; fi
}
# same DESCRIPTION ACTUAL EXPECTED
same() {
	if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1: got '$2', expected '$3'"; fi
}
finish() {
	echo "$PASSED passed, $FAILED failed"
	[ "$FAILED" = 0 ]
}

cleanup() {
	local p h
	for p in "${SERVER_PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	for h in "${CLEANUP_HOOKS[@]}"; do eval "$h"; done
	if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# need_pkg PACKAGE...: install missing Debian packages (as root), as the packaging does.
need_pkg() { ( . "$ROOT/packaging/common.sh" && need_pkg "$@" ); }

# The one private-Prosody config writer and helpers (tools/harness), from the shell.
harness() { PYTHONPATH="$ROOT/tools" python3 -m harness "$@"; }
free_port() { harness free-port; }
# pversion LAUNCHER: the Prosody version of a launcher (never `prosody --version`, which
# starts a server).
pversion() { harness version "$1"; }
# write_cfg DIR PORT [EXTRA_LINES]: a private config in DIR/prosody.cfg.lua (data, log and
# the admin socket under DIR/data).
write_cfg() {
	mkdir -p "$1/data"
	harness config "$1" "$2" --host "$HOST" --extra "${3:-}" >/dev/null
}

# start_server LAUNCHER DIR PORT: start in the background, wait until the port and the
# admin socket answer; the pid is in $SERVER_PID.
start_server() {
	local bin=$1 dir=$2 port=$3 i
	"$bin" --config "$dir/prosody.cfg.lua" -F >"$dir/console.log" 2>&1 &
	SERVER_PID=$!
	SERVER_PIDS+=("$SERVER_PID")
	for i in $(seq 1 150); do
		if ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && [ -S "$dir/data/admin.sock" ]; then
			sleep 0.2
			return 0
		fi
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.05
	done
	echo "server $bin on $port did not come up:" >&2
	tail -n 20 "$dir/console.log" "$dir/data/prosody.log" >&2
	return 1
}

# stop_server PID: SIGTERM and wait (only our own pid).
stop_server() {
	kill -TERM "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	local p kept=()
	for p in "${SERVER_PIDS[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
	SERVER_PIDS=("${kept[@]}")
}

# lua_eval PROSODYCTL DIR EXPR: EXPR evaluated in the running server (admin shell).
lua_eval() {
	"$1" --config "$2/prosody.cfg.lua" shell "> return $3" 2>&1 | sed -n 's/^Result: //p' | tail -n 1
}

# module_path PROSODYCTL DIR: the file the server loaded mod_invites_register from.
module_path() {
	lua_eval "$1" "$2" "require'core.modulemanager'.get_module('$HOST', 'invites_register').module.path"
}

# module_dir PROSODYCTL DIR: module:get_directory() of the loaded module.
module_dir() {
	lua_eval "$1" "$2" "require'core.modulemanager'.get_module('$HOST', 'invites_register').module:get_directory()"
}

# mapped_lib PID: the invites_register.so files the process has mapped.
mapped_lib() {
	awk '$6 ~ /invites_register\.so$/ { print $6 }' "/proc/$1/maps" 2>/dev/null | sort -u | tr '\n' ' ' | sed 's/ $//'
}

# invite PROSODY PROSODYCTL DIR: a fresh account invite URI (0.12: mod_invites generate;
# 13: the admin shell, as 13's `mod_invites generate` only prints a deprecation notice).
invite() {
	case "$(pversion "$1")" in
		0.*) "$2" --config "$3/prosody.cfg.lua" mod_invites generate "$HOST" 2>/dev/null | tail -n 1 ;;
		*) "$2" --config "$3/prosody.cfg.lua" shell invite create_account "$HOST" 2>/dev/null \
			| grep -o "xmpp:[^ ]*" | tail -n 1 ;;
	esac
}

# register PORT URI USER: register USER with the invite and log in (tools/register.py).
register() {
	python3 "$ROOT/tools/register.py" --port "$1" "$2" "$3" "pw-$3-secret" >"$WORK/register.out" 2>&1
	local rc=$?
	[ "$rc" = 0 ] || sed 's/^/    register.py: /' "$WORK/register.out"
	return $rc
}

# no_traceback DIR: the server's log and console have no Lua traceback.
no_traceback() {
	! grep -hE 'Traceback|stack traceback' "$1/data/prosody.log" "$1/console.log" 2>/dev/null | grep -q .
}

# serve_and_register NAME LAUNCHER PROSODYCTL EXTRA_CFG EXPECT_PLUGIN EXPECT_LIB [EXPECT_DIR]: a server
# with EXTRA_CFG; checks that it loaded EXPECT_PLUGIN (the .lua) and mapped EXPECT_LIB (the
# .so; "none": no invites_register.so at all, for the stock module), and that an account
# registers with a fresh invite; with EXPECT_DIR also module:get_directory(). Leaves the
# server stopped.
serve_and_register() {
	local name=$1 bin=$2 ctl=$3 extra=$4 want_plugin=$5 want_lib=$6 want_dir=${7:-}
	local dir=$WORK/$name port v uri
	port=$(free_port)
	v=$(pversion "$bin")
	write_cfg "$dir" "$port" "$extra"
	if ! start_server "$bin" "$dir" "$port"; then
		not_ok "$name: Prosody $v starts"
		return 1
	fi
	same "$name: Prosody $v loads the plugin" "$(module_path "$ctl" "$dir")" "$want_plugin"
	if [ "$want_lib" = none ]; then
		same "$name: Prosody $v maps no invites_register.so" "$(mapped_lib "$SERVER_PID")" ""
	elif [ -n "$want_lib" ]; then
		same "$name: Prosody $v maps the library" "$(mapped_lib "$SERVER_PID")" "$want_lib"
	fi
	if [ -n "$want_dir" ]; then
		same "$name: module:get_directory()" "$(module_dir "$ctl" "$dir")" "$want_dir"
	fi
	uri=$(invite "$bin" "$ctl" "$dir")
	case "$uri" in
		"xmpp:$HOST?register;preauth="*) check "$name: Prosody $v registers an account with an invite" \
			register "$port" "$uri" "user$RANDOM" ;;
		*) not_ok "$name: Prosody $v makes an invite (got '$uri')" ;;
	esac
	stop_server "$SERVER_PID"
	check "$name: no traceback in the log" no_traceback "$dir"
}

# The Prosody 13 launchers (tools/matrix/prosody13.sh): 13.0.1 and the newest 13.0.x, in
# the matrix's prefixes (build/prosody13, build/prosody13-latest) unless given.
prosody13_prefixes() {
	eval "$(bash tools/matrix/prosody13.sh "${PROSODY13_PREFIX:-build/prosody13}")" || return 1
	P13=$PROSODY13 P13CTL=$PROSODYCTL13
	eval "$(bash tools/matrix/prosody13.sh "${PROSODY13_LATEST_PREFIX:-build/prosody13-latest}" latest)" || return 1
	P13L=$PROSODY13 P13LCTL=$PROSODYCTL13
}
