//! The per-stanza and per-registration calls as plain Lua C functions, with the same
//! contracts the userdata methods had:
//! - preauth (SPEC §4.2, XEP-0401 §4 / XEP-0445): `preauth(stanza, ip, secure, same_host)`
//!   and `preauth_finish(token, ip, record, err)`;
//! - registration (SPEC §4.3): `lookup_token(invite)`, `registering(invite, username,
//!   refused, record)`, `claim(invite)`, `settle(invite, handle)`, `release(invite, handle)`.
//!
//! Why not mlua callbacks: each of these runs once per stanza or registration, between a
//! parse, password hashing and file I/O that evict the caches. Cold, an mlua call that
//! reads an invite and its record cost 9–18 µs (`make bench-native`, cold column), and
//! with six of them an invited registration cost 2–5 % more server CPU than stock's pure
//! Lua (`bench/README.md`). These functions read Prosody's stanza, the session's invite
//! and mod_invites' record with raw gets, keep every constant Lua string they answer with
//! as an upvalue, and call Lua (nodeprep) only through `lua_pcall`.
//!
//! No `longjmp` may skip a Rust frame that owns something: every Lua API call that can
//! raise (allocating a string, calling Lua) happens while only plain data (`Copy` values,
//! fixed-size buffers) is alive, and the Rust work runs inside `catch_unwind` (a panic
//! refuses, failing closed).

