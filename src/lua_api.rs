//! All mlua code: the exports of `luaopen_invites_register` and the per-host state
//! userdata. Names follow Prosody's vocabulary; expected refusals come back as plain
//! values (a code, a text, a metrics label), misuse raises.
//!
//! Every call made per stanza or per registration takes and returns strings, numbers,
//! booleans and nil: the state (the invite index, claims, consumed tokens, the throttle)
//! lives here, so the plugin never hands over a Lua table to walk on a hot path. Tables
//! cross only on cold paths: options at load, `additional_data` while the index is filled
//! (load, reload, an invite created), batch and cleanup lists, status.
//!
//! Storage stays on the Lua side: Prosody's storage drivers may yield inside a
//! coroutine, which cannot cross Rust frames, so the plugin reads records and hands their
//! fields in here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mlua::{
    BorrowedStr, Lua, LuaString, MultiValue, Result as LuaResult, Table, UserData, UserDataMethods,
    Value,
};
use parking_lot::Mutex;

use crate::batch;
use crate::data::{self, Data, Unsupported};
use crate::error::Refusal;
use crate::host::{Config, Host, Origin, Settled};
use crate::invite::{jid_node, Extra, Fields, Name};
use crate::options::{self, RawOption};
use crate::policy::Decision;

/// Builds the exports table.
pub fn exports(lua: &Lua) -> LuaResult<Table> {
    let t = lua.create_table()?;
    t.set("new", lua.create_function(new_host)?)?;
    t.set(
        "next_interval",
        lua.create_function(|_, (delay, write_s): (f64, f64)| {
            Ok(batch::next_interval(delay, write_s))
        })?,
    )?;
    t.set("max_token_length", crate::token::MAX_LEN)?;
    t.set("version", env!("CARGO_PKG_VERSION"))?;
    Ok(t)
}

/// Unix time, s.
fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Per-host state handed to the plugin: `native.new(config)`.
pub struct HostState {
    host: Arc<Mutex<Host>>,
    epoch: Instant,
}

impl HostState {
    /// Milliseconds since the state was made (claims, throttle windows).
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
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

/// A Lua string that is valid UTF-8 (tokens, names, JIDs); anything else is `None`.
fn text(v: &Value) -> Option<BorrowedStr> {
    match v {
        Value::String(s) => s.to_str().ok(),
        _ => None,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Number(n) => Some(*n),
        _ => None,
    }
}

/// A nodeprepped name as the plugin passes it: the name, `false` when nodeprep failed,
/// nil when there is none.
fn name(v: &Value) -> Option<Name> {
    match v {
        Value::Nil => None,
        Value::String(s) => Some(match s.to_str() {
            Ok(n) => Name::Valid((&*n).into()),
            Err(_) => Name::Unmatchable,
        }),
        _ => Some(Name::Unmatchable),
    }
}

/// `additional_data` as plain data, when it is made of storable values only.
fn to_data(v: Value, depth: usize) -> Result<Data, Unsupported> {
    Ok(match v {
        Value::Boolean(b) => Data::Bool(b),
        Value::Integer(i) => Data::Int(i),
        Value::Number(n) => Data::Num(n),
        Value::String(s) => Data::Str(s.as_bytes().to_vec()),
        Value::Table(t) => {
            if depth >= data::MAX_DEPTH {
                return Err(Unsupported::Depth);
            }
            let mut entries = Vec::new();
            for pair in t.pairs::<Value, Value>() {
                let (k, v) = pair.map_err(|_| Unsupported::Kind)?;
                entries.push((to_data(k, depth + 1)?, to_data(v, depth + 1)?));
            }
            Data::Table(entries)
        }
        _ => return Err(Unsupported::Kind),
    })
}

/// `additional_data` as the index keeps it.
fn extra_of(host: &mut Host, v: Value) -> Extra {
    match to_data(v, 0).and_then(|d| data::literal(&d)) {
        Ok(literal) => host.index.intern(literal),
        Err(_) => Extra::UNSUPPORTED,
    }
}

/// The record fields [`RecordKeys::read`] takes from a stored record.
struct RawRecord {
    kind: Option<BorrowedStr>,
    jid: Option<BorrowedStr>,
    expires: Value,
    allow_registration: bool,
    reusable: bool,
    reset: Option<BorrowedStr>,
    uri: Option<BorrowedStr>,
    extra: Value,
}

/// The field names of a mod_invites record, made into Lua strings once per reload.
struct RecordKeys {
    kind: LuaString,
    jid: LuaString,
    expires: LuaString,
    allow_registration: LuaString,
    reusable: LuaString,
    additional_data: LuaString,
    allow_reset: LuaString,
    uri: LuaString,
}

impl RecordKeys {
    fn new(lua: &Lua) -> LuaResult<Self> {
        Ok(RecordKeys {
            kind: lua.create_string("type")?,
            jid: lua.create_string("jid")?,
            expires: lua.create_string("expires")?,
            allow_registration: lua.create_string("allow_registration")?,
            reusable: lua.create_string("reusable")?,
            additional_data: lua.create_string("additional_data")?,
            allow_reset: lua.create_string("allow_reset")?,
            uri: lua.create_string("uri")?,
        })
    }

