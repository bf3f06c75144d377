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

use crate::error::Error;
use crate::host::{self, Config, Host, RawOption};
use crate::invite::{self, Flag, Kind, Record, ValidInvite};
use crate::lua_raw;
use crate::ns;
use crate::policy::{self, Decision, Presented, Roles, Scalar};
use crate::stanza::{self, Element, Node};
use crate::token;

/// Claims for front-end invites without a known expiry are remembered this long, s.
const FOREIGN_EXPIRY_S: i64 = 7 * 86_400;

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
    name: String,
    host: Arc<Mutex<Host>>,
    nodeprep: Function,
    stanza_mt: Table,
    epoch: Instant,
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

/// Keys and constants the glue hands to Lua on a hot path, besides the table keys it
/// shares with [`lua_raw::KEYS`] (interned too).
const INTERNED: &[&str] = &["preauth", "host", "_record", ns::PARS];

/// Where an invite object presented at registration comes from.
enum Source {
    /// This module's preauth on this host: the record read then, validated again
    /// without expiry (XEP-0445 never re-checks it).
    Ours(ValidInvite),
    /// This module's preauth on another host: counts as no invite here.
    OtherHost,
    /// A front-end's object (mod_invites' own): judged by its re-read record.
    FrontEnd,
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
        name: config.host.clone(),
        host: Arc::new(Mutex::new(Host::new(config))),
        nodeprep: cfg.get("nodeprep")?,
        stanza_mt: cfg.get("stanza_mt")?,
        epoch: Instant::now(),
        strings: interned(lua)?,
    };
    Ok((state, warning))
}

