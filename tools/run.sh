#!/bin/sh
# `make run`: install our module into ./run/plugins, start a private Prosody on
# 127.0.0.1 with invite-only registration, create an invite and show how to use it.
# Ctrl-C stops the server.
# `make invite` (tools/run.sh invite): print a fresh invite URI for the server that
# `make run` started (same PORT / XMPP_HOST), nothing else on stdout.
set -e
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export PORT="${PORT:-15222}"
export XMPP_HOST="${XMPP_HOST:-localhost}"
export RUN_DIR="$ROOT/run"
export PLUGIN_DIR="$RUN_DIR/plugins"
CFG="$ROOT/tools/prosody.cfg.lua"
# What `make run` / `make invite` need to be told when PORT / XMPP_HOST are not the defaults.
MAKE_ARGS=""
[ "$PORT" = 15222 ] || MAKE_ARGS="$MAKE_ARGS PORT=$PORT"
[ "$XMPP_HOST" = localhost ] || MAKE_ARGS="$MAKE_ARGS XMPP_HOST=$XMPP_HOST"

port_open() {
	python3 -c "import socket,sys; s=socket.socket(); sys.exit(0 if s.connect_ex(('127.0.0.1', $PORT)) == 0 else 1)"
}

# A fresh account invite URI from the running server: `mod_invites generate` (0.12), else
# the admin shell (13 only prints a deprecation notice for the former).
new_invite() {
	uri=$(prosodyctl --config "$CFG" mod_invites generate "$XMPP_HOST" 2>/dev/null | tail -n 1)
	case "$uri" in
		xmpp:*) ;;
		*) uri=$(prosodyctl --config "$CFG" shell invite create_account "$XMPP_HOST" 2>/dev/null \
			| grep -o 'xmpp:[^ ]*' | tail -n 1) ;;
	esac
	[ -n "$uri" ] && echo "$uri"
}

if [ "${1:-}" = invite ]; then
	if [ ! -f "$RUN_DIR/prosody.pid" ] || ! kill -0 "$(cat "$RUN_DIR/prosody.pid")" 2>/dev/null \
		|| ! port_open; then
		echo "no server from \`make run\` on 127.0.0.1:$PORT: start one with: make run$MAKE_ARGS" >&2
		exit 1
	fi
	new_invite || { echo "could not create an invite (see $RUN_DIR/prosody.log)" >&2; exit 1; }
	exit 0
fi

make -s install PLUGIN_DIR="$PLUGIN_DIR"
mkdir -p "$RUN_DIR/data" "$RUN_DIR/certs"
if [ ! -f "$RUN_DIR/certs/$XMPP_HOST.crt" ]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
		-subj "/CN=$XMPP_HOST" -addext "subjectAltName=DNS:$XMPP_HOST" \
		-keyout "$RUN_DIR/certs/$XMPP_HOST.key" -out "$RUN_DIR/certs/$XMPP_HOST.crt" 2>/dev/null
fi
if port_open; then
	echo "port $PORT is in use; choose another with: make run PORT=NNNNN" >&2
	exit 1
fi

prosody --config "$CFG" -F &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; echo; echo "Prosody stopped."; exit 0' INT TERM
for _ in $(seq 1 50); do
	port_open && break
	sleep 0.1
done

URI=$(new_invite || true)
cat <<MSG

Prosody is running on 127.0.0.1:$PORT for $XMPP_HOST with the native mod_invites_register.
Log: $RUN_DIR/prosody.log

Invite: $URI

Register an account with it (in another terminal):
  python3 $ROOT/tools/register.py --port $PORT '$URI' alice 's3cret-pass'

More invites (in another terminal): make invite$MAKE_ARGS
Press Ctrl-C to stop.
MSG
wait $PID
