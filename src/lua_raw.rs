//! The preauth hot path (SPEC §4.2, XEP-0401 §4 / XEP-0445) as two plain Lua C functions,
//! `preauth(stanza, ip, secure, same_host)` and `preauth_finish(token, ip, record, err)`,
//! with the same contract as the userdata methods they replace.
//!
//! Why not mlua callbacks: a preauth IQ runs both once, between a parse and a send that
//! evict the caches, and there mlua's callback path (failure preallocation, userdata
//! borrow, argument refs in its ref thread, result vector) cost ~10 µs of server CPU per
//! preauth, more than stock's whole handler logic (`bench/profile.py`). These functions
//! read Prosody's stanza and mod_invites' record with raw gets, keep every constant Lua
//! string they need as an upvalue, and push nothing that allocates except a roster
//! invite's inviter. So nothing here raises a Lua error while a Rust value that needs
//! dropping is alive: no Rust frame is ever skipped by a `longjmp`.

use std::ffi::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;
use std::time::Instant;

use mlua::ffi::{self, lua_State};
use parking_lot::Mutex;

use crate::error::Error;
use crate::host::{Host, Origin};
use crate::invite::{Flag, Record};
use crate::stanza;

/// What the two functions share with the host's userdata.
pub struct Shared {
    /// The host's throttle, ledger and settings.
    pub host: Arc<Mutex<Host>>,
    /// Origin of the millisecond clock (the userdata's).
    pub epoch: Instant,
}

/// The table keys read here (stanza and mod_invites record fields). Upvalue 1 is the
/// [`Shared`] userdata; these keys follow, then a (type, condition, text) triple per
/// refusal.
pub const KEYS: [&str; 12] = [
    "tags",
    "name",
    "attr",
    "xmlns",
    "token",
    "type",
    "jid",
    "allow_registration",
    "expires",
    "reusable",
    "additional_data",
    "allow_reset",
];

/// Index of a key in [`KEYS`].
#[derive(Clone, Copy)]
enum Key {
    Tags,
    Name,
    Attr,
    Xmlns,
    Token,
    Type,
    Jid,
    AllowRegistration,
    Expires,
    Reusable,
    AdditionalData,
    AllowReset,
}

/// The refusals a preauth can end in, in upvalue order.
pub const REFUSALS: [Error; 5] = [
    Error::TokenInvalid,
    Error::EncryptionRequired,
    Error::Throttled,
    Error::WrongHost,
    Error::BadRequest,
];

/// Longest inviter name pushed back (XMPP localparts are at most 1023 bytes).
const MAX_INVITER: usize = 1023;

fn key_upvalue(k: Key) -> c_int {
    ffi::lua_upvalueindex(2 + k as c_int)
}

/// Upvalue number (not pseudo-index) of the first string of `e`'s triple.
fn refusal_upvalue(e: Error) -> c_int {
    let i = REFUSALS.iter().position(|r| *r == e).unwrap_or(0);
    2 + KEYS.len() as c_int + 3 * i as c_int
}

/// Pushes the two functions (preauth, preauth_finish) for `shared`. Runs inside a
/// protected call (`Lua::exec_raw`): allocation errors are caught there.
///
/// # Safety
/// `state` is a valid Lua state with room for 4 + the upvalues' worth of stack.
pub unsafe fn push_functions(state: *mut lua_State, shared: Shared) {
    let nup = 1 + KEYS.len() as c_int + 3 * REFUSALS.len() as c_int;
    ffi::luaL_checkstack(state, nup + 4, ptr::null());
    // The userdata owning `shared`, dropped by __gc.
    let ud =
        ffi::lua_newuserdata(state, std::mem::size_of::<Option<Shared>>()) as *mut Option<Shared>;
    ptr::write(ud, Some(shared));
    ffi::lua_createtable(state, 0, 2);
    ffi::lua_pushcfunction(state, drop_shared);
    ffi::lua_setfield(state, -2, c"__gc".as_ptr());
    ffi::lua_pushboolean(state, 0);
    ffi::lua_setfield(state, -2, c"__metatable".as_ptr());
    ffi::lua_setmetatable(state, -2);
    let ud_index = ffi::lua_gettop(state);
    for f in [preauth as ffi::lua_CFunction, preauth_finish] {
        ffi::lua_pushvalue(state, ud_index);
        for k in KEYS {
            ffi::lua_pushlstring(state, k.as_ptr().cast(), k.len());
        }
        for e in REFUSALS {
            let (kind, condition) = stanza::error_condition(e);
            for s in [kind.as_str(), condition.as_str(), e.text()] {
                ffi::lua_pushlstring(state, s.as_ptr().cast(), s.len());
            }
        }
        ffi::lua_pushcclosure(state, f, nup);
    }
    // Leaves preauth, preauth_finish.
    ffi::lua_remove(state, ud_index);
}