fn interned(lua: &Lua) -> LuaResult<HashMap<&'static str, LuaString, BuildHasherDefault<Fnv>>> {
    let mut strings =
        HashMap::with_capacity_and_hasher(INTERNED.len() + lua_raw::KEYS.len(), Default::default());
    for s in INTERNED.iter().chain(lua_raw::KEYS.iter()).copied() {
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

fn string(v: Value) -> Option<String> {
    match v {
        Value::String(s) => s.to_str().ok().map(|s| s.to_owned()),
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
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A Lua string for `s`: interned when known, else made now.
    fn s(&self, lua: &Lua, s: &str) -> LuaResult<LuaString> {
        match self.strings.get(s) {
            Some(v) => Ok(v.clone()),
            None => lua.create_string(s),
        }
    }

    /// The interned Lua string `key` (in [`INTERNED`]); borrowed, so pushing it costs no
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

    /// Decodes a mod_invites host record; never fails on odd shapes (they just don't
    /// validate).
    fn decode_record(&self, t: &Table) -> LuaResult<Record> {
        let allow_reset = match self.field(t, "additional_data")? {
            Value::Table(ad) => string(self.field(&ad, "allow_reset")?),
            _ => None,
        };
        Ok(Record {
            kind: string(self.field(t, "type")?),
            jid: string(self.field(t, "jid")?),
            allow_registration: match self.field(t, "allow_registration")? {
                Value::Nil => Flag::Absent,
                Value::Boolean(false) => Flag::False,
                _ => Flag::Truthy,
            },
            expires: num(&self.field(t, "expires")?),
            reusable: truthy(&self.field(t, "reusable")?),
            allow_reset,
        })
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

    fn nodeprep(&self, s: &str) -> LuaResult<Option<String>> {
        self.nodeprep.call::<Option<String>>(s)
    }

    /// The session table mod_invites' consumers expect (`token`, `username`, `inviter`,
    /// `type`, `uri`, `additional_data`, `reusable`) plus our `host` and native half.
    /// Tells this module's invites (they carry the `_record` read at preauth and the
    /// `host` that validated it) from a front-end's.
    fn source(&self, invite: &Table) -> LuaResult<Source> {
        let Value::Table(record) = self.field(invite, "_record")? else {
            return Ok(Source::FrontEnd);
        };
        if !is_str(&self.field(invite, "host")?, &self.name) {
            return Ok(Source::OtherHost);
        }
        let token = string(self.field(invite, "token")?).unwrap_or_default();
        Ok(match self.decode_record(&record)?.validate(&token, None) {
            Ok(v) => Source::Ours(v),
            Err(_) => Source::OtherHost,
        })
    }

    /// The token, reusability and expiry of any invite object (ours or a front-end's).
    fn invite_facts(&self, invite: &Table) -> LuaResult<Option<(String, bool, i64)>> {
        match self.source(invite)? {
            Source::Ours(v) => Ok(Some((v.token, v.reusable, v.expires))),
            Source::OtherHost => Ok(None),
            Source::FrontEnd => {
                let Some(token) = string(invite.get("token")?) else {
                    return Ok(None);
                };
                let reusable = truthy(&invite.get("reusable")?);
                Ok(Some((token, reusable, now_s() + FOREIGN_EXPIRY_S)))
            }
        }
    }

    /// Normalises an invite's binding and reset user for [`policy::decide`].
    fn normalised(&self, valid: &ValidInvite, used: bool) -> LuaResult<Normalised> {
        let prep = |v: &Option<String>| -> LuaResult<Option<String>> {
            match v {
                Some(s) => Ok(Some(self.nodeprep(s)?.unwrap_or_default())),
                None => Ok(None),
            }
        };
        Ok(Normalised {
            bound: prep(&valid.bound)?,
            reset: prep(&valid.allow_reset)?,
            used,
        })
    }

    /// What the registration presents: `None` without an invite for this host,
    /// `Some(Err)` for a front-end invite whose record is gone or invalid.
    fn presented_invite(
        &self,
        invite: &Value,
        record: &Value,
    ) -> LuaResult<Option<Result<Normalised, Error>>> {
        let Value::Table(inv) = invite else {
            return Ok(None);
        };
        let now_ms = self.now_ms();
        let now = now_s();
        match self.source(inv)? {
            Source::Ours(v) => {
                let used = self
                    .host
                    .lock()
                    .ledger
                    .is_used(&v.token, v.reusable, now_ms, now);
                return Ok(Some(Ok(self.normalised(&v, used)?)));
            }
            Source::OtherHost => return Ok(None),
            Source::FrontEnd => {}
        }
        let token = string(inv.get("token")?).unwrap_or_default();
        let valid = match record {
            Value::Table(r) => self.decode_record(r)?.validate(&token, None).ok(),
            _ => None,
        };
        Ok(Some(match valid {
            Some(v) => {
                let used = self
                    .host
                    .lock()
                    .ledger
                    .is_used(&token, v.reusable, now_ms, now);
                Ok(self.normalised(&v, used)?)
            }
            None => Err(Error::TokenUsed),
        }))
    }
}

/// Owned form of [`Presented`].
struct Normalised {
    bound: Option<String>,
    reset: Option<String>,
    used: bool,
}

fn code(e: Error) -> (Value, &'static str, &'static str) {
    (Value::Nil, e.code(), e.text())
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

        // preauth_functions() → preauth, preauth_finish: the preauth hot path as plain C
        // functions over this host's state (see lua_raw.rs).
        //   preauth(stanza, ip, secure, same_host) → token to look up | nil, type, condition, text
        //   preauth_finish(token, ip, record, err) → true, inviter-or-nil | nil, type, condition, text
        // On success the plugin makes `session.validated_invite`, keeping the record.
        methods.add_method("preauth_functions", |lua, this, ()| {
            let shared = lua_raw::Shared {
                host: Arc::clone(&this.host),
                epoch: this.epoch,
            };
            // SAFETY: push_functions only pushes values (2 results) and runs inside the
            // protected call exec_raw sets up.
            unsafe {
                lua.exec_raw::<(Function, Function)>((), move |state| {
                    lua_raw::push_functions(state, shared)
                })
            }
        });

        // lookup_token(invite) → token of a front-end invite whose record must be re-read
        methods.add_method("lookup_token", |_, this, invite: Value| {
            let Value::Table(t) = invite else {
                return Ok(None);
            };
            if !matches!(this.source(&t)?, Source::FrontEnd) {
                return Ok(None);
            }
            Ok(string(t.get("token")?).filter(|t| token::is_lookup_candidate(t)))
        });

        // registering(invite, username, already_refused, record) →
        //   true | reset-username | false (no opinion) | nil, code, reason
        methods.add_method(
            "registering",
            |lua, this, (invite, username, refused, record): (Value, Value, bool, Value)| {
                let invite_only = this.host.lock().config.invite_only;
                let username = match string(username) {
                    Some(u) => this.nodeprep(&u)?,
                    None => None,
                };
                let facts = this.presented_invite(&invite, &record)?;
                let presented = facts.as_ref().map(|f| match f {
                    Ok(n) => Ok(Presented {
                        used: n.used,
                        bound: n.bound.as_deref(),
                        reset: n.reset.as_deref(),
                    }),
                    Err(e) => Err(*e),
                });
                let decision = policy::decide(invite_only, refused, presented, username.as_deref());
                let mut out = MultiValue::new();
                match decision {
                    Decision::NoOpinion => out.push_back(Value::Boolean(false)),
                    Decision::Allow { allow_reset: None } => out.push_back(Value::Boolean(true)),
                    Decision::Allow {
                        allow_reset: Some(u),
                    } => out.push_back(Value::String(lua.create_string(&u)?)),
                    Decision::Refuse(e) => {
                        let (nil, c, text) = code(e);
                        out.push_back(nil);
                        out.push_back(Value::String(lua.create_string(c)?));
                        out.push_back(Value::String(lua.create_string(text)?));
                    }
                }
                Ok(out)
            },
        );

        // claim(invite) → handle | nil (nothing to claim) | nil, "token-used"
        methods.add_method("claim", |lua, this, invite: Table| {
            let mut out = MultiValue::new();
            let Some((token, reusable, expires)) = this.invite_facts(&invite)? else {
                return Ok(out);
            };
            if reusable {
                return Ok(out);
            }
            let handle = token::generate(&mut rand::rng());
            let now = this.now_ms();
            match this
                .host
                .lock()
                .ledger
                .claim(&token, handle.clone(), expires, now)
            {
                Ok(()) => out.push_back(Value::String(lua.create_string(&handle)?)),
                Err(e) => {
                    out.push_back(Value::Nil);
                    out.push_back(Value::String(lua.create_string(e.code())?));
                }
            }
            Ok(out)
        });

        // settle(invite, handle) → true when this registration should act on the invite
        methods.add_method(
            "settle",
            |_, this, (invite, handle): (Table, Option<String>)| {
                let Some((token, reusable, _)) = this.invite_facts(&invite)? else {
                    return Ok(false);
                };
                if reusable {
                    return Ok(true);
                }
                let Some(handle) = handle else {
                    return Ok(false);
                };
                Ok(this.host.lock().ledger.settle(&token, &handle, now_s()))
            },
        );

        // release(invite, handle) → true when a claim was given back
        methods.add_method("release", |_, this, (invite, handle): (Table, String)| {
            let Some((token, _, _)) = this.invite_facts(&invite)? else {
                return Ok(false);
            };
            Ok(this.host.lock().ledger.release(&token, &handle))
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
                let used = this
                    .host
                    .lock()
                    .ledger
                    .is_used(&token, false, this.now_ms(), now);
                Ok(!used && invite::contact_entry_valid(num(&expires), now))
            },
        );

        // consumed(token, expires) → remembers a token consumed outside a claim
        methods.add_method("consumed", |_, this, (token, expires): (String, Value)| {
            let now = now_s();
            let expires = num(&expires)
                .map(|e| e as i64)
                .unwrap_or(now + FOREIGN_EXPIRY_S);
            this.host.lock().ledger.mark_consumed(&token, expires, now);
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
            let now = this.now_ms();
            this.host.lock().sweep(now, now_s());
            Ok(())
        });

        // stats() → { claims =, consumed =, throttled_addresses = }
        methods.add_method("stats", |lua, this, ()| {
            let h = this.host.lock();
            let (claims, consumed) = h.ledger.sizes();
            let t = lua.create_table()?;
            t.set("claims", claims)?;
            t.set("consumed", consumed)?;
            t.set("throttled_addresses", h.throttled_addresses())?;
            Ok(t)
        });

        // kind(invite) → "register" | "roster" for this module's invites (tests, logs)
        methods.add_method("kind", |_, this, invite: Table| {
            Ok(match this.source(&invite)? {
                Source::Ours(v) => Some(match v.kind {
                    Kind::Register => "register",
                    Kind::Roster => "roster",
                }),
                _ => None,
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{lua_raw, INTERNED};

    /// `k()` raises for a key missing from [`INTERNED`]; every literal key this file
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
        assert!(keys.len() > 10, "scan found {} keys", keys.len());
        for key in keys {
            assert!(
                INTERNED.contains(&key.as_str())
                    || lua_raw::KEYS.contains(&key.as_str())
                    || key == "kind",
                "not interned: {key}"
            );
        }
    }
}