use std::ffi::{c_char, c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;
use std::time::Instant;

use mlua::ffi::{self, lua_State};
use parking_lot::Mutex;

use crate::error::Error;
use crate::host::{Host, Origin};
use crate::invite::{Flag, Kind, Record, ValidInvite};
use crate::lua_api::now_s;
use crate::ns;
use crate::policy::{self, Decision, Presented};
use crate::stanza;
use crate::token;

/// The host's state, held by its userdata and shared with the functions.
#[derive(Clone)]
pub struct Shared {
    /// The host's throttle, ledger and settings.
    pub host: Arc<Mutex<Host>>,
    /// Origin of the millisecond clock (the userdata's).
    pub epoch: Instant,
    /// `module.host`: invites validated by this host carry it.
    pub name: String,
}

/// Claims for front-end invites without a known expiry are remembered this long, s.
pub const FOREIGN_EXPIRY_S: i64 = 7 * 86_400;

/// The table keys read here (stanza, invite object and mod_invites record fields).
pub const KEYS: [&str; 14] = [
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
    "host",
    "_record",
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
    Host,
    Record,
}

/// The refusals a preauth can end in: a (type, condition, text) triple each.
pub const PREAUTH_REFUSALS: [Error; 5] = [
    Error::TokenInvalid,
    Error::EncryptionRequired,
    Error::Throttled,
    Error::WrongHost,
    Error::BadRequest,
];

/// The refusals of a registration: a (code, text) pair each.
pub const REGISTRATION_REFUSALS: [Error; 4] = [
    Error::NoInvite,
    Error::TokenUsed,
    Error::WrongUsername,
    Error::WrongResetUsername,
];

/// Upvalues: 1 the [`Shared`] userdata, 2 nodeprep, then [`KEYS`], the preauth triples
/// and the registration pairs.
const UP_SHARED: c_int = 1;
const UP_NODEPREP: c_int = 2;
const UP_KEYS: c_int = 3;
const UP_PREAUTH: c_int = UP_KEYS + KEYS.len() as c_int;
const UP_REGISTRATION: c_int = UP_PREAUTH + 3 * PREAUTH_REFUSALS.len() as c_int;
const N_UPVALUES: c_int = UP_REGISTRATION + 2 * REGISTRATION_REFUSALS.len() as c_int - 1;

/// Longest name copied out for Lua (XMPP localparts are at most 1023 bytes).
const MAX_NAME: usize = 1023;

/// A name copied out of Rust-owned strings before Lua may raise.
struct Name {
    buf: [u8; MAX_NAME],
    len: usize,
}

impl Name {
    /// `None` when longer than [`MAX_NAME`].
    fn copy(s: &str) -> Option<Name> {
        let mut buf = [0u8; MAX_NAME];
        buf.get_mut(..s.len())?.copy_from_slice(s.as_bytes());
        Some(Name { buf, len: s.len() })
    }

    unsafe fn push(&self, state: *mut lua_State) {
        ffi::lua_pushlstring(state, self.buf.as_ptr().cast::<c_char>(), self.len);
    }
}

/// The functions, by the names the plugin uses.
const FUNCTIONS: [(&CStr, ffi::lua_CFunction); 8] = [
    (c"preauth", preauth),
    (c"preauth_finish", preauth_finish),
    (c"lookup_token", lookup_token),
    (c"registering", registering),
    (c"claim", claim),
    (c"settle", settle),
    (c"release", release),
    (c"kind", kind),
];

/// Pushes a table of the functions over `shared`, taking the nodeprep function from
/// `nodeprep` (an absolute stack index, removed). Runs inside a protected call
/// (`Lua::exec_raw`), where allocation errors are caught.
///
/// # Safety
/// `state` is a valid Lua state; `nodeprep` is a valid absolute index.
pub unsafe fn push_functions(state: *mut lua_State, shared: Shared, nodeprep: c_int) {
    ffi::luaL_checkstack(state, N_UPVALUES + 4, ptr::null());
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
    ffi::lua_createtable(state, 0, FUNCTIONS.len() as c_int);
    for (name, f) in FUNCTIONS {
        ffi::lua_pushvalue(state, ud_index);
        ffi::lua_pushvalue(state, nodeprep);
        for k in KEYS {
            push_str(state, k);
        }
        for e in PREAUTH_REFUSALS {
            let (kind, condition) = stanza::error_condition(e);
            for s in [kind.as_str(), condition.as_str(), e.text()] {
                push_str(state, s);
            }
        }
        for e in REGISTRATION_REFUSALS {
            push_str(state, e.code());
            push_str(state, e.text());
        }
        ffi::lua_pushcclosure(state, f, N_UPVALUES);
        ffi::lua_setfield(state, -2, name.as_ptr());
    }
    // Leaves the table alone: removes the userdata and the nodeprep function.
    ffi::lua_remove(state, ud_index);
    ffi::lua_remove(state, nodeprep);
}

unsafe fn push_str(state: *mut lua_State, s: &str) {
    ffi::lua_pushlstring(state, s.as_ptr().cast::<c_char>(), s.len());
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
    let ud = ffi::lua_touserdata(state, ffi::lua_upvalueindex(UP_SHARED)) as *const Option<Shared>;
    if ud.is_null() {
        None
    } else {
        (*ud).as_ref()
    }
}

impl Shared {
    /// Milliseconds since the state was made.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
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

/// Runs `f`; a panic counts as `None` (fail closed) instead of unwinding into Lua.
fn guarded<T>(f: impl FnOnce() -> Option<T>) -> Option<T> {
    catch_unwind(AssertUnwindSafe(f)).ok().flatten()
}

/// Pushes `t[key]` (raw) for the table at `t` and returns its type.
unsafe fn get(state: *mut lua_State, t: c_int, key: Key) -> c_int {
    ffi::lua_pushvalue(state, ffi::lua_upvalueindex(UP_KEYS + key as c_int));
    ffi::lua_rawget(state, if t < 0 { t - 1 } else { t })
}

/// `t[key]` as an owned string (UTF-8 only), popping it again.
unsafe fn get_string(state: *mut lua_State, t: c_int, key: Key) -> Option<String> {
    get(state, t, key);
    let s = utf8(str_at(state, -1)).map(str::to_owned);
    ffi::lua_pop(state, 1);
    s
}

/// `t[key]` is neither nil nor false.
unsafe fn get_truthy(state: *mut lua_State, t: c_int, key: Key) -> bool {
    get(state, t, key);
    let truthy = ffi::lua_toboolean(state, -1) != 0;
    ffi::lua_pop(state, 1);
    truthy
}

/// Pushes nil, type, condition, text for a preauth refusal: 4 results.
unsafe fn push_preauth_refusal(state: *mut lua_State, e: Error) -> c_int {
    let i = PREAUTH_REFUSALS.iter().position(|r| *r == e).unwrap_or(0) as c_int;
    ffi::lua_pushnil(state);
    for j in 0..3 {
        ffi::lua_pushvalue(state, ffi::lua_upvalueindex(UP_PREAUTH + 3 * i + j));
    }
    4
}

/// Upvalue number of the code of registration refusal `e` (its text follows); an error
/// outside [`REGISTRATION_REFUSALS`] answers as token-used.
fn registration_upvalue(e: Error) -> c_int {
    let i = REGISTRATION_REFUSALS
        .iter()
        .position(|r| *r == e)
        .unwrap_or(1) as c_int;
    UP_REGISTRATION + 2 * i
}

/// Pushes nil, code, text for a registration refusal: 3 results.
unsafe fn push_registration_refusal(state: *mut lua_State, e: Error) -> c_int {
    let code = registration_upvalue(e);
    ffi::lua_pushnil(state);
    for j in 0..2 {
        ffi::lua_pushvalue(state, ffi::lua_upvalueindex(code + j));
    }
    3
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
            let is_pars = str_at(state, -1) == Some(ns::PARS.as_bytes());
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
        return push_preauth_refusal(state, Error::BadRequest);
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let shared = shared(state).ok_or(Error::TokenInvalid)?;
        let origin = Origin {
            ip: utf8(str_at(state, 2)),
            secure: ffi::lua_toboolean(state, 3) != 0,
            same_host: ffi::lua_toboolean(state, 4) != 0,
        };
        let token = utf8(str_at(state, 5));
        let now_ms = shared.now_ms();
        shared.host.lock().preauth_begin(token, origin, now_ms)
    }))
    .unwrap_or(Err(Error::TokenInvalid));
    match outcome {
        Ok(()) => 1,
        Err(e) => push_preauth_refusal(state, e),
    }
}

