#!/bin/bash
# tools/matrix/selftest.sh [WORKDIR]
#
# End-to-end check of prosody13.sh and postgres.sh, and a record of the
# configs that work. Run as root on Debian 12; takes a few seconds warm.
#   1. prosody13.sh WORKDIR/p13; Prosody 13 starts with a private config on
#      127.0.0.1:$P13_PORT, logs "version 13.0.1", answers
#      `prosodyctl shell invite create_account|create_reset|create_contact`,
#      passes `prosodyctl check config`, loads no file of the system 0.12, and
#      stops on SIGTERM.
#   2. postgres.sh start WORKDIR/pg $PG_PORT; the system's 0.12
#      (/usr/bin/prosody) with storage = "sql" on it: `prosodyctl mod_invites
#      generate` writes an invite_token row into table `prosody`; then the
#      same against a running 13; postgres.sh stop (twice).
# Ports (env): P13_PORT=25999 P12_PORT=25998 PG_PORT=25432. Never 5222/5269/5432.
# Everything started here is stopped on exit; WORKDIR (default
# /tmp/matrix-selftest) is left for inspection.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
W=${1:-/tmp/matrix-selftest}
P13_PORT=${P13_PORT:-25999} P12_PORT=${P12_PORT:-25998} PG_PORT=${PG_PORT:-25432}
mkdir -p "$W"
W=$(cd "$W" && pwd)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	"$HERE/postgres.sh" stop "$W/pg" 2>/dev/null || true
}
trap cleanup EXIT
fail() { echo "SELFTEST FAILED: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }
wait_port() { for _ in $(seq 100); do ss -Hltn "sport = :$1" | grep -q . && return 0; sleep 0.05; done; return 1; }

# A private Prosody config (tools/harness, the one config writer). $1 = dir, $2 = port,
# $3 = extra lines (storage).
write_cfg() {
	mkdir -p "$1/data"
	PYTHONPATH="$ROOT/tools" python3 -m harness config "$1" "$2" --host example.test \
		--modules roster,saslauth,disco,admin_shell,invites,invites_register,register_ibr \
		--extra "$3" >/dev/null
}

# start BIN DIR PORT -> pid in $SERVER_PID
start_server() {
	"$1" --config "$2/prosody.cfg.lua" -F >"$2/stdout.log" 2>&1 &
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
	wait_port "$3" || { cat "$2/stdout.log" "$2/data/prosody.log" >&2; fail "server on $3 did not come up"; }
}
stop_server() {
	kill -TERM "$1"
	local rc=0
	wait "$1" || rc=$?
	[ "$rc" = 0 ] || fail "server $1 exited $rc after SIGTERM"
}

# ---- 1. Prosody 13 ----
t0=$(date +%s%N)
eval "$("$HERE/prosody13.sh" "$W/p13")"
echo "prosody13.sh took $(( ($(date +%s%N) - t0) / 1000000 )) ms"
[ -x "$PROSODY13" ] && [ -x "$PROSODYCTL13" ] || fail "prosody13.sh printed no binaries"
D=$W/run13
rm -rf "$D"
write_cfg "$D" "$P13_PORT" ""
CTL=("$PROSODYCTL13" --config "$D/prosody.cfg.lua")
"${CTL[@]}" check config >/dev/null || fail "13: check config"
ok "13: prosodyctl check config"
start_server "$PROSODY13" "$D" "$P13_PORT"
grep -q "Prosody version 13.0.1" "$D/data/prosody.log" || fail "13: log has no version 13.0.1"
ok "13: started, log: $(grep -o 'Prosody version [0-9.]*' "$D/data/prosody.log")"
! grep -q ' /usr/lib/prosody/' "/proc/$SERVER_PID/maps" || fail "13 mapped a library of the system 0.12"
grep -q "$W/p13/usr/lib/prosody/util/pposix.so" "/proc/$SERVER_PID/maps" || fail "13 did not map its own util/pposix.so"
ok "13: maps PREFIX/usr/lib/prosody/util/*.so, nothing from /usr/lib/prosody"
out=$("${CTL[@]}" shell invite create_account example.test) && [[ $out == *"xmpp:example.test?register;preauth="* ]] || fail "13: create_account: $out"
ok "13: create_account -> $out"
"${CTL[@]}" shell user create alice@example.test pw123456 >/dev/null || fail "13: user create"
out=$("${CTL[@]}" shell invite create_reset alice@example.test) && [[ $out == *"xmpp:alice@example.test?register;preauth="* ]] || fail "13: create_reset: $out"
ok "13: create_reset -> $(echo "$out" | head -1)"
out=$("${CTL[@]}" shell invite create_contact alice@example.test --allow-registration) && [[ $out == *"?roster;preauth="*";ibr=y"* ]] || fail "13: create_contact: $out"
ok "13: create_contact --allow-registration -> $out"
[ -f "$D/data/example%2etest/invite_token.dat" ] || fail "13: no invite_token.dat"
stop_server "$SERVER_PID"
[ ! -e "$D/data/prosody.pid" ] || fail "13: pidfile left behind"
ok "13: stopped on SIGTERM"

# ---- 2. PostgreSQL + Prosody 0.12 ----
t0=$(date +%s%N)
eval "$("$HERE/postgres.sh" start "$W/pg" "$PG_PORT")"
echo "postgres.sh start took $(( ($(date +%s%N) - t0) / 1000000 )) ms"
SQL='storage = "sql"
sql = { driver = "PostgreSQL", database = "prosody", username = "prosody", password = "prosody", host = "127.0.0.1", port = '"$PG_PORT"' }'
PSQL=(env PGPASSWORD="$PGPASSWORD" psql -X -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d "$PGDATABASE" -tA)
D=$W/run12pg
rm -rf "$D"
write_cfg "$D" "$P12_PORT" "$SQL"
CTL12=(prosodyctl --config "$D/prosody.cfg.lua")
"${CTL12[@]}" check config >/dev/null || fail "0.12+pg: check config"
uri=$("${CTL12[@]}" mod_invites generate example.test 2>/dev/null | tail -n1)
token=${uri##*preauth=}
[[ $uri == "xmpp:example.test?register;preauth="* ]] || fail "0.12+pg: generate printed $uri"
row=$("${PSQL[@]}" -c "SELECT host, \"user\", store, key, type FROM prosody WHERE store = 'invite_token' AND key = '$token'")
[ "$row" = "example.test||invite_token|$token|json" ] || fail "0.12+pg: row is '$row'"
ok "0.12+pg: mod_invites generate -> $uri; row: $row"

# Same database from a running 13 (shell invite goes through the server).
D=$W/run13pg
rm -rf "$D"
write_cfg "$D" "$P13_PORT" "$SQL"
start_server "$PROSODY13" "$D" "$P13_PORT"
out=$("$PROSODYCTL13" --config "$D/prosody.cfg.lua" shell invite create_account example.test)
token=${out##*preauth=}
[ "$("${PSQL[@]}" -c "SELECT count(*) FROM prosody WHERE store = 'invite_token' AND key = '$token'")" = 1 ] || fail "13+pg: no row for $out"
ok "13+pg: create_account -> row for $token"
stop_server "$SERVER_PID"

"$HERE/postgres.sh" stop "$W/pg"
"$HERE/postgres.sh" stop "$W/pg"
! ss -Hltn "sport = :$PG_PORT" | grep -q . || fail "postgres still listening"
ok "postgres stopped (stop called twice)"
echo "selftest: all ok"
