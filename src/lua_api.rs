//! All mlua code: the exports of `luaopen_invites_register`, the per-host state userdata
//! and conversions between Lua values (Prosody stanzas, mod_invites records and invite
//! objects) and the core types. Names follow Prosody's vocabulary; expected failures
//! return `nil, "kebab-code"`, misuse raises.
//!
//! Storage stays on the Lua side: Prosody storage drivers may yield inside a coroutine,
//! which cannot cross Rust frames, so the shim reads records and hands them in here.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mlua::{
    Function, Lua, LuaString, MultiValue, Result as LuaResult, Table, UserData, UserDataMethods,
    Value,
};
use parking_lot::Mutex;

use crate::host::{self, Config, Host, RawOption};
use crate::invite;
use crate::lua_raw;
use crate::ns;
use crate::policy::{self, Roles, Scalar};
use crate::stanza::{self, Element, Node};

/// Builds the exports table.
pub fn exports(lua: &Lua) -> LuaResult<Table> {
    let t = lua.create_table()?;
    t.set("new", lua.create_function(new_host)?)?;
    t.set("version", env!("CARGO_PKG_VERSION"))?;
    Ok(t)
}

/// Unix time, s.
pub(crate) fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Per-host state handed to the plugin: `native.new(config)`.
pub struct HostState {
    /// The host's throttle, ledger, settings and clock, shared with the C functions.
    shared: lua_raw::Shared,
    nodeprep: Function,
    stanza_mt: Table,
    /// Lua strings made once: creating a Lua string from Rust is a protected call
    /// (~700 instructions), the hot paths' main cost before (callgrind).
    strings: HashMap<&'static str, LuaString, BuildHasherDefault<Fnv>>,
}

/// FNV-1a: the interned keys are short, SipHash was a tenth of the hook's instructions.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

fn raw_option(v: Value) -> RawOption {
    match v {
        Value::Nil => RawOption::Unset,
        Value::Integer(i) => RawOption::Int(i),
        Value::Number(n) => RawOption::Float(n),
        Value::String(s) => RawOption::Str(s.to_string_lossy()),
        _ => RawOption::Other,
    }
}

fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Nil | Value::Boolean(false))
}

/// `native.new{ host=, invite_only=, require_encryption=, token_attempts=, nodeprep=,
/// stanza_mt= }` → state, warning-or-nil.
fn new_host(lua: &Lua, cfg: Table) -> LuaResult<(HostState, Option<String>)> {
    let (attempts, warning) = host::token_attempts(&raw_option(cfg.get("token_attempts")?));
    let config = Config {
        host: cfg.get("host")?,
        invite_only: truthy(&cfg.get("invite_only")?),
        require_encryption: truthy(&cfg.get("require_encryption")?),
        token_attempts: attempts,
    };
    let state = HostState {
        shared: lua_raw::Shared {
            name: config.host.clone(),
            host: Arc::new(Mutex::new(Host::new(config))),
            epoch: Instant::now(),
        },
        nodeprep: cfg.get("nodeprep")?,
        stanza_mt: cfg.get("stanza_mt")?,
        strings: interned(lua)?,
    };
    Ok((state, warning))
}

fn interned(lua: &Lua) -> LuaResult<HashMap<&'static str, LuaString, BuildHasherDefault<Fnv>>> {
    let mut strings = HashMap::with_capacity_and_hasher(lua_raw::KEYS.len(), Default::default());
    // The keys lua_raw reads are the ones read here too.
    for s in lua_raw::KEYS {
        strings.insert(s, lua.create_string(s)?);
    }
    Ok(strings)
}

/// True when `v` is the Lua string `want`.
fn is_str(v: &Value, want: &str) -> bool {
    matches!(v, Value::String(s) if s.as_bytes() == want.as_bytes())
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Number(n) => Some(*n),
        _ => None,
    }
}

fn to_scalar(v: &Value) -> Scalar {
    match v {
        Value::Integer(i) => Scalar::Int(*i),
        Value::Number(n) if n.fract() == 0.0 => Scalar::Int(*n as i64),
        Value::String(s) => s
            .to_str()
            .map(|s| Scalar::Str(s.to_owned()))
            .unwrap_or(Scalar::Other),
        Value::Boolean(true) => Scalar::True,
        _ => Scalar::Other,
    }
}

impl HostState {
    /// A Lua string for `s`: interned when known, else made now.
    fn s(&self, lua: &Lua, s: &str) -> LuaResult<LuaString> {
        match self.strings.get(s) {
            Some(v) => Ok(v.clone()),
            None => lua.create_string(s),
        }
    }

