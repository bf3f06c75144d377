#!/bin/sh
# Run by LuaRocks inside the unpacked source (the rockspec's build_command):
#     sh packaging/rock-build.sh LUA_INTERPRETER
# Builds the native library for the Lua version of LUA_INTERPRETER (LuaRocks' $(LUA),
# the interpreter of the tree it installs into: prosodyctl passes --lua-version of the Lua
# running Prosody) with `cargo build --locked --release`, and copies it to
# build/rock/invites_register.so, where the rockspec's install.lib takes it from.
set -eu
LUA_BIN=${1:-lua}
if ! V=$("$LUA_BIN" -e 'io.write((_VERSION:match("%d+%.%d+")))' 2>/dev/null); then
	echo "rock-build.sh: cannot run the Lua interpreter '$LUA_BIN' to tell its version" >&2
	exit 1
fi
case "$V" in
	5.1 | 5.2 | 5.3 | 5.4) ;;
	*) echo "rock-build.sh: Lua $V is not supported (5.1-5.4)" >&2; exit 1 ;;
esac
# prosodyctl sets HOME to Prosody's data directory before it runs luarocks, and rustup and
# cargo look for the toolchain (RUSTUP_HOME) and the crate cache (CARGO_HOME) under HOME.
# Unless they are set, take them from the home directory of the user running this (from
# the password database: /root for root), when it has them; cargo from there too.
PW_HOME=$(getent passwd "$(id -u)" 2>/dev/null | cut -d: -f6 || true)
# (A failed rustup run leaves an empty .rustup behind in HOME: look for toolchains.)
has_toolchains() { [ -n "$(ls -A "$1/.rustup/toolchains" 2>/dev/null)" ]; }
if [ -n "$PW_HOME" ] && [ "$PW_HOME" != "${HOME:-}" ]; then
	if [ -z "${RUSTUP_HOME:-}" ] && ! has_toolchains "${HOME:-/nonexistent}" && has_toolchains "$PW_HOME"; then
		export RUSTUP_HOME="$PW_HOME/.rustup"
	fi
	if [ -z "${CARGO_HOME:-}" ] && [ ! -d "${HOME:-/nonexistent}/.cargo/bin" ] && [ -d "$PW_HOME/.cargo" ]; then
		export CARGO_HOME="$PW_HOME/.cargo"
	fi
fi
CARGO=${CARGO:-cargo}
if ! command -v "$CARGO" >/dev/null 2>&1 && [ -x "${CARGO_HOME:-${HOME:-/nonexistent}/.cargo}/bin/cargo" ]; then
	CARGO="${CARGO_HOME:-$HOME/.cargo}/bin/cargo"
fi
if ! command -v "$CARGO" >/dev/null 2>&1; then
	echo "rock-build.sh: cargo not found: the rock builds the native library from source and needs" >&2
	echo "a Rust toolchain (rustc >= 1.88, e.g. from rustup). Without one, install the prebuilt" >&2
	echo "tarball or the .deb instead (README.md, 'Installing')." >&2
	exit 1
fi
FEATURE="lua$(echo "$V" | tr -d .)"
echo "rock-build.sh: $CARGO build --locked --release --no-default-features --features $FEATURE (Lua $V${RUSTUP_HOME:+, RUSTUP_HOME=$RUSTUP_HOME}${CARGO_HOME:+, CARGO_HOME=$CARGO_HOME})"
"$CARGO" build --locked --release --no-default-features --features "$FEATURE"
mkdir -p build/rock
cp "${CARGO_TARGET_DIR:-target}/release/libinvites_register.so" build/rock/invites_register.so