    /// The fields of `record` (raw reads; odd types read as absent); `uri` and
    /// `additional_data` only when the index keeps them (`keep`).
    fn read(&self, record: &Table, keep: bool) -> LuaResult<RawRecord> {
        let data: Value = record.raw_get(&self.additional_data)?;
        let reset = match &data {
            Value::Table(d) => text(&d.raw_get::<Value>(&self.allow_reset)?),
            _ => None,
        };
        Ok(RawRecord {
            kind: text(&record.raw_get::<Value>(&self.kind)?),
            jid: text(&record.raw_get::<Value>(&self.jid)?),
            expires: record.raw_get(&self.expires)?,
            allow_registration: !matches!(
                record.raw_get::<Value>(&self.allow_registration)?,
                Value::Boolean(false)
            ),
            reusable: truthy(&record.raw_get::<Value>(&self.reusable)?),
            reset,
            uri: if keep {
                text(&record.raw_get::<Value>(&self.uri)?)
            } else {
                None
            },
            extra: if keep { data } else { Value::Nil },
        })
    }
}

/// `native.new{ host=, invite_only=, require_encryption=, token_attempts=, ipv6_prefix=,
/// cleanup_interval=, delete_delay=, store_file= }` → state, settings. `settings` holds
/// the validated numbers and `errors`, the lines to log for options that were invalid.
fn new_host(lua: &Lua, cfg: Table) -> LuaResult<(HostState, Table)> {
    let settings = lua.create_table()?;
    let errors = lua.create_table()?;
    let value = |key: &str, opt: options::NumOption| -> LuaResult<f64> {
        let (v, err) = opt.parse(&raw_option(cfg.get(key)?));
        if let Some(err) = err {
            errors.raw_push(err)?;
        }
        if opt.fractional {
            settings.set(key, v)?;
        } else {
            settings.set(key, v as i64)?;
        }
        Ok(v)
    };
    let token_attempts = value("token_attempts", options::TOKEN_ATTEMPTS)?;
    let ipv6_prefix = value("ipv6_prefix", options::IPV6_PREFIX)?;
    value("cleanup_interval", options::CLEANUP_INTERVAL)?;
    value("delete_delay", options::DELETE_DELAY)?;
    settings.set("errors", errors)?;
    let config = Config {
        host: cfg.get("host")?,
        invite_only: truthy(&cfg.get("invite_only")?),
        require_encryption: truthy(&cfg.get("require_encryption")?),
        token_attempts: token_attempts as u32,
        ipv6_prefix: ipv6_prefix as u8,
    };
    let store_file: Option<String> = cfg.get("store_file")?;
    let state = HostState {
        host: Arc::new(Mutex::new(Host::new(config, store_file.map(PathBuf::from)))),
        epoch: Instant::now(),
    };
    Ok((state, settings))
}

impl UserData for HostState {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // preauth_gate(token, ip, secure, same_host) → true | false, type, condition,
        // text, label: SPEC §4.2 steps 1–3 and the token's shape, before any storage read.
        methods.add_method(
            "preauth_gate",
            |lua, this, (token, ip, secure, same_host): (Value, Value, bool, bool)| {
                let token = text(&token);
                let ip = text(&ip);
                let origin = Origin {
                    ip: ip.as_deref(),
                    secure,
                    same_host,
                };
                let now = this.now_ms();
                match this.host.lock().preauth_gate(token.as_deref(), origin, now) {
                    Ok(()) => Ok(MultiValue::from_iter([Value::Boolean(true)])),
                    Err(r) => refusal_values(lua, r),
                }
            },
        );

