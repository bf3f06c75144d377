//! All mlua code: the exports of `luaopen_invites_register`, the per-host state userdata
//! and conversions between Lua values (Prosody stanzas, mod_invites records and invite
//! objects) and the core types. Names follow Prosody's vocabulary; expected failures
//! return `nil, "kebab-code"`, misuse raises.
//!
//! Storage stays on the Lua side: Prosody storage drivers may yield inside a coroutine,
//! which cannot cross Rust frames, so the shim reads records and hands them in here.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mlua::{
    AnyUserData, Function, Lua, MultiValue, Result as LuaResult, Table, UserData, UserDataMethods,
    Value,
};
use parking_lot::Mutex;

use crate::error::Error;
use crate::host::{self, Config, Host, Origin, PreauthStep, RawOption};
use crate::invite::{self, Flag, Kind, Record, ValidInvite};
use crate::policy::{self, Decision, Presented, Roles, Scalar};
use crate::stanza::{self, Element, Node, PreauthIq};
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

fn now_s() -> i64 {
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
}

/// A preauth waiting for its storage lookup.
pub struct Pending {
    iq: PreauthIq,
    ip: Option<String>,
}

impl UserData for Pending {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("token", |_, this, ()| Ok(this.iq.token.clone()));
    }
}

/// The native half of a `session.validated_invite` made by this module.
pub struct NativeInvite {
    host: String,
    valid: ValidInvite,
}

impl UserData for NativeInvite {}

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
fn new_host(_: &Lua, cfg: Table) -> LuaResult<(HostState, Option<String>)> {
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
    };
    Ok((state, warning))
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

