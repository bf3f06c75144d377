#!/bin/bash
# tools/matrix/prosody13.sh PREFIX [latest]
#
# Installs Prosody 13 (Debian bookworm-backports, 13.0.1-1~bpo12+1 when written)
# into PREFIX, side by side with Debian 12's own prosody 0.12.3 in /usr, for
# the test matrix. Run as root on Debian 12. Idempotent and safe to run
# concurrently for the same PREFIX (flock).
#
# With `latest`: the newest 13.0.x that Debian's archive has (sid, trixie-backports,
# trixie; 13.0.7-1 from sid when written) instead, over bookworm-backports' C
# libraries. Those newer packages exist only for trixie/sid and their util/*.so need
# glibc 2.38 and libicu78, which Debian 12 lacks; their Lua tree runs unchanged over
# 13.0.1's util/*.so (the same 13 files, the same C API: pposix 0.4.1 in both). So
# PREFIX gets the newest deb unpacked, then every util/*.so replaced by 13.0.1's
# (the set of names must match, else the script stops), and 13.0.1's Depends are
# the ones satisfied (plus any lua* dependency only the newer one names).
# Environment for this mode: PROSODY13_LATEST_SUITES (default "sid trixie-backports
# trixie"), PROSODY13_LATEST_VERSION (an exact Debian version instead of the newest
# 13.0.x found, e.g. 13.0.6-1~bpo13+1).
#
# stdout: exactly two lines, meant for `eval "$(tools/matrix/prosody13.sh P)"`:
#     PROSODY13=PREFIX/usr/bin/prosody
#     PROSODYCTL13=PREFIX/usr/bin/prosodyctl
# Everything else (progress, warnings) goes to stderr.
#
# Environment (all optional):
#     PROSODY13_MIRROR   Debian mirror URL (default: the one /etc/apt uses for
#                        bookworm, else http://deb.debian.org/debian)
#     PROSODY13_FORCE=1  reinstall even if PREFIX already works
#
# What it does, and why (measured on Debian 12, apt 2.6.1):
#  1. The system's apt state is never touched: a temporary folder holds its own
#     apt.conf (passed with APT_CONFIG) whose Dir::Etc::sourcelist lists only
#     `deb URL bookworm-backports main`, Dir::Etc::sourceparts and
#     preferencesparts are empty dirs, and Dir::State / Dir::Cache live in the
#     temp folder, so `apt-get update` writes lists/caches/locks only there (it
#     also works while the system apt is locked). Signatures are checked with
#     the system's keys: the Signed-By keyring of the system's bookworm entry
#     when it has one (Debian 12 images: /usr/share/keyrings/debian-archive-
#     keyring.gpg), otherwise apt's default trusted.gpg.d, which is left as is.
#     APT::Sandbox::User "root" silences "Download is performed unsandboxed as
#     root ... couldn't be accessed by user '_apt'" (the temp dir is 0700).
#  2. `apt-get download prosody/bookworm-backports` -> prosody_13.0.1-1~bpo12+1_amd64.deb
#     (455 kB; the mirror keeps only the newest backport, so any 13.x is
#     accepted and a different version only warns).
#  3. Its Depends (adduser, lua-expat, lua-filesystem, lua5.4, lua5.4-bitop,
#     lua5.4-expat, lua5.4-filesystem, lua5.4-sec, lua5.4-socket, ssl-cert,
#     libc6, libicu72, libssl3 — the same set prosody 0.12.3 needs; the lua5.4-*
#     names are virtual packages provided by lua-bitop, lua-expat, ...) are
#     checked with `apt-get satisfy -s` (which understands virtual packages and
#     version constraints, unlike dpkg-query) and installed from the SYSTEM's
#     normal sources with `apt-get satisfy` only when something is missing.
#     Recommends (lua5.4-unbound/-event/-readline) are not needed: without
#     lua-unbound Prosody falls back to its own DNS resolver.
#  4. `dpkg-deb -x` into PREFIX (no maintainer scripts run: no prosody user is
#     created, no service is started, nothing in /etc or /var changes).
#  5. The launchers PREFIX/usr/bin/{prosody,prosodyctl,prosody-migrator} start
#     with hard-coded CFG_SOURCEDIR='/usr/lib/prosody', CFG_CONFIGDIR='/etc/prosody',
#     CFG_PLUGINDIR='/usr/lib/prosody/modules/', CFG_DATADIR='/var/lib/prosody'
#     (ejabberd2prosody has /usr/lib/prosody in a package.path line). These are
#     rewritten to PREFIX/usr/lib/prosody, PREFIX/etc/prosody, ... so that
#     13 never loads 0.12's /usr/lib/prosody and never reads /etc/prosody or
#     writes /var/lib/prosody. Nothing else in the package hard-codes a path.
#     The compiled util/*.so (pposix, encodings, hashes, crypto, ...) are found
#     with no further work: the launcher prepends CFG_SOURCEDIR/?.so to
#     package.cpath and 13's loader.lua maps require"prosody.util.x" to util.x.
#  6. The deb's own default config (PREFIX/etc/prosody/prosody.cfg.lua) Includes
#     conf.d/ and uses certs/: both are created empty (Debian's postinst does
#     that normally). Always run 13 with --config anyway.
#  7. Self-check: `prosodyctl --config <tiny cfg with run_as_root> about` must
#     say "Prosody 13" with Source directory inside PREFIX, and every
#     util/*.so must load in lua5.4. (As root, prosodyctl without
#     run_as_root = true refuses to read a config in a 0700 dir: "The config
#     file is not readable by the 'prosody' user".) A stamp file
#     PREFIX/.prosody13-installed is written last; a PREFIX with stamp + passing
#     self-check is left alone.
#  Never run `prosody --version` (either version): it starts a real server.
#  Measured: fresh Debian 12 minbase chroot (installs lua5.4 & co.) 4.3 s; with
#  the dependencies present (prosody 0.12 installed) 0.9-1.1 s; warm 0.06 s.
set -euo pipefail