/// Decodes the mod_invites host record at the absolute index `t`; never fails on odd
/// shapes (they just don't validate).
unsafe fn decode_record(state: *mut lua_State, t: c_int) -> Record {
    let kind = get_string(state, t, Key::Type);
    let jid = get_string(state, t, Key::Jid);
    let allow_registration = match get(state, t, Key::AllowRegistration) {
        ffi::LUA_TNIL => Flag::Absent,
        ffi::LUA_TBOOLEAN if ffi::lua_toboolean(state, -1) == 0 => Flag::False,
        _ => Flag::Truthy,
    };
    ffi::lua_pop(state, 1);
    let expires = match get(state, t, Key::Expires) {
        ffi::LUA_TNUMBER => Some(ffi::lua_tonumber(state, -1)),
        _ => None,
    };
    ffi::lua_pop(state, 1);
    let reusable = get_truthy(state, t, Key::Reusable);
    let allow_reset = if get(state, t, Key::AdditionalData) == ffi::LUA_TTABLE {
        get_string(state, -1, Key::AllowReset)
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
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let shared = shared(state).ok_or(Error::TokenInvalid)?;
        let token = utf8(str_at(state, 1)).ok_or(Error::TokenInvalid)?;
        let ip = utf8(str_at(state, 2));
        let record = if ffi::lua_toboolean(state, 4) != 0 {
            Err(())
        } else if ffi::lua_type(state, 3) == ffi::LUA_TTABLE {
            Ok(Some(decode_record(state, 3)))
        } else {
            Ok(None)
        };
        let now_ms = shared.now_ms();
        let valid = shared.host.lock().preauth_finish(
            token,
            record.as_ref().map(Option::as_ref).map_err(|_| ()),
            ip,
            now_ms,
            now_s(),
        )?;
        match valid.inviter {
            Some(name) => Name::copy(&name).map(Some).ok_or(Error::TokenInvalid),
            None => Ok(None),
        }
    }))
    .unwrap_or(Err(Error::TokenInvalid));
    // Only plain data is alive: pushing may raise (out of memory).
    match outcome {
        Ok(inviter) => {
            ffi::lua_pushboolean(state, 1);
            match inviter {
                Some(name) => name.push(state),
                None => ffi::lua_pushnil(state),
            }
            2
        }
        Err(e) => push_preauth_refusal(state, e),
    }
}

