#!/bin/bash
# tools/matrix/postgres.sh — a private, throw-away PostgreSQL cluster for tests.
#
#   tools/matrix/postgres.sh start  DIR PORT   create (first time) and start; idempotent
#   tools/matrix/postgres.sh stop   DIR        stop (pg_ctl stop -m fast); safe to repeat,
#                                              also when DIR was never started or is gone
#   tools/matrix/postgres.sh status DIR        exit 0 if running (prints the facts), 3 if not
#   tools/matrix/postgres.sh install           only install the packages (run-matrix does this
#                                              once before its cells run in parallel: two
#                                              apt-get runs at once fail on apt's list lock)
#
# Run as root on Debian 12. `start` prints connection facts on stdout, one
# shell assignment per line, so a caller can `eval "$(postgres.sh start D P)"`:
#     PGHOST=127.0.0.1  PGPORT=PORT  PGDATABASE=prosody  PGUSER=prosody
#     PGPASSWORD=prosody  PGDATA=DIR  PGSOCKETDIR=...
# (shell variables only, not exported). Progress goes to stderr. DIR is
# removed by nobody: `stop`, then `rm -rf DIR` when done.
#
# What it does, and why (measured on Debian 12, PostgreSQL 15.x):
#  * Installs `postgresql` (-> postgresql-15) and `lua-dbi-postgresql` (the
#    DBI.PostgreSQL driver Prosody's mod_storage_sql needs) with apt-get when
#    missing. Installing `postgresql` makes Debian's postinst create the
#    system cluster 15/main on 5432 and, where an init system runs, start it.
#    That cluster is never used or touched here (no pg_ctlcluster, no
#    /etc/postgresql); without systemd it just stays "down".
#  * The server refuses to run as root, so DIR is created by root, chowned
#    to postgres, mode 0700, and initdb / pg_ctl run as postgres via runuser
#    (from / so they do not warn about an unreadable cwd). Every parent of
#    DIR must therefore be searchable (x) by postgres: pytest's
#    /tmp/pytest-of-root is 0700, so a DIR below it is refused with a clear
#    message — put the cluster under e.g. /tmp/pg-<something> instead.
#  * initdb -E UTF8 --locale=C.UTF-8 --no-sync (C.UTF-8 is always present on Debian 12, unlike
#    en_US.UTF-8), --auth-local=trust (admin over the unix socket, only root
#    and postgres can reach the 0700 socket dir) and --auth-host=scram-sha-256
#    (TCP on 127.0.0.1 needs the password, as Prosody would use it).
#  * Started with pg_ctl -w -l DIR/log -o "-p PORT -k SOCKDIR
#    -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off
#    -c full_page_writes=off" (no durability needed for tests). SOCKDIR is DIR
#    itself unless DIR/.s.PGSQL.PORT would exceed the 107-byte unix socket
#    path limit; then a short /tmp/pgsock.XXXXXX (recorded in DIR/.socketdir,
#    removed by stop).
#  * Role `prosody` (LOGIN, password `prosody`) owning database `prosody`
#    (created only if absent).
#  * Refuses port 5432 and a PORT that something else already listens on
#    (checked with `ss` when iproute2 is there). DIR may contain only
#    letters, digits and . _ / + - (it goes into pg_ctl -o unquoted).
#  Measured: fresh Debian 12 minbase (installs ~30 packages) 13 s; new DIR
#  with packages present 0.6-0.7 s (initdb+start+role/db); restart of an
#  existing DIR 0.2 s; `start` while running 0.04 s; stop 0.1 s.
set -euo pipefail

die() { echo "postgres.sh: $*" >&2; exit 1; }
log() { echo "postgres.sh: $*" >&2; }
usage() {
	echo "usage: $0 start DIR PORT | stop DIR | status DIR | install" >&2
	exit 2
}

[ $# -ge 1 ] || usage
CMD=$1
[ "$(id -u)" = 0 ] || die "must run as root"
if [ "$CMD" != install ]; then # every other command names a DIR
	[ $# -ge 2 ] || usage
	case "$2" in *[!A-Za-z0-9._/+-]*|"") die "DIR may contain only letters, digits and . _ / + -";; esac
	case "$2" in /*) DIR=$2;; *) DIR=$PWD/$2;; esac
	DIR=${DIR%/}
fi

DB=prosody ROLE=prosody PASSWORD=prosody
export DEBIAN_FRONTEND=noninteractive

# Newest PostgreSQL server installed (Debian 12: /usr/lib/postgresql/15/bin).
pg_bindir() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
	[ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && echo "$d"
}

as_postgres() { (cd / && runuser -u postgres -- "$@"); }

socketdir() {
	if [ -f "$DIR/.socketdir" ]; then cat "$DIR/.socketdir"; else echo "$DIR"; fi
}

# Port of the running postmaster (4th line of postmaster.pid).
running_port() { sed -n 4p "$DIR/postmaster.pid" 2>/dev/null; }

is_running() {
	local bin
	bin=$(pg_bindir) || return 1
	[ -f "$DIR/PG_VERSION" ] && [ -f "$DIR/postmaster.pid" ] || return 1
	as_postgres "$bin/pg_ctl" -D "$DIR" status >/dev/null 2>&1
}

facts() {
	cat <<-EOF
		PGHOST=127.0.0.1
		PGPORT=$1
		PGDATABASE=$DB
		PGUSER=$ROLE
		PGPASSWORD=$PASSWORD
		PGDATA=$DIR
		PGSOCKETDIR=$(socketdir)
	EOF
}

install_missing() {
	local missing="" p
	pg_bindir >/dev/null || missing="postgresql"
	for p in postgresql-client-common lua-dbi-postgresql; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
	done
	[ -n "$missing" ] || return 0
	log "installing:$missing (Debian may create and, with an init system, start its own 15/main cluster on 5432: it is left alone)"
	# DPkg::Lock::Timeout: wait for a concurrent apt/dpkg instead of failing.
	apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
	# shellcheck disable=SC2086
	apt-get -o DPkg::Lock::Timeout=300 install -y -qq $missing >&2
	pg_bindir >/dev/null || die "no /usr/lib/postgresql/*/bin/initdb after installing postgresql"
}