unsafe extern "C-unwind" fn drop_shared(state: *mut lua_State) -> c_int {
    let ud = ffi::lua_touserdata(state, 1) as *mut Option<Shared>;
    if !ud.is_null() {
        // take(): a second __gc call (through the debug library) finds None.
        drop((*ud).take());
    }
    0
}

/// The [`Shared`] of the running closure, if not yet collected.
unsafe fn shared<'a>(state: *mut lua_State) -> Option<&'a Shared> {
    let ud = ffi::lua_touserdata(state, ffi::lua_upvalueindex(1)) as *const Option<Shared>;
    if ud.is_null() {
        None
    } else {
        (*ud).as_ref()
    }
}

/// The string at `idx` (no conversion of numbers), if it is one.
unsafe fn str_at<'a>(state: *mut lua_State, idx: c_int) -> Option<&'a [u8]> {
    if ffi::lua_type(state, idx) != ffi::LUA_TSTRING {
        return None;
    }
    let mut len = 0usize;
    let p = ffi::lua_tolstring(state, idx, &mut len);
    if p.is_null() {
        return None;
    }
    Some(std::slice::from_raw_parts(p.cast::<u8>(), len))
}

fn utf8(b: Option<&[u8]>) -> Option<&str> {
    b.and_then(|b| std::str::from_utf8(b).ok())
}

/// Pushes `t[key]` (raw) for the table at `t` and returns its type.
unsafe fn get(state: *mut lua_State, t: c_int, key: Key) -> c_int {
    ffi::lua_pushvalue(state, key_upvalue(key));
    ffi::lua_rawget(state, if t < 0 { t - 1 } else { t })
}

/// Pushes nil, type, condition, text for `e`: 4 results.
unsafe fn push_refusal(state: *mut lua_State, e: Error) -> c_int {
    let first = refusal_upvalue(e);
    ffi::lua_pushnil(state);
    for i in 0..3 {
        ffi::lua_pushvalue(state, ffi::lua_upvalueindex(first + i));
    }
    4
}

/// Leaves the token attribute of a `{urn:xmpp:pars:0}preauth` first child of the stanza
/// at index 1 on top of the stack and returns true; false (stack unchanged) otherwise.
unsafe fn push_preauth_token(state: *mut lua_State) -> bool {
    let top = ffi::lua_gettop(state);
    let found = ffi::lua_type(state, 1) == ffi::LUA_TTABLE
        && get(state, 1, Key::Tags) == ffi::LUA_TTABLE
        && ffi::lua_rawgeti(state, -1, 1) == ffi::LUA_TTABLE
        && {
            get(state, -1, Key::Name);
            let is_preauth = str_at(state, -1) == Some(b"preauth".as_slice());
            ffi::lua_pop(state, 1);
            is_preauth
        }
        && get(state, -1, Key::Attr) == ffi::LUA_TTABLE
        && {
            get(state, -1, Key::Xmlns);
            let is_pars = str_at(state, -1) == Some(crate::ns::PARS.as_bytes());
            ffi::lua_pop(state, 1);
            is_pars
        };
    if !found {
        ffi::lua_settop(state, top);
        return false;
    }
    get(state, -1, Key::Token);
    ffi::lua_replace(state, top + 1);
    ffi::lua_settop(state, top + 1);
    true
}