/// Where an invite object presented at registration comes from.
enum Source {
    /// This module's preauth on this host: the record read then, validated again
    /// without expiry (XEP-0445 never re-checks it).
    Ours(ValidInvite),
    /// This module's preauth on another host, or not an invite object: no invite here.
    OtherHost,
    /// A front-end's object (mod_invites' own): judged by its re-read record.
    FrontEnd,
}

/// Tells this module's invites (they carry the `_record` read at preauth and the `host`
/// that validated it) from a front-end's, for the invite at absolute index `t`.
unsafe fn source(state: *mut lua_State, shared: &Shared, t: c_int) -> Source {
    if ffi::lua_type(state, t) != ffi::LUA_TTABLE {
        return Source::OtherHost;
    }
    if get(state, t, Key::Record) != ffi::LUA_TTABLE {
        ffi::lua_pop(state, 1);
        return Source::FrontEnd;
    }
    let record = ffi::lua_gettop(state);
    get(state, t, Key::Host);
    let same_host = str_at(state, -1) == Some(shared.name.as_bytes());
    ffi::lua_pop(state, 1);
    let out = if same_host {
        let token = get_string(state, t, Key::Token).unwrap_or_default();
        match decode_record(state, record).validate(&token, None) {
            Ok(v) => Source::Ours(v),
            Err(_) => Source::OtherHost,
        }
    } else {
        Source::OtherHost
    };
    ffi::lua_pop(state, 1);
    out
}

/// The token, reusability and expiry of the invite at `t` (ours or a front-end's).
unsafe fn invite_facts(
    state: *mut lua_State,
    shared: &Shared,
    t: c_int,
) -> Option<(String, bool, i64)> {
    match source(state, shared, t) {
        Source::Ours(v) => Some((v.token, v.reusable, v.expires)),
        Source::OtherHost => None,
        Source::FrontEnd => {
            let token = get_string(state, t, Key::Token)?;
            let reusable = get_truthy(state, t, Key::Reusable);
            Some((token, reusable, now_s() + FOREIGN_EXPIRY_S))
        }
    }
}

/// `lookup_token(invite)` → the token of a front-end invite whose record must be re-read,
/// else nil.
unsafe extern "C-unwind" fn lookup_token(state: *mut lua_State) -> c_int {
    ffi::lua_settop(state, 1);
    let front_end = guarded(|| Some(matches!(source(state, shared(state)?, 1), Source::FrontEnd)))
        .unwrap_or(false);
    if !front_end {
        return 0;
    }
    get(state, 1, Key::Token);
    if utf8(str_at(state, -1)).is_some_and(token::is_lookup_candidate) {
        1
    } else {
        0
    }
}

/// What `registering` found before any nodeprep: the invite's state and the names to
/// normalise, copied out as plain data.
// Boxing the names would put a value that needs dropping on the stack while Lua runs.
#[allow(clippy::large_enum_variant)]
enum Presentation {
    /// No invite for this host.
    None,
    /// A front-end invite without a valid record any more.
    Gone,
    /// A usable (or used) invite.
    Valid {
        used: bool,
        bound: Option<Name>,
        reset: Option<Name>,
    },
}

