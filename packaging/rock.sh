#!/bin/bash
# packaging/rock.sh — `make rock`.
#
# Writes a local LuaRocks server folder dist/rocks/ with
#     mod_invites_register-<version>-1.src.rock    the rockspec + the source archive
#     manifest, manifest-5.x, index.html            (luarocks-admin make_manifest)
# and dist/mod_invites_register-<version>-1.rockspec (a copy, for reading), then refreshes
# dist/SHA256SUMS. Install from it on a machine with cargo:
#     prosodyctl install --server=/path/to/dist/rocks mod_invites_register
# (prosodyctl runs `luarocks --lua-version=<Prosody's Lua> install --tree=<installer path>`;
# the rockspec's build_command runs packaging/rock-build.sh, which runs cargo.)
# The source archive holds what `cargo build` needs (Cargo.toml, Cargo.lock, src/), the
# plugin (lua/), packaging/rock-build.sh, README.md and LICENSE. The rockspec comes from
# packaging/mod_invites_register.rockspec.in with @VERSION@ from Cargo.toml.
. "$(dirname "$0")/common.sh"

command -v luarocks-admin >/dev/null || need_pkg luarocks
command -v python3 >/dev/null || die "python3 not found (used to write the .src.rock zip)"

ROCKVER=$VERSION-1
SRCNAME=$MODULE-$VERSION
STAGE=$ROOT/build/rock-pack
SERVER=$DIST/rocks
ROCKSPEC=$MODULE-$ROCKVER.rockspec
SRCROCK=$MODULE-$ROCKVER.src.rock

rm -rf "$STAGE"
mkdir -p "$STAGE/$SRCNAME/packaging" "$SERVER" "$DIST"
cp -R Cargo.toml Cargo.lock src lua README.md LICENSE "$STAGE/$SRCNAME/"
cp packaging/rock-build.sh "$STAGE/$SRCNAME/packaging/"
mktar "$STAGE" "$STAGE/$SRCNAME.tar.gz" "$SRCNAME"
sed "s/@VERSION@/$VERSION/g" packaging/$MODULE.rockspec.in >"$STAGE/$ROCKSPEC"
grep -q '@[A-Z_]*@' "$STAGE/$ROCKSPEC" && die "unfilled placeholder in $ROCKSPEC"

# A .src.rock is a zip of the rockspec and the source archive its source.url names
# (what `luarocks pack` writes; written here so that no copy of the source needs fetching).
python3 - "$STAGE" "$ROCKSPEC" "$SRCNAME.tar.gz" "$SERVER/$SRCROCK" <<'PY'
import os, sys, time, zipfile
stage, rockspec, archive, out = sys.argv[1:]
stamp = time.gmtime(max(int(os.environ["SOURCE_DATE_EPOCH"]), 315532800))[:6]
with zipfile.ZipFile(out + ".tmp", "w", zipfile.ZIP_DEFLATED) as z:
    for name in (rockspec, archive):
        info = zipfile.ZipInfo(name, stamp)
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(os.path.join(stage, name), "rb") as f:
            z.writestr(info, f.read())
os.replace(out + ".tmp", out)
PY
cp "$STAGE/$ROCKSPEC" "$DIST/$ROCKSPEC"
# Only this version's rock in the server folder, then its manifest.
find "$SERVER" -maxdepth 1 -name "$MODULE-*.rock" ! -name "$SRCROCK" -delete
luarocks-admin make_manifest "$SERVER" >&2
sums
echo "dist/rocks/$SRCROCK ($(stat -c %s "$SERVER/$SRCROCK") bytes)"
