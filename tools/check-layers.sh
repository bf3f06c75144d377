#!/bin/sh
# Keeps the layers honest (STYLE.md): mlua only in the glue (src/lua_api.rs) and the entry
# point (src/lib.rs); no unsafe code and no raw Lua C API anywhere (src/lib.rs forbids
# unsafe code; this also catches `unsafe` in a file that slipped out of the crate).
status=0
bad=$(grep -ln "mlua" src/*.rs | grep -v -e "src/lua_api.rs" -e "src/lib.rs")
[ -z "$bad" ] || { echo "mlua used outside the glue: $bad"; status=1; }
bad=$(grep -n "unsafe" src/*.rs | grep -v "^src/lib.rs:[0-9]*:#!\[forbid(unsafe_code)\]")
[ -z "$bad" ] || { echo "unsafe code: $bad"; status=1; }
bad=$(grep -rn "ffi::\|lua_State\|exec_raw" src/)
[ -z "$bad" ] || { echo "raw Lua C API: $bad"; status=1; }
grep -q "^#!\[forbid(unsafe_code)\]" src/lib.rs || { echo "src/lib.rs must forbid unsafe code"; status=1; }
exit $status