        // preauth_judge(token, ip, read_failed) → true, type, inviter, reusable, uri,
        // extra | false, type, condition, text, label. `extra` is the literal of
        // additional_data, true when the record must be read for it, or nil.
        methods.add_method(
            "preauth_judge",
            |lua, this, (token, ip, read_failed): (Value, Value, bool)| {
                let Some(token) = text(&token) else {
                    return refusal_values(lua, Refusal::TokenInvalid);
                };
                let ip = text(&ip);
                let now = this.now_ms();
                let mut host = this.host.lock();
                let name = host.config.host.clone();
                if let Err(r) = host.preauth_judge(&token, ip.as_deref(), read_failed, now, now_s())
                {
                    return refusal_values(lua, r);
                }
                match host.index.get(&token) {
                    Some(e) => {
                        let extra = if e.extra == Extra::UNSUPPORTED {
                            Value::Boolean(true)
                        } else {
                            match host.index.literal(e.extra) {
                                Some(l) => Value::String(lua.create_string(l)?),
                                None => Value::Nil,
                            }
                        };
                        let inviter = match e.inviter() {
                            Some(i) => Value::String(lua.create_string(i)?),
                            None => Value::Nil,
                        };
                        let uri = match e.uri(&name, &token) {
                            Some(u) => Value::String(lua.create_string(u)?),
                            None => Value::Nil,
                        };
                        Ok(MultiValue::from_iter([
                            Value::Boolean(true),
                            Value::String(lua.create_string(e.kind.as_str())?),
                            inviter,
                            Value::Boolean(e.reusable),
                            uri,
                            extra,
                        ]))
                    }
                    None => refusal_values(lua, Refusal::TokenInvalid),
                }
            },
        );

        // preauth_judge_record(token, ip, read_failed, type, jid, expires, allow_registration,
        // reusable) → true, type, inviter, reusable | false, type, condition, text, label:
        // SQL storage judges the record the plugin just read (one indexed query, as stock).
        methods.add_method(
            "preauth_judge_record",
            |lua,
             this,
             (token, ip, read_failed, kind, jid, expires, allow_registration, reusable): (
                Value,
                Value,
                bool,
                Value,
                Value,
                Value,
                bool,
                bool,
            )| {
                let Some(token) = text(&token) else {
                    return refusal_values(lua, Refusal::TokenInvalid);
                };
                let (ip, kind, jid) = (text(&ip), text(&kind), text(&jid));
                let record = (!read_failed).then(|| Fields {
                    kind: kind.as_deref(),
                    jid: jid.as_deref(),
                    expires: number(&expires),
                    allow_registration,
                    reusable,
                    ..Fields::default()
                });
                let now = this.now_ms();
                let judged = this.host.lock().preauth_judge_record(
                    &token,
                    ip.as_deref(),
                    record,
                    now,
                    now_s(),
                );
                match judged {
                    Ok(e) => Ok(MultiValue::from_iter([
                        Value::Boolean(true),
                        Value::String(lua.create_string(e.kind.as_str())?),
                        match e.inviter() {
                            Some(i) => Value::String(lua.create_string(i)?),
                            None => Value::Nil,
                        },
                        Value::Boolean(e.reusable),
                    ])),
                    Err(r) => refusal_values(lua, r),
                }
            },
        );

        // stale() → true when the index must be reloaded before it is used.
        methods.add_method("stale", |_, this, ()| {
            Ok(this.host.lock().freshness.stale())
        });

        // load_begin() / load_end() → invites indexed / load_abort(): a reload. The file's
        // identity is taken before the plugin reads the store.
        methods.add_method("load_begin", |_, this, ()| {
            let mut h = this.host.lock();
            h.freshness.load_begin();
            h.index.clear();
            Ok(())
        });
        methods.add_method("load_end", |_, this, ()| {
            let mut h = this.host.lock();
            h.freshness.load_end();
            Ok(h.index.len())
        });
        methods.add_method("load_abort", |_, this, ()| {
            let mut h = this.host.lock();
            h.freshness.load_abort();
            h.index.clear();
            Ok(())
        });