/// `preauth(stanza, ip, secure, same_host)` → the token to look up | nil, type,
/// condition, text. Steps 1–4 of SPEC §4.2 (no storage).
unsafe extern "C-unwind" fn preauth(state: *mut lua_State) -> c_int {
    ffi::lua_settop(state, 4);
    if !push_preauth_token(state) {
        return push_refusal(state, Error::BadRequest);
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let shared = shared(state).ok_or(Error::TokenInvalid)?;
        let origin = Origin {
            ip: utf8(str_at(state, 2)),
            secure: ffi::lua_toboolean(state, 3) != 0,
            same_host: ffi::lua_toboolean(state, 4) != 0,
        };
        let token = utf8(str_at(state, 5));
        let now_ms = shared.epoch.elapsed().as_millis() as u64;
        shared.host.lock().preauth_begin(token, origin, now_ms)
    }))
    .unwrap_or(Err(Error::TokenInvalid));
    match outcome {
        Ok(()) => 1,
        Err(e) => push_refusal(state, e),
    }
}

/// Decodes the mod_invites record at index 3 (see `lua_api::decode_record`).
unsafe fn decode_record(state: *mut lua_State) -> Record {
    let string_field = |key: Key| -> Option<String> {
        get(state, 3, key);
        let s = utf8(str_at(state, -1)).map(str::to_owned);
        ffi::lua_pop(state, 1);
        s
    };
    let kind = string_field(Key::Type);
    let jid = string_field(Key::Jid);
    let allow_registration = match get(state, 3, Key::AllowRegistration) {
        ffi::LUA_TNIL => Flag::Absent,
        ffi::LUA_TBOOLEAN if ffi::lua_toboolean(state, -1) == 0 => Flag::False,
        _ => Flag::Truthy,
    };
    ffi::lua_pop(state, 1);
    let expires = match get(state, 3, Key::Expires) {
        ffi::LUA_TNUMBER => Some(ffi::lua_tonumber(state, -1)),
        _ => None,
    };
    ffi::lua_pop(state, 1);
    get(state, 3, Key::Reusable);
    let reusable = ffi::lua_toboolean(state, -1) != 0;
    ffi::lua_pop(state, 1);
    let allow_reset = if get(state, 3, Key::AdditionalData) == ffi::LUA_TTABLE {
        get(state, -1, Key::AllowReset);
        let s = utf8(str_at(state, -1)).map(str::to_owned);
        ffi::lua_pop(state, 1);
        s
    } else {
        None
    };
    ffi::lua_pop(state, 1);
    Record {
        kind,
        jid,
        allow_registration,
        expires,
        reusable,
        allow_reset,
    }
}

/// `preauth_finish(token, ip, record, err)` → true, inviter-or-nil | nil, type,
/// condition, text. Steps 4–5 of SPEC §4.2: judges the record read by the plugin.
unsafe extern "C-unwind" fn preauth_finish(state: *mut lua_State) -> c_int {
    ffi::lua_settop(state, 4);
    let mut inviter = [0u8; MAX_INVITER];
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let shared = shared(state).ok_or(Error::TokenInvalid)?;
        let token = utf8(str_at(state, 1)).ok_or(Error::TokenInvalid)?;
        let ip = utf8(str_at(state, 2));
        let record = if ffi::lua_toboolean(state, 4) != 0 {
            Err(())
        } else if ffi::lua_type(state, 3) == ffi::LUA_TTABLE {
            Ok(Some(decode_record(state)))
        } else {
            Ok(None)
        };
        let now_ms = shared.epoch.elapsed().as_millis() as u64;
        let valid = shared.host.lock().preauth_finish(
            token,
            record.as_ref().map(Option::as_ref).map_err(|_| ()),
            ip,
            now_ms,
            crate::lua_api::now_s(),
        )?;
        match valid.inviter {
            Some(name) if name.len() > MAX_INVITER => Err(Error::TokenInvalid),
            Some(name) => {
                inviter[..name.len()].copy_from_slice(name.as_bytes());
                Ok(Some(name.len()))
            }
            None => Ok(None),
        }
    }))
    .unwrap_or(Err(Error::TokenInvalid));
    // Every Rust value that needs dropping is gone: pushing may raise (out of memory).
    match outcome {
        Ok(inviter_len) => {
            ffi::lua_pushboolean(state, 1);
            match inviter_len {
                Some(n) => {
                    ffi::lua_pushlstring(state, inviter.as_ptr().cast::<c_char>(), n);
                }
                None => ffi::lua_pushnil(state),
            }
            2
        }
        Err(e) => push_refusal(state, e),
    }
}