    /// The interned Lua string `key` (in [`lua_raw::KEYS`]); borrowed, so pushing it costs no
    /// reference churn.
    fn k(&self, key: &'static str) -> LuaResult<&LuaString> {
        self.strings
            .get(key)
            .ok_or_else(|| mlua::Error::runtime(format!("not interned: {key}")))
    }

    /// Field `key` of `t` (raw), by an interned key.
    fn field(&self, t: &Table, key: &'static str) -> LuaResult<Value> {
        t.raw_get(self.k(key)?)
    }

    /// The `token` attribute (any Lua value) of `child` when it is a
    /// `{urn:xmpp:pars:0}preauth` element of a Prosody stanza, else `None`.
    fn preauth_token(&self, child: &Value) -> LuaResult<Option<Value>> {
        let Value::Table(child) = child else {
            return Ok(None);
        };
        let Value::Table(attr) = self.field(child, "attr")? else {
            return Ok(None);
        };
        if !is_str(&self.field(child, "name")?, "preauth")
            || !is_str(&self.field(&attr, "xmlns")?, ns::PARS)
        {
            return Ok(None);
        }
        Ok(Some(self.field(&attr, "token")?))
    }

    /// The `token` of the first `{urn:xmpp:pars:0}preauth` child of a
    /// `<presence type='subscribe'>` (XEP-0379 §3), or nil.
    fn subscribe_token(&self, stanza: &Table) -> LuaResult<Value> {
        let (Value::Table(attr), Value::Table(tags)) =
            (self.field(stanza, "attr")?, self.field(stanza, "tags")?)
        else {
            return Ok(Value::Nil);
        };
        if !is_str(&self.field(&attr, "type")?, "subscribe") {
            return Ok(Value::Nil);
        }
        for child in tags.sequence_values::<Value>() {
            if let Some(token) = self.preauth_token(&child?)? {
                return Ok(match token {
                    Value::String(_) => token,
                    _ => Value::Nil,
                });
            }
        }
        Ok(Value::Nil)
    }

    /// Builds a `util.stanza` object from an [`Element`].
    fn to_stanza(&self, lua: &Lua, e: &Element) -> LuaResult<Table> {
        let attr = lua.create_table_with_capacity(0, e.attrs.len())?;
        for (k, v) in &e.attrs {
            attr.raw_set(self.s(lua, k)?, self.s(lua, v)?)?;
        }
        let tags = lua.create_table()?;
        let t = lua.create_table_with_capacity(e.children.len(), 3)?;
        t.raw_set(self.k("name")?, self.s(lua, &e.name)?)?;
        t.raw_set(self.k("attr")?, attr)?;
        for (i, child) in e.children.iter().enumerate() {
            match child {
                Node::Element(c) => {
                    let c = self.to_stanza(lua, c)?;
                    tags.raw_set(tags.raw_len() + 1, &c)?;
                    t.raw_set(i + 1, c)?;
                }
                Node::Text(s) => t.raw_set(i + 1, self.s(lua, s)?)?,
            }
        }
        t.raw_set(self.k("tags")?, tags)?;
        t.set_metatable(Some(self.stanza_mt.clone()))?;
        Ok(t)
    }
}

impl UserData for HostState {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // The two `register` stream features, built once at load.
        methods.add_method("features", |lua, this, ()| {
            let t = lua.create_table()?;
            for f in stanza::register_features() {
                t.raw_set(t.raw_len() + 1, this.to_stanza(lua, &f)?)?;
            }
            Ok(t)
        });

        // functions() → a table of plain C functions over this host's state, for the
        // calls made once per preauth IQ or registration (see lua_raw.rs):
        //   preauth(stanza, ip, secure, same_host) → token to look up | nil, type, condition, text
        //   preauth_finish(token, ip, record, err) → true, inviter-or-nil | nil, type, condition, text
        //   lookup_token(invite) → token of a front-end invite whose record must be re-read
        //   registering(invite, username, already_refused, record) →
        //     true | reset-username | false (no opinion) | nil, code, reason
        //   claim(invite) → handle | nothing (nothing to claim) | nil, "token-used"
        //   settle(invite, handle) → true when this registration should act on the invite
        //   release(invite, handle) → true when a claim was given back
        //   kind(invite) → "register" | "roster" for this module's invites (tests, logs)
        // On a valid preauth the plugin makes `session.validated_invite`, keeping the record.
        methods.add_method("functions", |lua, this, ()| {
            let shared = this.shared.clone();
            // SAFETY: push_functions only pushes values (one table) and runs inside the
            // protected call exec_raw sets up, with the nodeprep function at index 1.
            unsafe {
                lua.exec_raw::<Table>(this.nodeprep.clone(), move |state| {
                    lua_raw::push_functions(state, shared, 1)
                })
            }
        });