        // put(token, type, jid, expires, allow_registration, reusable, node, reset, uri,
        // additional_data) → indexed. `node` and `reset`: nodeprepped names (false when
        // nodeprep failed); `uri` and `additional_data` are kept only when given.
        methods.add_method(
            "put",
            |_,
             this,
             args: (
                Value,
                Value,
                Value,
                Value,
                bool,
                bool,
                Value,
                Value,
                Value,
                Value,
            )| {
                let (
                    token,
                    kind,
                    jid,
                    expires,
                    allow_registration,
                    reusable,
                    node,
                    reset,
                    uri,
                    extra,
                ) = args;
                let Some(token) = text(&token) else {
                    return Ok(false);
                };
                let (kind, jid, uri) = (text(&kind), text(&jid), text(&uri));
                let mut host = this.host.lock();
                let extra = match extra {
                    Value::Nil => Extra::NONE,
                    v => extra_of(&mut host, v),
                };
                let fields = Fields {
                    kind: kind.as_deref(),
                    jid: jid.as_deref(),
                    expires: number(&expires),
                    allow_registration,
                    reusable,
                    node: name(&node),
                    reset: name(&reset),
                    uri: uri.as_deref(),
                    extra,
                };
                Ok(host.put(&token, fields))
            },
        );

        // load(records) → { token… }: indexes all records of a reload (the store's keyval
        // view: token → record) in one call, walking the table here (a cold path). Records
        // whose names need nodeprep (bound and reset invites) are left out and returned: the
        // plugin preps their names and put()s them.
        methods.add_method("load", |lua, this, records: Table| {
            let keys = RecordKeys::new(lua)?;
            let mut host = this.host.lock();
            let keep = host.freshness.tracks_file();
            let mut needs_names = Vec::new();
            records.for_each::<Value, Value>(|token, record| {
                let (Some(token), Value::Table(record)) = (text(&token), record) else {
                    return Ok(());
                };
                let r = keys.read(&record, keep)?;
                if r.kind.as_deref() == Some("register")
                    && (r.reset.is_some() || r.jid.as_deref().and_then(jid_node).is_some())
                {
                    needs_names.push(token.to_string());
                    return Ok(());
                }
                let extra = match r.extra {
                    Value::Nil => Extra::NONE,
                    v => extra_of(&mut host, v),
                };
                let fields = Fields {
                    kind: r.kind.as_deref(),
                    jid: r.jid.as_deref(),
                    expires: number(&r.expires),
                    allow_registration: r.allow_registration,
                    reusable: r.reusable,
                    node: None,
                    reset: None,
                    uri: r.uri.as_deref(),
                    extra,
                };
                host.put(&token, fields);
                Ok(())
            })?;
            lua.create_sequence_from(needs_names)
        });

        // forget(token): the store has no record for it.
        methods.add_method("forget", |_, this, token: Value| {
            if let Some(token) = text(&token) {
                this.host.lock().index.remove(&token);
            }
            Ok(())
        });

        // creation_begin() / creation_end() → add: mod_invites announced invites
        // (`invite-created` fires before the write); after it, whether to add them.
        methods.add_method("creation_begin", |_, this, ()| {
            this.host.lock().freshness.creation_begin();
            Ok(())
        });
        methods.add_method("creation_end", |_, this, ()| {
            Ok(this.host.lock().freshness.creation_end())
        });

        // write_begin() → fresh / write_end(fresh): around our own writes of the store.
        methods.add_method("write_begin", |_, this, ()| {
            Ok(this.host.lock().freshness.write_begin())
        });
        methods.add_method("write_end", |_, this, fresh: bool| {
            this.host.lock().freshness.write_end(fresh);
            Ok(())
        });

        // registering(presented, token, username) → "allow", reset-user | "none" |
        // "refuse", code, text, label. SPEC §4.3 steps 2–5, §7.3 F11–F12.
        methods.add_method(
            "registering",
            |lua, this, (presented, token, username): (bool, Value, Value)| {
                let token = text(&token);
                let username = text(&username);
                let now = this.now_ms();
                let decision = this.host.lock().registering(
                    presented,
                    token.as_deref(),
                    username.as_deref(),
                    now,
                    now_s(),
                );
                let mut out = MultiValue::new();
                match decision {
                    Decision::Allow { reset } => {
                        out.push_back(Value::String(lua.create_string("allow")?));
                        if let Some(user) = reset {
                            out.push_back(Value::String(lua.create_string(user)?));
                        }
                    }
                    Decision::NoOpinion => out.push_back(Value::String(lua.create_string("none")?)),
                    Decision::Refuse(r) => {
                        out.push_back(Value::String(lua.create_string("refuse")?));
                        out.push_back(Value::String(lua.create_string(r.code())?));
                        out.push_back(Value::String(lua.create_string(r.text())?));
                        out.push_back(Value::String(lua.create_string(r.label())?));
                    }
                }
                Ok(out)
            },
        );