/// Decodes a mod_invites host record; never fails on odd shapes (they just don't validate).
fn decode_record(t: &Table) -> LuaResult<Record> {
    let allow: Value = t.raw_get("allow_registration")?;
    let allow_reset = match t.raw_get::<Value>("additional_data")? {
        Value::Table(ad) => string(ad.raw_get("allow_reset")?),
        _ => None,
    };
    Ok(Record {
        kind: string(t.raw_get("type")?),
        jid: string(t.raw_get("jid")?),
        allow_registration: match allow {
            Value::Nil => Flag::Absent,
            Value::Boolean(false) => Flag::False,
            _ => Flag::Truthy,
        },
        expires: num(&t.raw_get("expires")?),
        reusable: truthy(&t.raw_get("reusable")?),
        allow_reset,
    })
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

    /// Builds a `util.stanza` object from an [`Element`].
    fn to_stanza(&self, lua: &Lua, e: &Element) -> LuaResult<Table> {
        let attr = lua.create_table_with_capacity(0, e.attrs.len())?;
        for (k, v) in &e.attrs {
            attr.raw_set(k.as_str(), v.as_str())?;
        }
        let tags = lua.create_table()?;
        let t = lua.create_table_with_capacity(e.children.len(), 3)?;
        t.raw_set("name", e.name.as_str())?;
        t.raw_set("attr", attr)?;
        for (i, child) in e.children.iter().enumerate() {
            match child {
                Node::Element(c) => {
                    let c = self.to_stanza(lua, c)?;
                    tags.raw_set(tags.raw_len() + 1, &c)?;
                    t.raw_set(i + 1, c)?;
                }
                Node::Text(s) => t.raw_set(i + 1, s.as_str())?,
            }
        }
        t.raw_set("tags", tags)?;
        t.set_metatable(Some(self.stanza_mt.clone()))?;
        Ok(t)
    }

    fn nodeprep(&self, s: &str) -> LuaResult<Option<String>> {
        self.nodeprep.call::<Option<String>>(s)
    }

    /// The session table mod_invites' consumers expect (`token`, `username`, `inviter`,
    /// `type`, `uri`, `additional_data`, `reusable`) plus our `host` and native half.
    fn invite_table(
        &self,
        lua: &Lua,
        host: &str,
        v: ValidInvite,
        record: &Table,
    ) -> LuaResult<Table> {
        let t = lua.create_table_with_capacity(0, 10)?;
        t.raw_set("token", v.token.as_str())?;
        t.raw_set("type", record.raw_get::<Value>("type")?)?;
        t.raw_set("uri", record.raw_get::<Value>("uri")?)?;
        t.raw_set(
            "additional_data",
            record.raw_get::<Value>("additional_data")?,
        )?;
        t.raw_set("reusable", v.reusable)?;
        if let Some(inviter) = &v.inviter {
            t.raw_set("username", inviter.as_str())?;
            t.raw_set("inviter", inviter.as_str())?;
        }
        t.raw_set("host", host)?;
        t.raw_set(
            "_native",
            NativeInvite {
                host: host.to_owned(),
                valid: v,
            },
        )?;
        Ok(t)
    }

    /// The token, reusability and expiry of any invite object (ours or a front-end's).
    fn invite_facts(&self, invite: &Table) -> LuaResult<Option<(String, bool, i64)>> {
        if let Value::UserData(ud) = invite.raw_get::<Value>("_native")? {
            if let Ok(n) = ud.borrow::<NativeInvite>() {
                return Ok(Some((
                    n.valid.token.clone(),
                    n.valid.reusable,
                    n.valid.expires,
                )));
            }
        }
        let Some(token) = string(invite.get("token")?) else {
            return Ok(None);
        };
        let reusable = truthy(&invite.get("reusable")?);
        Ok(Some((token, reusable, now_s() + FOREIGN_EXPIRY_S)))
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
        if let Value::UserData(ud) = inv.raw_get::<Value>("_native")? {
            let Ok(n) = ud.borrow::<NativeInvite>() else {
                return Ok(None);
            };
            if n.host != self.name {
                return Ok(None);
            }
            let v = &n.valid;
            let used = self
                .host
                .lock()
                .ledger
                .is_used(&v.token, v.reusable, now_ms, now);
            return Ok(Some(Ok(self.normalised(v, used)?)));
        }
        let token = string(inv.get("token")?).unwrap_or_default();
        let valid = match record {
            Value::Table(r) => decode_record(r)?.validate(&token, None).ok(),
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

        // preauth(xml, ip, secure, same_host) → reply | false, pending | nil, "bad-request"
        methods.add_method(
            "preauth",
            |lua, this, (xml, ip, secure, same_host): (mlua::LuaString, Option<String>, Value, bool)| {
                let xml = xml.to_str()?;
                let origin = Origin {
                    ip: ip.as_deref(),
                    secure: truthy(&secure),
                    same_host,
                };
                let now = this.now_ms();
                let step = this.host.lock().preauth_begin(&xml, origin, now);
                let mut out = MultiValue::new();
                match step {
                    Ok(PreauthStep::Reply(e)) => {
                        out.push_back(Value::Table(this.to_stanza(lua, &e)?));
                    }
                    Ok(PreauthStep::Lookup(iq)) => {
                        out.push_back(Value::Boolean(false));
                        out.push_back(Value::UserData(lua.create_userdata(Pending { iq, ip })?));
                    }
                    Err(_) => {
                        out.push_back(Value::Nil);
                        out.push_back(Value::String(lua.create_string(Error::BadRequest.code())?));
                    }
                }
                Ok(out)
            },
        );

        // preauth_finish(pending, record, err) → reply, invite-or-nil
        methods.add_method(
            "preauth_finish",
            |lua, this, (pending, record, err): (AnyUserData, Value, Value)| {
                let p = pending.borrow::<Pending>()?;
                let decoded = match (&record, &err) {
                    (_, e) if truthy(e) => Err(()),
                    (Value::Table(t), _) => Ok(Some(decode_record(t)?)),
                    _ => Ok(None),
                };
                let (reply, valid) = {
                    let mut host = this.host.lock();
                    host.preauth_finish(
                        &p.iq,
                        decoded.as_ref().map(|r| r.as_ref()).map_err(|_| ()),
                        p.ip.as_deref(),
                        this.now_ms(),
                        now_s(),
                    )
                };
                let invite = match (valid, &record) {
                    (Some(v), Value::Table(rec)) => {
                        Value::Table(this.invite_table(lua, &this.name, v, rec)?)
                    }
                    _ => Value::Nil,
                };
                Ok((this.to_stanza(lua, &reply)?, invite))
            },
        );

        // lookup_token(invite) → token of a front-end invite whose record must be re-read
        methods.add_method("lookup_token", |_, _, invite: Value| {
            let Value::Table(t) = invite else {
                return Ok(None);
            };
            if truthy(&t.raw_get("_native")?) {
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

        // subscribe_token(xml) → token of a XEP-0379 subscription request, or nil
        methods.add_method("subscribe_token", |_, _, xml: mlua::LuaString| {
            Ok(stanza::parse_subscribe_token(&xml.to_str()?).ok())
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

        // sweep() → drops expired claims and consumed entries (called from a timer)
        methods.add_method("sweep", |_, this, ()| {
            let now = this.now_ms();
            this.host.lock().ledger.sweep(now, now_s());
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
        methods.add_method("kind", |_, _, invite: Table| {
            if let Value::UserData(ud) = invite.raw_get::<Value>("_native")? {
                if let Ok(n) = ud.borrow::<NativeInvite>() {
                    return Ok(Some(match n.valid.kind {
                        Kind::Register => "register",
                        Kind::Roster => "roster",
                    }));
                }
            }
            Ok(None)
        });
    }
}
