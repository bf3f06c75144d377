#!/bin/sh
# Installs the Debian 12 packages the build, `make run` and the tests need (as root),
# and a Rust toolchain check. Quiet when everything is already there.
set -e
PACKAGES="prosody lua5.4 liblua5.4-dev lua-busted lua-check lua-dbi-sqlite3 python3-venv openssl make gcc"
missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "missing packages:$missing (run as root or: apt-get install$missing)" >&2
		exit 1
	fi
	echo "installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq $missing >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
	echo "cargo not found: install a Rust toolchain (rustup, rustc >= 1.88)" >&2
	exit 1
fi