/// Pushes nodeprep(name), or `failed` (nil, or "" which no nodeprepped username
/// equals) if nodeprep fails or raises. May raise only on memory errors.
unsafe fn push_nodeprep(state: *mut lua_State, push_arg: impl FnOnce(), failed: Option<&str>) {
    ffi::lua_pushvalue(state, ffi::lua_upvalueindex(UP_NODEPREP));
    push_arg();
    if ffi::lua_pcall(state, 1, 1, 0) != ffi::LUA_OK || ffi::lua_type(state, -1) != ffi::LUA_TSTRING
    {
        ffi::lua_pop(state, 1);
        match failed {
            Some(s) => push_str(state, s),
            None => ffi::lua_pushnil(state),
        }
    }
}

/// What `registering` answers, as plain data.
enum Verdict {
    /// true (allowed) or false (no opinion).
    Opinion(bool),
    /// Allowed as a reset of the (normalised) reset user.
    Reset,
    /// nil, code, reason.
    Refuse(Error),
}

/// `registering(invite, username, refused, record)` → true | reset-username | false (no
/// opinion) | nil, code, reason. SPEC §4.3: the invite's state, binding and reset user
/// ([`policy::decide`]). `record` is the re-read record of a front-end invite.
unsafe extern "C-unwind" fn registering(state: *mut lua_State) -> c_int {
    ffi::lua_settop(state, 4);
    let refused = ffi::lua_toboolean(state, 3) != 0;
    let found = catch_unwind(AssertUnwindSafe(|| {
        let shared = shared(state)?;
        let invite_only = shared.host.lock().config.invite_only;
        let now_ms = shared.now_ms();
        let now = now_s();
        let valid = match source(state, shared, 1) {
            Source::Ours(v) => v,
            Source::OtherHost => return Some((invite_only, Presentation::None)),
            Source::FrontEnd => {
                let token = get_string(state, 1, Key::Token).unwrap_or_default();
                let valid = if ffi::lua_type(state, 4) == ffi::LUA_TTABLE {
                    decode_record(state, 4).validate(&token, None).ok()
                } else {
                    None
                };
                match valid {
                    Some(v) => v,
                    None => return Some((invite_only, Presentation::Gone)),
                }
            }
        };
        let used = shared
            .host
            .lock()
            .ledger
            .is_used(&valid.token, valid.reusable, now_ms, now);
        // A name too long for any localpart can't match a nodeprepped username.
        let copy = |s: &Option<String>| {
            s.as_deref().map(|s| {
                Name::copy(s).unwrap_or(Name {
                    buf: [0; MAX_NAME],
                    len: 0,
                })
            })
        };
        Some((
            invite_only,
            Presentation::Valid {
                used,
                bound: copy(&valid.bound),
                reset: copy(&valid.allow_reset),
            },
        ))
    }));
    let Ok(Some((invite_only, presentation))) = found else {
        return push_registration_refusal(state, Error::TokenUsed);
    };
    // Only plain data is alive: nodeprep runs Lua. Slots 5 bound, 6 reset ("" when
    // nodeprep fails), 7 username (nil when it fails), each nil when not needed.
    let (used, has_bound, has_reset) = match &presentation {
        Presentation::Valid { used, bound, reset } => (*used, bound.is_some(), reset.is_some()),
        _ => (false, false, false),
    };
    if let Presentation::Valid { bound, reset, .. } = &presentation {
        for name in [bound, reset] {
            match name {
                Some(n) => push_nodeprep(state, || n.push(state), Some("")),
                None => ffi::lua_pushnil(state),
            }
        }
        if has_bound || has_reset {
            push_nodeprep(state, || ffi::lua_pushvalue(state, 2), None);
        } else {
            ffi::lua_pushnil(state);
        }
    }
    let decision = catch_unwind(AssertUnwindSafe(|| {
        let name_at = |slot: c_int| utf8(str_at(state, slot)).unwrap_or_default();
        let presented = match presentation {
            Presentation::None => None,
            Presentation::Gone => Some(Err(Error::TokenUsed)),
            Presentation::Valid { .. } => Some(Ok(Presented {
                used,
                bound: has_bound.then(|| name_at(5)),
                reset: has_reset.then(|| name_at(6)),
            })),
        };
        let username = if has_bound || has_reset {
            utf8(str_at(state, 7))
        } else {
            None
        };
        match policy::decide(invite_only, refused, presented, username) {
            Decision::NoOpinion => Verdict::Opinion(false),
            Decision::Allow { allow_reset: None } => Verdict::Opinion(true),
            Decision::Allow {
                allow_reset: Some(_),
            } => Verdict::Reset,
            Decision::Refuse(e) => Verdict::Refuse(e),
        }
    }))
    .unwrap_or(Verdict::Refuse(Error::TokenUsed));
    match decision {
        Verdict::Opinion(allowed) => {
            ffi::lua_pushboolean(state, c_int::from(allowed));
            1
        }
        Verdict::Reset => {
            // The normalised reset user, already on the stack.
            ffi::lua_pushvalue(state, 6);
            1
        }
        Verdict::Refuse(e) => push_registration_refusal(state, e),
    }
}