# Every ancestor of DIR must be searchable by postgres.
check_reachable() {
	local d=$DIR
	while d=$(dirname "$d"); [ "$d" != / ]; do
		[ -d "$d" ] || continue
		as_postgres test -x "$d" || die "user postgres cannot enter $d (mode $(stat -c %a "$d")): put DIR under a directory postgres can traverse, e.g. /tmp/pg-NAME"
	done
}

case "$CMD" in
start)
	[ $# -eq 3 ] || usage
	PORT=$3
	case "$PORT" in ''|*[!0-9]*) die "PORT must be a number";; esac
	[ "$PORT" -ge 1024 ] && [ "$PORT" -le 65535 ] || die "PORT must be 1024..65535"
	[ "$PORT" != 5432 ] || die "refusing 5432: that is the system cluster's port"

	install_missing
	BIN=$(pg_bindir)

	if is_running; then
		[ "$(running_port)" = "$PORT" ] || die "$DIR is already running on port $(running_port), not $PORT"
		log "already running: $DIR on 127.0.0.1:$PORT"
		facts "$PORT"
		exit 0
	fi

	if ss -Hltn "sport = :$PORT" 2>/dev/null | grep -q .; then
		die "something already listens on port $PORT"
	fi

	# ---- initdb (first time only) ----
	mkdir -p "$DIR"
	check_reachable
	if [ ! -f "$DIR/PG_VERSION" ]; then
		[ -z "$(ls -A "$DIR")" ] || die "$DIR is neither empty nor a PostgreSQL data directory"
		chown postgres:postgres "$DIR"
		chmod 0700 "$DIR"
		log "initdb $DIR ($("$BIN/postgres" --version))"
		if ! out=$(as_postgres "$BIN/initdb" -D "$DIR" -U postgres -E UTF8 --locale=C.UTF-8 --no-sync \
			--auth-local=trust --auth-host=scram-sha-256 2>&1); then
			printf '%s\n' "$out" >&2
			die "initdb failed"
		fi
	fi

	# ---- socket directory: DIR, unless the socket path would be too long ----
	if [ -f "$DIR/.socketdir" ]; then
		SOCK=$(cat "$DIR/.socketdir")
		[ -d "$SOCK" ] || { mkdir -p "$SOCK"; chown postgres:postgres "$SOCK"; chmod 0700 "$SOCK"; }
	elif [ ${#DIR} -gt 90 ]; then
		SOCK=$(mktemp -d /tmp/pgsock.XXXXXX)
		chown postgres:postgres "$SOCK"
		chmod 0700 "$SOCK"
		echo "$SOCK" >"$DIR/.socketdir"
	else
		SOCK=$DIR
	fi

	# ---- start ----
	log "starting on 127.0.0.1:$PORT (log: $DIR/log)"
	if ! as_postgres "$BIN/pg_ctl" -D "$DIR" -l "$DIR/log" -w -t 60 \
		-o "-p $PORT -k $SOCK -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
		start >&2; then
		tail -n 20 "$DIR/log" >&2 || true
		die "pg_ctl start failed"
	fi

	# ---- role and database (as superuser over the unix socket) ----
	PSQL="$BIN/psql -X -q -h $SOCK -p $PORT -U postgres -d postgres -v ON_ERROR_STOP=1"
	$PSQL <<-EOF >&2
		DO \$\$BEGIN
		  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
		    CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD';
		  END IF;
		END\$\$;
	EOF
	if [ -z "$($PSQL -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]; then
		$PSQL -c "CREATE DATABASE $DB OWNER $ROLE ENCODING 'UTF8'" >&2
	fi
	log "ready: postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"
	facts "$PORT"
	;;

stop)
	[ $# -eq 2 ] || usage
	if is_running; then
		log "stopping $DIR"
		as_postgres "$(pg_bindir)/pg_ctl" -D "$DIR" stop -m fast -w -t 60 >&2
	else
		log "not running: $DIR"
	fi
	if [ -f "$DIR/.socketdir" ]; then
		rm -rf "$(cat "$DIR/.socketdir")"
		rm -f "$DIR/.socketdir"
	fi
	;;

install)
	install_missing
	;;

status)
	[ $# -eq 2 ] || usage
	if is_running; then facts "$(running_port)"; else log "not running: $DIR"; exit 3; fi
	;;

*) usage ;;
esac
