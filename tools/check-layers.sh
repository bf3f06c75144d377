#!/bin/sh
# Keeps the layers honest (STYLE.md): mlua only in the glue (lua_api.rs, and lua_raw.rs
# for the per-stanza and per-registration calls through Lua's C API) and the entry point,
# namespaces only in ns.rs, no Prosody API call outside the Lua shim.
status=0
bad=$(grep -ln "mlua" src/*.rs | grep -v -e "src/lua_api.rs" -e "src/lua_raw.rs" -e "src/lib.rs")
[ -z "$bad" ] || { echo "mlua used outside the glue: $bad"; status=1; }
bad=$(grep -ln "urn:\|jabber:" src/*.rs | grep -v "src/ns.rs" | while read -r f; do
	# tests may spell out the XEPs' example stanzas
	sed -e '/#\[cfg(test)\]/,$d' -e '/^[[:space:]]*\/\//d' "$f" | grep -q "urn:\|jabber:" && echo "$f"; done)
[ -z "$bad" ] || { echo "namespace literals outside ns.rs: $bad"; status=1; }
exit $status