        // subscribe_token(stanza) → token of a XEP-0379 subscription request, or nil.
        // Reads Prosody's parsed stanza (its first {urn:xmpp:pars:0}preauth child); a
        // serialised stanza (string) is parsed with quick-xml. Prosody serialises `xml:*`
        // attributes with a prefix bound to the XML namespace, which namespace-aware parsers
        // must reject, so the plugin passes the parsed stanza.
        methods.add_method("subscribe_token", |lua, this, stanza: Value| match stanza {
            Value::Table(t) => this.subscribe_token(&t),
            Value::String(xml) => match stanza::parse_subscribe_token(&xml.to_str()?) {
                Ok(token) => Ok(Value::String(lua.create_string(token)?)),
                Err(_) => Ok(Value::Nil),
            },
            _ => Ok(Value::Nil),
        });

        // contact_valid(token, expires) → whether a contact-invite entry is usable
        methods.add_method(
            "contact_valid",
            |_, this, (token, expires): (String, Value)| {
                let now = now_s();
                let used = this.shared.host.lock().ledger.is_used(
                    &token,
                    false,
                    this.shared.now_ms(),
                    now,
                );
                Ok(!used && invite::contact_entry_valid(num(&expires), now))
            },
        );

        // consumed(token, expires) → remembers a token consumed outside a claim
        methods.add_method("consumed", |_, this, (token, expires): (String, Value)| {
            let now = now_s();
            let expires = num(&expires)
                .map(|e| e as i64)
                .unwrap_or(now + lua_raw::FOREIGN_EXPIRY_S);
            this.shared
                .host
                .lock()
                .ledger
                .mark_consumed(&token, expires, now);
            Ok(())
        });

        // roles(value) → "list"|"set", names | nil, "invalid-roles"
        methods.add_method("roles", |lua, _, roles: Value| {
            let mut out = MultiValue::new();
            let shape = match roles {
                Value::Table(t) => {
                    let mut entries = Vec::new();
                    for pair in t.pairs::<Value, Value>() {
                        let (k, v) = pair?;
                        entries.push((to_scalar(&k), to_scalar(&v)));
                    }
                    policy::classify_roles(&entries)
                }
                _ => Roles::Invalid,
            };
            let (kind, names) = match shape {
                Roles::List(n) => ("list", n),
                Roles::Set(n) => ("set", n),
                Roles::Invalid => {
                    out.push_back(Value::Nil);
                    out.push_back(Value::String(lua.create_string("invalid-roles")?));
                    return Ok(out);
                }
            };
            out.push_back(Value::String(lua.create_string(kind)?));
            out.push_back(Value::Table(lua.create_sequence_from(names)?));
            Ok(out)
        });

        // sweep() → drops expired claims, consumed entries and throttle windows (timer)
        methods.add_method("sweep", |_, this, ()| {
            let now = this.shared.now_ms();
            this.shared.host.lock().sweep(now, now_s());
            Ok(())
        });

        // stats() → { claims =, consumed =, throttled_addresses = }
        methods.add_method("stats", |lua, this, ()| {
            let h = this.shared.host.lock();
            let (claims, consumed) = h.ledger.sizes();
            let t = lua.create_table()?;
            t.set("claims", claims)?;
            t.set("consumed", consumed)?;
            t.set("throttled_addresses", h.throttled_addresses())?;
            Ok(t)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::lua_raw;

    /// `k()` raises for a key missing from [`lua_raw::KEYS`]; every literal key this file
    /// passes to `k()` or `field()` must be there.
    #[test]
    fn test_every_key_is_interned() {
        let all = include_str!("lua_api.rs");
        let src = &all[..all.rfind("#[cfg(test)]").unwrap_or(all.len())];
        let mut keys = Vec::new();
        for marker in ["k(\"", "field("] {
            for (at, _) in src.match_indices(marker) {
                let call = &src[at + marker.len()..];
                let call = &call[..call.find(')').unwrap_or(call.len())];
                let open = if marker == "k(\"" {
                    0
                } else {
                    match call.find('"') {
                        Some(q) => q + 1,
                        None => continue,
                    }
                };
                let lit = &call[open..];
                keys.push(lit[..lit.find('"').unwrap_or(lit.len())].to_owned());
            }
        }
        assert!(keys.len() > 5, "scan found {} keys", keys.len());
        for key in keys {
            assert!(
                lua_raw::KEYS.contains(&key.as_str()) || key == "kind",
                "not interned: {key}"
            );
        }
    }
}
