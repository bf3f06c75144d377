#!/bin/bash
# packaging/dist.sh [LUA_VERSION] — `make dist [LUA_VERSION=5.4]`.
#
# Writes dist/mod_invites_register-<version>-lua<X.Y>-<arch>.tar.gz (version from
# Cargo.toml, arch from `uname -m`) and refreshes dist/SHA256SUMS. The tarball holds
#     mod_invites_register/mod_invites_register.lua    the plugin
#     mod_invites_register/invites_register.so         the library (cargo build --locked --release)
#     mod_invites_register.README.md, mod_invites_register.LICENSE
# so that `tar -xzf … -C <a folder in plugin_paths>` is the whole installation (README
# and LICENSE are named after the module, so they never clash with another module's).
# Archive members: owner root, sorted, mtime of the last commit (SOURCE_DATE_EPOCH).
. "$(dirname "$0")/common.sh"

LUA_VERSION=${1:-${LUA_VERSION:-5.4}}
ARCH=$(uname -m)
NAME=$MODULE-$VERSION-lua$LUA_VERSION-$ARCH
STAGE=$ROOT/build/dist/$NAME

rm -rf "$STAGE"
mkdir -p "$STAGE/$MODULE" "$DIST"
build_lib "$LUA_VERSION" "$STAGE/$MODULE/$LIB.so"
install -m 644 "lua/$MODULE.lua" "$STAGE/$MODULE/$MODULE.lua"
install -m 644 README.md "$STAGE/$MODULE.README.md"
install -m 644 LICENSE "$STAGE/$MODULE.LICENSE"
mktar "$STAGE" "$DIST/$NAME.tar.gz" "$MODULE" "$MODULE.README.md" "$MODULE.LICENSE"
sums
echo "dist/$NAME.tar.gz ($(stat -c %s "$DIST/$NAME.tar.gz") bytes)"
