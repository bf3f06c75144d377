#!/bin/sh
# `make run`: install our module into ./run/plugins, start a private Prosody on
# 127.0.0.1 with invite-only registration, create an invite and show how to use it.
# Ctrl-C stops the server.
set -e
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export PORT="${PORT:-15222}"
export XMPP_HOST="${XMPP_HOST:-localhost}"
export RUN_DIR="$ROOT/run"
export PLUGIN_DIR="$RUN_DIR/plugins"
CFG="$ROOT/tools/prosody.cfg.lua"

make -s install PLUGIN_DIR="$PLUGIN_DIR"
mkdir -p "$RUN_DIR/data" "$RUN_DIR/certs"
if [ ! -f "$RUN_DIR/certs/$XMPP_HOST.crt" ]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
		-subj "/CN=$XMPP_HOST" -addext "subjectAltName=DNS:$XMPP_HOST" \
		-keyout "$RUN_DIR/certs/$XMPP_HOST.key" -out "$RUN_DIR/certs/$XMPP_HOST.crt" 2>/dev/null
fi
if python3 -c "import socket,sys; s=socket.socket(); sys.exit(0 if s.connect_ex(('127.0.0.1', $PORT)) == 0 else 1)"; then
	echo "port $PORT is in use; choose another with: make run PORT=NNNNN" >&2
	exit 1
fi

prosody --config "$CFG" -F &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; echo; echo "Prosody stopped."; exit 0' INT TERM
for _ in $(seq 1 50); do
	python3 -c "import socket,sys; s=socket.socket(); sys.exit(0 if s.connect_ex(('127.0.0.1', $PORT)) == 0 else 1)" && break
	sleep 0.1
done

URI=$(prosodyctl --config "$CFG" mod_invites generate "$XMPP_HOST" 2>/dev/null | tail -n 1)
cat <<MSG

Prosody is running on 127.0.0.1:$PORT for $XMPP_HOST with the native mod_invites_register.
Log: $RUN_DIR/prosody.log

Invite: $URI

Register an account with it (in another terminal):
  python3 $ROOT/tools/register.py --port $PORT '$URI' alice 's3cret-pass'

More invites: XMPP_HOST=$XMPP_HOST PORT=$PORT RUN_DIR=$RUN_DIR PLUGIN_DIR=$PLUGIN_DIR prosodyctl --config $CFG mod_invites generate $XMPP_HOST
Press Ctrl-C to stop.
MSG
wait $PID