        // reserving(username) → the unexpired tokens bound to username.
        methods.add_method("reserving", |lua, this, username: Value| {
            let host = this.host.lock();
            let mut out = MultiValue::new();
            let Some(username) = text(&username) else {
                return Ok(out);
            };
            for t in host.reserving(&username, now_s()) {
                out.push_back(Value::String(lua.create_string(t)?));
            }
            Ok(out)
        });

        // claim(token) → handle | nil (nothing to claim) | false, text.
        methods.add_method("claim", |lua, this, token: Value| {
            let Some(token) = text(&token) else {
                return Ok((Value::Nil, Value::Nil));
            };
            let now = this.now_ms();
            Ok(match this.host.lock().claim(&token, now, now_s()) {
                Ok(Some(handle)) => (Value::String(lua.create_string(handle)?), Value::Nil),
                Ok(None) => (Value::Nil, Value::Nil),
                Err(r) => (
                    Value::Boolean(false),
                    Value::String(lua.create_string(r.text())?),
                ),
            })
        });

        // release(token, handle) → true when a claim was given back.
        methods.add_method("release", |_, this, (token, handle): (Value, Value)| {
            let (Some(token), Some(handle)) = (text(&token), text(&handle)) else {
                return Ok(false);
            };
            Ok(this.host.lock().release(&token, &handle))
        });

        // settle(token, handle) → "consumed", label, host_record, inviter | "reusable",
        // label | nil: a registration finished (user-registered, user-password-reset).
        methods.add_method("settle", |lua, this, (token, handle): (Value, Value)| {
            let Some(token) = text(&token) else {
                return Ok(MultiValue::new());
            };
            let handle = text(&handle);
            let settled = this.host.lock().settle(&token, handle.as_deref(), now_s());
            settled_values(lua, settled)
        });

        // use(token) → as settle: `validated_invite:use()` by another module.
        methods.add_method("use", |lua, this, token: Value| {
            let Some(token) = text(&token) else {
                return Ok(MultiValue::new());
            };
            let settled = this.host.lock().use_invite(&token, now_s());
            settled_values(lua, settled)
        });

        // contact_valid(token, expires) → whether a contact-invite entry is usable.
        methods.add_method(
            "contact_valid",
            |_, this, (token, expires): (Value, Value)| {
                let Some(token) = text(&token) else {
                    return Ok(false);
                };
                Ok(this
                    .host
                    .lock()
                    .contact_valid(&token, number(&expires), now_s()))
            },
        );

        // consume_contact(token, user, expires) → host record to delete too.
        methods.add_method(
            "consume_contact",
            |_, this, (token, user, expires): (BorrowedStr, BorrowedStr, Value)| {
                // Only after contact_valid accepted this token for this user.
                let now = now_s();
                let expires = number(&expires).map_or(now, |e| e as i64);
                let d = this
                    .host
                    .lock()
                    .consume_contact(&token, &user, expires, now);
                Ok(d.host)
            },
        );

        // queue(token, host_record, inviter): a consumed token for the next batch delete.
        methods.add_method(
            "queue",
            |_, this, (token, host_record, inviter): (BorrowedStr, bool, Value)| {
                let user = text(&inviter).map(|u| Box::<str>::from(&*u));
                this.host.lock().queue(
                    &token,
                    batch::Deletion {
                        host: host_record,
                        user,
                    },
                );
                Ok(())
            },
        );

        // restore(token, host_record, inviter): a durable marker of a token consumed before
        // a restart; refused at once, deleted with the next batch.
        methods.add_method(
            "restore",
            |_, this, (token, host_record, inviter): (Value, bool, Value)| {
                let Some(token) = text(&token) else {
                    return Ok(());
                };
                let user = text(&inviter).map(|u| Box::<str>::from(&*u));
                this.host.lock().restore(
                    &token,
                    batch::Deletion {
                        host: host_record,
                        user,
                    },
                    now_s(),
                );
                Ok(())
            },
        );