die() { echo "prosody13.sh: $*" >&2; exit 1; }
log() { echo "prosody13.sh: $*" >&2; }

[ $# -ge 1 ] && [ $# -le 2 ] && [ -n "$1" ] || { echo "usage: $0 PREFIX [latest]" >&2; exit 2; }
MODE=${2:-backports}
case "$MODE" in backports|latest) ;; *) echo "usage: $0 PREFIX [latest]" >&2; exit 2;; esac
LATEST_SUITES=${PROSODY13_LATEST_SUITES:-sid trixie-backports trixie}
[ "$(id -u)" = 0 ] || die "must run as root (apt-get, dpkg-deb)"
# PREFIX ends up inside sed replacements and Lua string literals: keep it plain.
case "$1" in *[!A-Za-z0-9._/+-]*) die "PREFIX may contain only letters, digits and . _ / + -";; esac

mkdir -p "$1"
PREFIX=$(cd "$1" && pwd -P)
case "$PREFIX" in *[!A-Za-z0-9._/+-]*) die "resolved PREFIX $PREFIX has characters other than letters, digits and . _ / + -";; esac
# Installing into / would overwrite Debian's own 0.12 in /usr/lib/prosody.
[ "$PREFIX" != / ] || die "PREFIX must not be /"
STAMP="$PREFIX/.prosody13-installed"
export DEBIAN_FRONTEND=noninteractive

# Serialise concurrent runs for the same PREFIX.
exec 9>"$PREFIX/.prosody13.lock"
flock 9

