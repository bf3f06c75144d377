# packaging/common.sh — sourced by the packaging scripts (bash): paths, the version,
# the release build of the native library, reproducible archives, SHA256SUMS.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
DIST=${DIST_DIR:-$ROOT/dist}
CARGO=${CARGO:-cargo}
MODULE=mod_invites_register
LIB=invites_register

die() { echo "${0##*/}: $*" >&2; exit 1; }
log() { echo "${0##*/}: $*" >&2; }

# The version: [package] version in Cargo.toml.
VERSION=$(awk '/^\[/ { p = ($0 == "[package]") } p && /^version[ \t]*=/ {
	sub(/^version[ \t]*=[ \t]*"/, ""); sub(/".*/, ""); print; exit }' Cargo.toml)
[ -n "$VERSION" ] || die "no [package] version in Cargo.toml"

# Archive timestamps: the last commit (reproducible artefacts from one commit).
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

# need_pkg PACKAGE...: install missing Debian packages (as root), else fail with the command.
need_pkg() {
	local missing="" p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
	done
	[ -n "$missing" ] || return 0
	[ "$(id -u)" = 0 ] || die "missing packages:$missing (apt-get install$missing)"
	log "installing:$missing"
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq $missing >&2
}

# build_lib LUA_VERSION OUT: the release library for that Lua (`cargo build --locked
# --release`, feature luaXY), stripped of what dynamic linking does not need, at OUT.
build_lib() {
	local v=$1 out=$2 feature
	case "$v" in 5.1 | 5.2 | 5.3 | 5.4) ;; *) die "LUA_VERSION must be 5.1, 5.2, 5.3 or 5.4, not '$v'";; esac
	feature="lua${v/./}"
	log "$CARGO build --locked --release --no-default-features --features $feature"
	"$CARGO" build --locked --release --no-default-features --features "$feature" >&2
	mkdir -p "$(dirname "$out")"
	strip --strip-unneeded -o "$out" "${CARGO_TARGET_DIR:-target}/release/lib$LIB.so"
	chmod 644 "$out"
	# mlua in module mode: the Lua C API comes from the host process, never a liblua.
	if ldd "$out" 2>/dev/null | grep -q liblua; then die "$out links a liblua of its own"; fi
}

# mktar DIR OUT NAME...: OUT (.tar.gz) of DIR/NAME..., owner root, sorted, fixed mtimes.
mktar() {
	local dir=$1 out=$2
	shift 2
	tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
		--mode=u+rw,go-w,a+rX -C "$dir" -cf - "$@" | gzip -n -9 >"$out.tmp"
	mv "$out.tmp" "$out"
}

# dist/SHA256SUMS over every artefact in dist/ (tarballs, .deb, rocks/*.src.rock).
sums() {
	(
		cd "$DIST"
		shopt -s nullglob
		files=(*.tar.gz *.deb rocks/*.src.rock)
		if [ ${#files[@]} -gt 0 ]; then sha256sum "${files[@]}" >SHA256SUMS.tmp; else : >SHA256SUMS.tmp; fi
		mv SHA256SUMS.tmp SHA256SUMS
	)
}