        // batch() → nil | { host = { token… }, users = { { user, { token… } }… } }.
        methods.add_method("batch", |lua, this, ()| {
            let b = this.host.lock().batch();
            if b.is_empty() {
                return Ok(Value::Nil);
            }
            let t = lua.create_table()?;
            t.set("host", lua.create_sequence_from(b.host)?)?;
            let users = lua.create_table()?;
            for (user, tokens) in b.users {
                users.raw_push(lua.create_sequence_from([
                    Value::String(lua.create_string(user)?),
                    Value::Table(lua.create_sequence_from(tokens)?),
                ])?)?;
            }
            t.set("users", users)?;
            Ok(Value::Table(t))
        });

        // batch_done(ok) → { token… } deleted for good (their markers can go).
        methods.add_method("batch_done", |lua, this, ok: bool| {
            lua.create_sequence_from(this.host.lock().batch_done(ok))
        });

        // bound_name(token) → the nodeprepped name the invite is bound to, or nil.
        methods.add_method("bound_name", |lua, this, token: Value| {
            let Some(token) = text(&token) else {
                return Ok(Value::Nil);
            };
            let host = this.host.lock();
            match host
                .index
                .get(&token)
                .and_then(|e| e.bound())
                .and_then(Name::as_str)
            {
                Some(n) => Ok(Value::String(lua.create_string(n)?)),
                None => Ok(Value::Nil),
            }
        });

        // expired() → { token… }: host records the cleanup deletes.
        methods.add_method("expired", |lua, this, ()| {
            let now = this.now_ms();
            lua.create_sequence_from(this.host.lock().expired(now, now_s()))
        });

        // cleaned({ token… }): the cleanup deleted these.
        methods.add_method("cleaned", |_, this, tokens: Table| {
            let tokens: Vec<String> = tokens.sequence_values().collect::<LuaResult<_>>()?;
            this.host.lock().cleaned(tokens.iter().map(String::as_str));
            Ok(())
        });

        // tracks_file() → whether the store is a file whose identity is checked.
        methods.add_method("tracks_file", |_, this, ()| {
            Ok(this.host.lock().freshness.tracks_file())
        });

        // sweep(): drops expired claims, consumed entries, throttle windows (timer).
        methods.add_method("sweep", |_, this, ()| {
            let now = this.now_ms();
            this.host.lock().sweep(now, now_s());
            Ok(())
        });

        // status() → { pending =, bound_names =, awaiting_deletion =, claims =, consumed =,
        // throttled =, index_bytes = }
        methods.add_method("status", |lua, this, ()| {
            let s = this.host.lock().status();
            let t = lua.create_table()?;
            t.set("pending", s.pending)?;
            t.set("bound_names", s.bound_names)?;
            t.set("awaiting_deletion", s.awaiting_deletion)?;
            t.set("claims", s.claims)?;
            t.set("consumed", s.consumed)?;
            t.set("throttled", s.throttled)?;
            t.set("index_bytes", s.index_bytes)?;
            Ok(t)
        });
    }
}

/// false, type, condition, text, label for a refused preauth.
fn refusal_values(lua: &Lua, r: Refusal) -> LuaResult<MultiValue> {
    let (kind, condition) = r.stanza_error().unwrap_or(("cancel", "item-not-found"));
    Ok(MultiValue::from_iter([
        Value::Boolean(false),
        Value::String(lua.create_string(kind)?),
        Value::String(lua.create_string(condition)?),
        Value::String(lua.create_string(r.text())?),
        Value::String(lua.create_string(r.label())?),
    ]))
}

/// What `settle` and `use` return.
fn settled_values(lua: &Lua, s: Settled) -> LuaResult<MultiValue> {
    let label = |reset: bool| if reset { "reset" } else { "invited" };
    Ok(match s {
        Settled::Consumed { deletion, reset } => MultiValue::from_iter([
            Value::String(lua.create_string("consumed")?),
            Value::String(lua.create_string(label(reset))?),
            Value::Boolean(deletion.host),
            match deletion.user {
                Some(u) => Value::String(lua.create_string(&*u)?),
                None => Value::Nil,
            },
        ]),
        Settled::Reusable => MultiValue::from_iter([
            Value::String(lua.create_string("reusable")?),
            Value::String(lua.create_string(label(false))?),
        ]),
        Settled::NotOurs => MultiValue::new(),
    })
}