TMP=$(mktemp -d /tmp/prosody13.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# ---- self-check (step 7) ---------------------------------------------------
works() {
	[ -f "$STAMP" ] && [ -x "$PREFIX/usr/bin/prosody" ] && [ -x "$PREFIX/usr/bin/prosodyctl" ] || return 1
	# A prefix made in the other mode (or for another pinned version) is redone.
	grep -q "^mode: $MODE\$" "$STAMP" || return 1
	[ -z "${PROSODY13_LATEST_VERSION:-}" ] || [ "$MODE" != latest ] \
		|| grep -qF "prosody ${PROSODY13_LATEST_VERSION} " "$STAMP" || return 1
	command -v lua5.4 >/dev/null || return 1
	mkdir -p "$TMP/check"
	cat >"$TMP/check/check.cfg.lua" <<-EOF
		run_as_root = true
		data_path = "$TMP/check"
		certificates = "$TMP/check"
		log = { { levels = { min = "error" }, to = "console" } }
	EOF
	local out
	out=$("$PREFIX/usr/bin/prosodyctl" --config "$TMP/check/check.cfg.lua" about 2>&1) || return 1
	printf '%s\n' "$out" | grep -q '^Prosody 13\.' || return 1
	# ... and the version the stamp names (13.0.1 from "prosody 13.0.1-1~bpo12+1 ...").
	local want
	want=$(sed -n '1s/^prosody \([0-9][0-9.]*\).*/\1/p' "$STAMP")
	printf '%s\n' "$out" | grep -qE "^Prosody ${want//./\\.}( |\$)" || return 1
	printf '%s\n' "$out" | grep -qF "Source directory:   $PREFIX/usr/lib/prosody" || return 1
	# Each native helper must load into lua5.4 (catches a missing libicu72/libssl3).
	local so
	for so in "$PREFIX"/usr/lib/prosody/util/*.so; do
		lua5.4 -e "local n=('$so'):match('([^/]+)%.so\$'); assert(package.loadlib('$so', 'luaopen_util_'..n))" 2>/dev/null || return 1
	done
	return 0
}

if [ "${PROSODY13_FORCE:-0}" != 1 ] && works; then
	log "already installed: $(head -n 1 "$STAMP")"
	echo "PROSODY13=$PREFIX/usr/bin/prosody"
	echo "PROSODYCTL13=$PREFIX/usr/bin/prosodyctl"
	exit 0
fi

# ---- step 1: private apt configuration --------------------------------------
# Find the mirror and keyring the system uses for bookworm (one-line *.list
# entries and deb822 *.sources stanzas). Debian 12 images have e.g.
#   URIs: http://deb.debian.org/debian / Suites: bookworm bookworm-updates /
#   Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
find_mirror() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		# deb [opts] URI bookworm ...
		awk '$1=="deb" { i=2; opts="";
				if ($2 ~ /^\[/) { while (i<=NF && $i !~ /\]$/) { opts=opts" "$i; i++ } opts=opts" "$i; i++ }
				if ($(i+1)=="bookworm") { kr=""; if (match(opts, /signed-by=[^] ]+/)) kr=substr(opts, RSTART+10, RLENGTH-10);
					print $i, kr; exit } }' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		awk 'function flush() { if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ / bookworm / && enabled !~ /^[Nn]o/) { split(uris, u, " "); print u[1], kr; found=1; exit } types=uris=suites=kr=enabled="" }
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); next }
			{ k=tolower($1); sub(/:$/, "", k); v=$0; sub(/^[^:]*:[ \t]*/, "", v) }
			k=="types" { types=v } k=="uris" { uris=v } k=="suites" { suites=v } k=="signed-by" { kr=v } k=="enabled" { enabled=v }
			END { if (!found) flush() }' "$f"
	done
}
read -r SYS_MIRROR SYS_KEYRING < <(find_mirror | head -n1) || true
SIGNED_BY=""
# Signed-By may also be an inline key block (starts with "-----"); only reuse a file path.
case "${SYS_KEYRING:-}" in /*) [ -r "$SYS_KEYRING" ] && SIGNED_BY="[signed-by=$SYS_KEYRING] ";; esac
# Candidates: $PROSODY13_MIRROR alone if set; else the system's bookworm
# mirror, then deb.debian.org (in case a local mirror carries no backports).
if [ -n "${PROSODY13_MIRROR:-}" ]; then
	MIRRORS=$PROSODY13_MIRROR
else
	MIRRORS="${SYS_MIRROR:-} http://deb.debian.org/debian"
fi

# One attempt: private apt config for MIRROR, update, download into $TMP/dl.
try_mirror() {
	MIRROR=${1%/}
	rm -rf "$TMP/apt" "$TMP/dl"
	mkdir -p "$TMP/apt/sources.list.d" "$TMP/apt/preferences.d" "$TMP/apt/state/lists/partial" \
		"$TMP/apt/cache/archives/partial" "$TMP/dl"
	echo "deb ${SIGNED_BY}$MIRROR bookworm-backports main" >"$TMP/apt/sources.list"
	if [ "$MODE" = latest ]; then
		local suite
		for suite in $LATEST_SUITES; do
			echo "deb ${SIGNED_BY}$MIRROR $suite main" >>"$TMP/apt/sources.list"
		done
	fi
	cat >"$TMP/apt/apt.conf" <<-EOF
		Dir::Etc::sourcelist "$TMP/apt/sources.list";
		Dir::Etc::sourceparts "$TMP/apt/sources.list.d";
		Dir::Etc::preferences "$TMP/apt/preferences";
		Dir::Etc::preferencesparts "$TMP/apt/preferences.d";
		Dir::State "$TMP/apt/state";
		Dir::State::status "/var/lib/dpkg/status";
		Dir::Cache "$TMP/apt/cache";
		APT::Sandbox::User "root";
		Acquire::Retries "3";
		Acquire::Languages "none";
		Acquire::IndexTargets::deb::DEP-11::DefaultEnabled "false";
		Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled "false";
		Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled "false";
		Acquire::IndexTargets::deb::CNF::DefaultEnabled "false";
	EOF
	# snapshot.debian.org Release files are past their Valid-Until date.
	case "$MIRROR" in *snapshot.debian.org*)
		echo 'Acquire::Check-Valid-Until "false";' >>"$TMP/apt/apt.conf";; esac
	log "mirror: $MIRROR ${SIGNED_BY:+(keyring $SYS_KEYRING)}; apt-get update with private state in $TMP/apt"
	# ---- step 2: download -------------------------------------------------
	APT_CONFIG="$TMP/apt/apt.conf" apt-get update -qq >&2 \
		&& (cd "$TMP/dl" && APT_CONFIG="$TMP/apt/apt.conf" apt-get download -qq prosody/bookworm-backports >&2) \
		&& ls "$TMP"/dl/prosody_*.deb >/dev/null 2>&1 \
		&& { [ "$MODE" != latest ] || download_latest; }
}

# Latest mode: the newest 13.0.x in LATEST_SUITES (or PROSODY13_LATEST_VERSION)
# into $TMP/dl-latest.
download_latest() {
	local v best=""
	if [ -n "${PROSODY13_LATEST_VERSION:-}" ]; then
		best=$PROSODY13_LATEST_VERSION
	else
		for v in $(APT_CONFIG="$TMP/apt/apt.conf" apt-cache madison prosody | awk -F'|' '{gsub(/ /, "", $2); print $2}'); do
			case "$v" in 13.0.*) ;; *) continue;; esac
			if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$best"; then best=$v; fi
		done
	fi
	[ -n "$best" ] || { log "no prosody 13.0.x in $LATEST_SUITES at $MIRROR"; return 1; }
	log "newest 13.0.x: $best"
	mkdir -p "$TMP/dl-latest"
	(cd "$TMP/dl-latest" && APT_CONFIG="$TMP/apt/apt.conf" apt-get download -qq "prosody=$best" >&2) \
		&& ls "$TMP"/dl-latest/prosody_*.deb >/dev/null 2>&1
}
ok=""
for m in $MIRRORS; do
	if try_mirror "$m"; then ok=1; break; fi
	log "no prosody in bookworm-backports at $m"
done
[ -n "$ok" ] || die "could not download prosody/bookworm-backports$([ "$MODE" = latest ] && echo " and the newest 13.0.x from $LATEST_SUITES") (tried: $MIRRORS)"
DEB=$(ls "$TMP"/dl/prosody_*.deb)
VERSION=$(dpkg-deb -f "$DEB" Version)
case "$VERSION" in
	13.0.1-1~bpo12+1) ;;
	13.*) log "WARNING: expected 13.0.1-1~bpo12+1, backports now has $VERSION (using it)";;
	*) die "bookworm-backports has prosody $VERSION, not 13.x";;
esac
log "downloaded $(basename "$DEB")"
BASE_VERSION=$VERSION
DEPENDS=$(dpkg-deb -f "$DEB" Depends)
if [ "$MODE" = latest ]; then
	LATEST_DEB=$(ls "$TMP"/dl-latest/prosody_*.deb)
	VERSION=$(dpkg-deb -f "$LATEST_DEB" Version)
	case "$VERSION" in 13.0.*) ;; *) die "the newest deb is prosody $VERSION, not 13.0.x";; esac
	log "downloaded $(basename "$LATEST_DEB") (its C libraries replaced by $BASE_VERSION's)"
	# Lua modules only the newer one depends on (its libc6/libicu/libssl needs are
	# those of the util/*.so that are replaced).
	extra=$(dpkg-deb -f "$LATEST_DEB" Depends | tr ',' '\n' | sed 's/^ *//; s/ *$//' \
		| grep -E '^lua' | while read -r dep; do
			printf '%s\n' "$DEPENDS" | tr ',' '\n' | sed 's/^ *//; s/ *$//' | grep -qxF "$dep" || printf ', %s' "$dep"
		done)
	DEPENDS="$DEPENDS$extra"