/// `claim(invite)` → handle | nothing (nothing to claim) | nil, "token-used". Claims a
/// single-use token for the registration in progress.
unsafe extern "C-unwind" fn claim(state: *mut lua_State) -> c_int {
    ffi::lua_settop(state, 1);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let shared = shared(state).ok_or(Error::TokenUsed)?;
        let Some((token, reusable, expires)) = invite_facts(state, shared, 1) else {
            return Ok(None);
        };
        if reusable {
            return Ok(None);
        }
        let handle = token::generate(&mut rand::rng());
        let copy = Name::copy(&handle).ok_or(Error::TokenUsed)?;
        let now_ms = shared.now_ms();
        shared
            .host
            .lock()
            .ledger
            .claim(&token, handle, expires, now_ms)?;
        Ok(Some(copy))
    }))
    .unwrap_or(Err(Error::TokenUsed));
    match outcome {
        Ok(Some(handle)) => {
            handle.push(state);
            1
        }
        Ok(None) => 0,
        Err(e) => {
            ffi::lua_pushnil(state);
            ffi::lua_pushvalue(state, ffi::lua_upvalueindex(registration_upvalue(e)));
            2
        }
    }
}

/// `settle(invite, handle)` → true when this registration should act on the invite
/// (consume it): the claim `handle` holds it, or it is reusable.
unsafe extern "C-unwind" fn settle(state: *mut lua_State) -> c_int {
    ffi::lua_settop(state, 2);
    let settled = guarded(|| {
        let shared = shared(state)?;
        let (token, reusable, _) = invite_facts(state, shared, 1)?;
        if reusable {
            return Some(true);
        }
        let handle = utf8(str_at(state, 2))?;
        Some(shared.host.lock().ledger.settle(&token, handle, now_s()))
    })
    .unwrap_or(false);
    ffi::lua_pushboolean(state, c_int::from(settled));
    1
}

/// `release(invite, handle)` → true when a claim was given back.
unsafe extern "C-unwind" fn release(state: *mut lua_State) -> c_int {
    ffi::lua_settop(state, 2);
    let released = guarded(|| {
        let shared = shared(state)?;
        let (token, _, _) = invite_facts(state, shared, 1)?;
        let handle = utf8(str_at(state, 2))?;
        Some(shared.host.lock().ledger.release(&token, handle))
    })
    .unwrap_or(false);
    ffi::lua_pushboolean(state, c_int::from(released));
    1
}

/// `kind(invite)` → "register" | "roster" for an invite this host validated, else nil.
unsafe extern "C-unwind" fn kind(state: *mut lua_State) -> c_int {
    ffi::lua_settop(state, 1);
    let kind = guarded(|| match source(state, shared(state)?, 1) {
        Source::Ours(v) => Some(v.kind),
        _ => None,
    });
    match kind {
        Some(Kind::Register) => push_str(state, "register"),
        Some(Kind::Roster) => push_str(state, "roster"),
        None => return 0,
    }
    1
}