fi

# ---- step 3: dependencies, from the system's own sources ------------------------
# `apt-get satisfy -s` exits non-zero when it cannot satisfy (e.g. no package
# lists yet on a fresh machine) and prints "Inst ..." lines for what it would install.
if sim=$(apt-get satisfy -s "$DEPENDS" 2>&1) && ! printf '%s\n' "$sim" | grep -q '^Inst '; then
	log "dependencies already satisfied"
else
	log "installing missing dependencies: $DEPENDS"
	# DPkg::Lock::Timeout: wait for a concurrent apt/dpkg instead of failing.
	apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
	apt-get -o DPkg::Lock::Timeout=300 satisfy -y -qq --no-install-recommends "$DEPENDS" >&2
fi

# ---- step 4: unpack -------------------------------------------------------------
rm -f "$STAMP"
rm -rf "$PREFIX/usr/lib/prosody"   # drop files of an older 13.x unpack
if [ "$MODE" = latest ]; then
	dpkg-deb -x "$LATEST_DEB" "$PREFIX"
	mkdir -p "$TMP/base"
	dpkg-deb -x "$DEB" "$TMP/base"
	names() { (cd "$1/usr/lib/prosody/util" && ls ./*.so | sort); }
	[ "$(names "$PREFIX")" = "$(names "$TMP/base")" ] \
		|| die "util/*.so differ between $VERSION and $BASE_VERSION: $(diff <(names "$PREFIX") <(names "$TMP/base") | tr '\n' ' ')"
	cp "$TMP"/base/usr/lib/prosody/util/*.so "$PREFIX/usr/lib/prosody/util/"
else
	dpkg-deb -x "$DEB" "$PREFIX"
fi

# ---- step 5: point the launchers at PREFIX --------------------------------------
for f in prosody prosodyctl prosody-migrator ejabberd2prosody; do
	[ -f "$PREFIX/usr/bin/$f" ] || continue
	sed -i \
		-e "s#^CFG_SOURCEDIR=.*#CFG_SOURCEDIR='$PREFIX/usr/lib/prosody';#" \
		-e "s#^CFG_CONFIGDIR=.*#CFG_CONFIGDIR='$PREFIX/etc/prosody';#" \
		-e "s#^CFG_PLUGINDIR=.*#CFG_PLUGINDIR='$PREFIX/usr/lib/prosody/modules/';#" \
		-e "s#^CFG_DATADIR=.*#CFG_DATADIR='$PREFIX/var/lib/prosody';#" \
		-e "s#\([;'\"]\)/usr/lib/prosody/#\1$PREFIX/usr/lib/prosody/#g" \
		"$PREFIX/usr/bin/$f"
done
grep -qxF "CFG_SOURCEDIR='$PREFIX/usr/lib/prosody';" "$PREFIX/usr/bin/prosody" \
	&& grep -qxF "CFG_SOURCEDIR='$PREFIX/usr/lib/prosody';" "$PREFIX/usr/bin/prosodyctl" \
	|| die "could not rewrite CFG_SOURCEDIR in $PREFIX/usr/bin (launcher layout changed?)"

# ---- step 6: directories Debian's postinst would create -------------------------
mkdir -p "$PREFIX/etc/prosody/conf.d" "$PREFIX/etc/prosody/certs" "$PREFIX/var/lib/prosody"

if [ "$MODE" = latest ]; then
	printf 'prosody %s (Lua tree) from %s %s, C libraries of prosody %s from bookworm-backports\nmode: latest\n' \
		"$VERSION" "$MIRROR" "$LATEST_SUITES" "$BASE_VERSION" >"$STAMP"
else
	printf 'prosody %s from %s bookworm-backports\nmode: backports\n' "$VERSION" "$MIRROR" >"$STAMP"
fi
works || { rm -f "$STAMP"; die "self-check failed after install (try: $PREFIX/usr/bin/prosodyctl --config CFG about)"; }
log "installed prosody $VERSION into $PREFIX"
echo "PROSODY13=$PREFIX/usr/bin/prosody"
echo "PROSODYCTL13=$PREFIX/usr/bin/prosodyctl"
