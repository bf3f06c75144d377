//! One host's native state — settings, throttle, invite index, claims, consumed tokens,
//! the deletion queue — and the flows of stock's hooks over it: the preauth IQ
//! (`stanza/iq/urn:xmpp:pars:0:preauth`, SPEC §4.2), `user-registering` (§4.3, §7.3),
//! consumption at `user-registered` / `user-password-reset` and XEP-0379 (§4.4–4.5, §7.2),
//! and the expired-invite cleanup (§7.3 F13). Storage stays in Lua: the plugin feeds the
//! index what it reads and writes what this state queues.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::batch::{Batch, Deletion, Deletions};
use crate::error::Refusal;
use crate::freshness::Freshness;
use crate::index::Index;
use crate::invite::{contact_entry_valid, Entry, Fields, Ledger};
use crate::policy::{self, Decision, Presented};
use crate::throttle::{network_key, Throttle};
use crate::token;

/// How long after a valid preauth the cleanup keeps an expired invite, ms: XEP-0445 checks
/// expiry at preauth only, so a registration in flight must still find its record.
pub const PREAUTH_GRACE_MS: u64 = 15 * 60_000;

/// Claims on invites a front-end hands in without a known record expiry last this long, s.
pub const FOREIGN_EXPIRY_S: i64 = 7 * 86_400;

/// Per-host settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The host this state serves.
    pub host: String,
    /// `registration_invite_only`.
    pub invite_only: bool,
    /// `c2s_require_encryption` / `require_encryption`.
    pub require_encryption: bool,
    /// `invites_register_token_attempts`.
    pub token_attempts: u32,
    /// `invites_register_throttle_ipv6_prefix`.
    pub ipv6_prefix: u8,
}

/// The facts about the requesting stream that the preauth checks need.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// Client address (`session.ip`); `None` shares one bucket.
    pub ip: Option<&'a str>,
    /// `session.secure`.
    pub secure: bool,
    /// `origin.host == module.host`.
    pub same_host: bool,
}

/// What a finished registration (or `invite:use()`) does with its invite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Consumed now: delete these stored entries.
    Consumed {
        /// What to delete.
        deletion: Deletion,
        /// It was a password-reset invite.
        reset: bool,
    },
    /// A reusable invite: nothing to delete.
    Reusable,
    /// Not this registration's to settle (no claim held, or already consumed).
    NotOurs,
}

/// The sizes `invites_register:status()` and the gauges report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Invites in the index.
    pub pending: usize,
    /// Usernames bound invites are for.
    pub bound_names: usize,
    /// Consumed tokens not yet deleted from storage.
    pub awaiting_deletion: usize,
    /// Registrations in progress holding a token.
    pub claims: usize,
    /// Consumed tokens remembered.
    pub consumed: usize,
    /// Addresses (networks) the throttle tracks.
    pub throttled: usize,
    /// About how many bytes the invite index holds.
    pub index_bytes: usize,
}

/// One host's state.
#[derive(Debug)]
pub struct Host {
    /// Settings.
    pub config: Config,
    throttle: Throttle,
    /// The invite index.
    pub index: Index,
    /// Claims and consumed tokens.
    pub ledger: Ledger,
    /// Whether the index matches the store file.
    pub freshness: Freshness,
    /// Consumed tokens waiting for a batch delete.
    pub deletions: Deletions,
    recent_preauths: HashMap<Box<str>, u64>,
}

impl Host {
    /// Fresh state for `config`; `store_file` is the host's invite file on internal
    /// storage (`None` for SQL).
    pub fn new(config: Config, store_file: Option<PathBuf>) -> Self {
        Host {
            throttle: Throttle::new(config.token_attempts),
            config,
            index: Index::new(),
            ledger: Ledger::new(),
            freshness: Freshness::new(store_file),
            deletions: Deletions::new(),
            recent_preauths: HashMap::new(),
        }
    }

    fn bucket(&self, ip: Option<&str>) -> String {
        network_key(ip, self.config.ipv6_prefix)
    }

    /// Consumed, or waiting to be deleted: never usable again.
    fn spent(&self, token: &str, now_s: i64) -> bool {
        self.deletions.contains(token) || self.ledger.is_consumed(token, now_s)
    }

    /// May not serve another registration now: spent, or claimed by one in progress.
    /// Reusable invites are never used up.
    fn used(&self, token: &str, entry: &Entry, now_ms: u64, now_s: i64) -> bool {
        !entry.reusable && (self.spent(token, now_s) || self.ledger.is_claimed(token, now_ms))
    }

    /// SPEC §4.2 steps 1–3 and the token's shape: `Ok(())` means "make sure the index
    /// knows the token, then call [`Host::preauth_judge`]". Nothing here reads storage.
    pub fn preauth_gate(
        &mut self,
        token: Option<&str>,
        origin: Origin<'_>,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        if !origin.same_host {
            return Err(Refusal::WrongHost);
        }
        if self.config.require_encryption && !origin.secure {
            return Err(Refusal::EncryptionRequired);
        }
        let bucket = self.bucket(origin.ip);
        if self.throttle.is_throttled(&bucket, now_ms) {
            return Err(Refusal::Throttled);
        }
        if !token.is_some_and(token::is_lookup_candidate) {
            self.throttle.record_failure(&bucket, now_ms);
            return Err(Refusal::TokenInvalid);
        }
        Ok(())
    }

    /// SPEC §4.2 steps 4–5 from the index. `read_failed`: the plugin's storage read for
    /// this token failed, which never counts as valid. A failure counts for the throttle.
    pub fn preauth_judge(
        &mut self,
        token: &str,
        ip: Option<&str>,
        read_failed: bool,
        now_ms: u64,
        now_s: i64,
    ) -> Result<(), Refusal> {
        let valid = !read_failed
            && self
                .index
                .get(token)
                .is_some_and(|e| e.live(now_s) && !self.used(token, e, now_ms, now_s));
        self.preauth_outcome(token, ip, valid, now_ms)
    }

    /// SPEC §4.2 steps 4–5 for SQL storage: judges the record just read for `token` (an
    /// indexed query, as stock), not the index, which the registration reads again anyway.
    pub fn preauth_judge_record(
        &mut self,
        token: &str,
        ip: Option<&str>,
        record: Option<Fields<'_>>,
        now_ms: u64,
        now_s: i64,
    ) -> Result<Entry, Refusal> {
        let entry = record.and_then(|f| Entry::from_fields(&self.config.host, token, f));
        let valid = entry
            .as_ref()
            .is_some_and(|e| e.live(now_s) && !self.used(token, e, now_ms, now_s));
        self.preauth_outcome(token, ip, valid, now_ms)?;
        entry.ok_or(Refusal::TokenInvalid)
    }

    /// Counts a failed preauth for the throttle, or remembers a valid one (cleanup grace).
    fn preauth_outcome(
        &mut self,
        token: &str,
        ip: Option<&str>,
        valid: bool,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        if !valid {
            let bucket = self.bucket(ip);
            self.throttle.record_failure(&bucket, now_ms);
            return Err(Refusal::TokenInvalid);
        }
        self.recent_preauths.insert(token.into(), now_ms);
        Ok(())
    }

    /// Adds (or replaces) the record of `token` read from storage; false when the record
    /// can never register (it is then not indexed, and any older entry is dropped).
    pub fn put(&mut self, token: &str, fields: Fields<'_>) -> bool {
        match Entry::from_fields(&self.config.host, token, fields) {
            Some(entry) => {
                self.index.insert(token, entry);
                true
            }
            None => {
                self.index.remove(token);
                false
            }
        }
    }

    /// An unexpired, unspent account invite other than `except` is bound to `username`.
    fn reserved(&self, username: &str, except: Option<&str>, now_s: i64) -> bool {
        self.reserving(username, now_s)
            .into_iter()
            .any(|t| Some(t) != except && !self.spent(t, now_s))
    }

    /// The unexpired invites bound to `username` (SQL storage re-reads them before a
    /// refusal, since an in-process delete there leaves no trace).
    pub fn reserving(&self, username: &str, now_s: i64) -> Vec<&str> {
        self.index
            .bound_to(username)
            .iter()
            .map(|t| &**t)
            .filter(|t| self.index.get(t).is_some_and(|e| e.live(now_s)))
            .collect()
    }

    /// SPEC §4.3 steps 2–5 and §7.3 F11–F12 for a registration nobody refused yet.
    /// - `presented`: an invite for this host was presented (ours or a front-end's);
    /// - `token`: its token, when it is a plausible one;
    /// - `username`: the requested username after nodeprep.
    ///
    /// Expiry is not checked again (XEP-0445); the store's current state is.
    pub fn registering(
        &self,
        presented: bool,
        token: Option<&str>,
        username: Option<&str>,
        now_ms: u64,
        now_s: i64,
    ) -> Decision {
        let presented = match (presented, token) {
            (false, _) => Presented::None,
            (true, None) => Presented::Unusable,
            (true, Some(t)) => match self.index.get(t) {
                Some(e) if !self.used(t, e, now_ms, now_s) => Presented::Invite {
                    bound: e.bound(),
                    reset: e.reset(),
                },
                _ => Presented::Unusable,
            },
        };
        let reserved = username.is_some_and(|u| self.reserved(u, token, now_s));
        policy::decide(self.config.invite_only, presented, username, reserved)
    }

    /// Claims a single-use `token` for the registration in progress: the handle, or
    /// `Ok(None)` when there is nothing to claim (reusable, or not in the index).
    pub fn claim(
        &mut self,
        token: &str,
        now_ms: u64,
        now_s: i64,
    ) -> Result<Option<String>, Refusal> {
        let Some(entry) = self.index.get(token) else {
            return Ok(None);
        };
        if entry.reusable {
            return Ok(None);
        }
        if self.spent(token, now_s) {
            return Err(Refusal::TokenUsed);
        }
        let expires = entry.expires;
        let handle = token::generate(&mut rand::rng());
        self.ledger.claim(token, handle.clone(), expires, now_ms)?;
        Ok(Some(handle))
    }

    /// Gives a claim back (the registration failed after being allowed).
    pub fn release(&mut self, token: &str, handle: &str) -> bool {
        self.ledger.release(token, handle)
    }

    fn deletion_of(&self, token: &str) -> (Deletion, bool) {
        match self.index.get(token) {
            Some(e) => (
                Deletion {
                    host: true,
                    user: e.inviter().map(Into::into),
                },
                e.reset().is_some(),
            ),
            None => (
                Deletion {
                    host: true,
                    user: None,
                },
                false,
            ),
        }
    }

    /// A registration finished (`user-registered`, `user-password-reset`): consume the
    /// token if `handle` holds its claim.
    pub fn settle(&mut self, token: &str, handle: Option<&str>, now_s: i64) -> Settled {
        if self.index.get(token).is_some_and(|e| e.reusable) {
            return Settled::Reusable;
        }
        let Some(handle) = handle else {
            return Settled::NotOurs;
        };
        let (deletion, reset) = self.deletion_of(token);
        match self.ledger.settle(token, handle, now_s) {
            Some(_) => Settled::Consumed { deletion, reset },
            None => Settled::NotOurs,
        }
    }

    /// `validated_invite:use()` by another module: consume unless reusable or spent.
    pub fn use_invite(&mut self, token: &str, now_s: i64) -> Settled {
        let expires = match self.index.get(token) {
            Some(e) if e.reusable => return Settled::Reusable,
            Some(e) => e.expires,
            None => now_s + FOREIGN_EXPIRY_S,
        };
        if self.spent(token, now_s) {
            return Settled::NotOurs;
        }
        let (deletion, reset) = self.deletion_of(token);
        self.ledger.mark_consumed(token, expires, now_s);
        Settled::Consumed { deletion, reset }
    }

    /// XEP-0379: whether `user`'s contact-invite entry (`expires` as stored) is usable.
    pub fn contact_valid(&self, token: &str, expires: Option<f64>, now_s: i64) -> bool {
        !self.spent(token, now_s) && contact_entry_valid(expires, now_s)
    }

    /// XEP-0379: `user`'s contact invite approved a subscription; consume it.
    pub fn consume_contact(
        &mut self,
        token: &str,
        user: &str,
        expires: i64,
        now_s: i64,
    ) -> Deletion {
        self.ledger.mark_consumed(token, expires, now_s);
        Deletion {
            host: self.index.get(token).is_some(),
            user: Some(user.into()),
        }
    }

    /// A token consumed before a restart (its durable marker): refused from now on, and
    /// queued for the next batch delete.
    pub fn restore(&mut self, token: &str, deletion: Deletion, now_s: i64) {
        let expires = self
            .index
            .get(token)
            .map_or(now_s + FOREIGN_EXPIRY_S, |e| e.expires);
        self.ledger.mark_consumed(token, expires, now_s);
        self.deletions.push(token, deletion);
    }

    /// Queues a consumed token for the next batch delete.
    pub fn queue(&mut self, token: &str, deletion: Deletion) {
        self.deletions.push(token, deletion);
    }

    /// Starts a batch write.
    pub fn batch(&mut self) -> Batch {
        self.deletions.take()
    }

    /// The batch write ended; on success its tokens leave the index. Returns them.
    pub fn batch_done(&mut self, ok: bool) -> Vec<String> {
        let gone = self.deletions.done(ok);
        for token in &gone {
            self.index.remove(token);
        }
        gone
    }

    /// The host records the cleanup deletes: expired before `now_s`, not waiting for a
    /// batch delete, and not validated by a preauth in the last [`PREAUTH_GRACE_MS`].
    pub fn expired(&self, now_ms: u64, now_s: i64) -> Vec<String> {
        let mut tokens: Vec<String> = self
            .index
            .expired(now_s)
            .filter(|t| !self.deletions.contains(t))
            .filter(|t| {
                self.recent_preauths
                    .get(*t)
                    .is_none_or(|&at| now_ms.saturating_sub(at) >= PREAUTH_GRACE_MS)
            })
            .map(str::to_owned)
            .collect();
        tokens.sort();
        tokens
    }

    /// The cleanup deleted these host records.
    pub fn cleaned<'a>(&mut self, tokens: impl IntoIterator<Item = &'a str>) {
        for token in tokens {
            self.index.remove(token);
            self.recent_preauths.remove(token);
        }
    }

    /// Drops expired claims, consumed entries, throttle windows and preauth marks.
    pub fn sweep(&mut self, now_ms: u64, now_s: i64) {
        self.ledger.sweep(now_ms, now_s);
        self.throttle.sweep(now_ms);
        self.recent_preauths
            .retain(|_, at| now_ms.saturating_sub(*at) < PREAUTH_GRACE_MS);
    }

    /// The sizes of everything held.
    pub fn status(&self) -> Status {
        let (claims, consumed) = self.ledger.sizes();
        Status {
            pending: self.index.len(),
            bound_names: self.index.bound_names(),
            awaiting_deletion: self.deletions.len(),
            claims,
            consumed,
            throttled: self.throttle.len(),
            index_bytes: self.index.heap_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invite::Name;

    const NOW: i64 = 1_000_000;

    fn host(attempts: u32) -> Host {
        Host::new(
            Config {
                host: "example.com".into(),
                invite_only: true,
                require_encryption: true,
                token_attempts: attempts,
                ipv6_prefix: 64,
            },
            None,
        )
    }

    const SECURE: Origin<'static> = Origin {
        ip: Some("192.0.2.1"),
        secure: true,
        same_host: true,
    };

    fn account<'a>(jid: &'a str, node: Option<&str>, expires: i64) -> Fields<'a> {
        Fields {
            kind: Some("register"),
            jid: Some(jid),
            expires: Some(expires as f64),
            allow_registration: true,
            node: node.map(|n| Name::Valid(n.into())),
            ..Fields::default()
        }
    }

    fn with_invites() -> Host {
        let mut h = host(10);
        assert!(h.put("T", account("example.com", None, NOW + 100)));
        assert!(h.put("A", account("Alice@example.com", Some("alice"), NOW + 100)));
        let mut roster = account("juliet@example.com", Some("juliet"), NOW + 100);
        roster.kind = Some("roster");
        assert!(h.put("R", roster));
        h
    }

    fn allow() -> Decision {
        Decision::Allow { reset: None }
    }

    #[test]
    fn test_simple() {
        let mut h = with_invites();
        assert_eq!(h.preauth_gate(Some("T"), SECURE, 0), Ok(()));
        assert_eq!(h.preauth_judge("T", SECURE.ip, false, 0, NOW), Ok(()));
        assert_eq!(h.index.get("T").unwrap().kind.as_str(), "register");
        assert_eq!(h.registering(true, Some("T"), Some("bob"), 0, NOW), allow());
        let handle = h.claim("T", 0, NOW).unwrap().unwrap();
        assert_eq!(
            h.registering(true, Some("T"), Some("bob"), 0, NOW),
            Decision::Refuse(Refusal::TokenUsed),
            "claimed by a registration in progress"
        );
        assert_eq!(
            h.settle("T", Some(&handle), NOW),
            Settled::Consumed {
                deletion: Deletion {
                    host: true,
                    user: None
                },
                reset: false
            }
        );
        assert_eq!(
            h.preauth_judge("T", SECURE.ip, false, 0, NOW).err(),
            Some(Refusal::TokenInvalid)
        );
    }

    #[test]
    fn test_invalid_plaintext_hides_token() {
        let mut h = with_invites();
        let plain = Origin {
            secure: false,
            ..SECURE
        };
        for token in ["T", "bogus"] {
            assert_eq!(
                h.preauth_gate(Some(token), plain, 0),
                Err(Refusal::EncryptionRequired)
            );
        }
        assert_eq!(h.status().throttled, 0, "not counted");
    }

    #[test]
    fn test_invalid_wrong_host() {
        let mut h = host(10);
        let other = Origin {
            same_host: false,
            secure: false,
            ..SECURE
        };
        assert_eq!(h.preauth_gate(Some("T"), other, 0), Err(Refusal::WrongHost));
    }

    #[test]
    fn test_invalid_tokens_count_and_throttle() {
        let mut h = with_invites();
        let long = "x".repeat(2000);
        for t in [Some(""), Some(long.as_str()), None] {
            assert_eq!(h.preauth_gate(t, SECURE, 0), Err(Refusal::TokenInvalid));
        }
        assert_eq!(
            h.preauth_judge("nope", SECURE.ip, false, 0, NOW).err(),
            Some(Refusal::TokenInvalid)
        );
        let mut h = host(2);
        for _ in 0..2 {
            assert!(h.preauth_judge("nope", SECURE.ip, false, 0, NOW).is_err());
        }
        assert_eq!(
            h.preauth_gate(Some("T"), SECURE, 1),
            Err(Refusal::Throttled),
            "even a valid token is not looked up"
        );
    }

    #[test]
    fn test_throttle_counts_ipv6_networks() {
        let mut h = host(1);
        let v6 = |ip| Origin {
            ip: Some(ip),
            ..SECURE
        };
        assert!(h
            .preauth_judge("nope", Some("2001:db8::1"), false, 0, NOW)
            .is_err());
        assert_eq!(
            h.preauth_gate(Some("T"), v6("2001:db8::2"), 1),
            Err(Refusal::Throttled)
        );
        assert_eq!(h.preauth_gate(Some("T"), v6("2001:db8:0:1::2"), 1), Ok(()));
    }

    #[test]
    fn test_sql_judges_the_record_read() {
        let mut h = host(10);
        let live = account("example.com", None, NOW + 100);
        assert!(h
            .preauth_judge_record("S", SECURE.ip, Some(live), 0, NOW)
            .is_ok());
        assert!(h.index.get("S").is_none(), "the index is not written");
        let expired = account("example.com", None, NOW - 1);
        assert_eq!(
            h.preauth_judge_record("S", SECURE.ip, Some(expired), 0, NOW)
                .err(),
            Some(Refusal::TokenInvalid)
        );
        assert_eq!(
            h.preauth_judge_record("S", SECURE.ip, None, 0, NOW).err(),
            Some(Refusal::TokenInvalid)
        );
        h.ledger.mark_consumed("S", NOW + 100, NOW);
        let live = account("example.com", None, NOW + 100);
        assert!(h
            .preauth_judge_record("S", SECURE.ip, Some(live), 0, NOW)
            .is_err());
    }

    #[test]
    fn test_storage_error_is_invalid() {
        let mut h = with_invites();
        assert_eq!(
            h.preauth_judge("T", SECURE.ip, true, 0, NOW).err(),
            Some(Refusal::TokenInvalid)
        );
    }

    #[test]
    fn test_expiry_checked_at_preauth_only() {
        let mut h = with_invites();
        assert!(h
            .preauth_judge("T", SECURE.ip, false, 0, NOW + 101)
            .is_err());
        assert_eq!(
            h.registering(true, Some("T"), Some("bob"), 0, NOW + 101),
            allow()
        );
    }

    #[test]
    fn test_revoked_after_preauth() {
        let mut h = with_invites();
        assert!(h.preauth_judge("T", SECURE.ip, false, 0, NOW).is_ok());
        h.index.remove("T");
        assert_eq!(
            h.registering(true, Some("T"), Some("bob"), 0, NOW),
            Decision::Refuse(Refusal::TokenUsed)
        );
        assert_eq!(
            h.registering(true, None, Some("bob"), 0, NOW),
            Decision::Refuse(Refusal::TokenUsed),
            "an invite without a usable token"
        );
    }

    #[test]
    fn test_reservation() {
        let mut h = with_invites();
        let refused = Decision::Refuse(Refusal::Reserved);
        assert_eq!(
            h.registering(true, Some("T"), Some("alice"), 0, NOW),
            refused
        );
        assert_eq!(
            h.registering(true, Some("R"), Some("alice"), 0, NOW),
            refused
        );
        assert_eq!(
            h.registering(true, Some("A"), Some("alice"), 0, NOW),
            allow()
        );
        assert_eq!(
            h.registering(true, Some("T"), Some("alicia"), 0, NOW),
            allow()
        );
        h.config.invite_only = false;
        assert_eq!(h.registering(false, None, Some("alice"), 0, NOW), refused);
        assert_eq!(
            h.registering(false, None, Some("bob"), 0, NOW),
            Decision::NoOpinion
        );
        // Freed by expiry, by consumption, by deletion.
        assert_eq!(
            h.registering(false, None, Some("alice"), 0, NOW + 101),
            Decision::NoOpinion
        );
        let handle = h.claim("A", 0, NOW).unwrap().unwrap();
        assert_eq!(
            h.registering(false, None, Some("alice"), 0, NOW),
            refused,
            "a claim in progress still reserves"
        );
        assert!(matches!(
            h.settle("A", Some(&handle), NOW),
            Settled::Consumed { .. }
        ));
        assert_eq!(
            h.registering(false, None, Some("alice"), 0, NOW),
            Decision::NoOpinion
        );
        assert!(h.put("B", account("alice@example.com", Some("alice"), NOW + 100)));
        assert_eq!(h.registering(false, None, Some("alice"), 0, NOW), refused);
        h.index.remove("B");
        assert_eq!(
            h.registering(false, None, Some("alice"), 0, NOW),
            Decision::NoOpinion
        );
    }

    #[test]
    fn test_reset_invites_reserve_nothing() {
        let mut h = with_invites();
        let mut reset = account("bob@example.com", Some("bob"), NOW + 100);
        reset.reset = Some(Name::Valid("bob".into()));
        assert!(h.put("X", reset));
        assert_eq!(h.registering(true, Some("T"), Some("bob"), 0, NOW), allow());
        assert_eq!(
            h.registering(true, Some("X"), Some("bob"), 0, NOW),
            Decision::Allow {
                reset: Some("bob".into())
            }
        );
        assert_eq!(
            h.registering(true, Some("X"), Some("eve"), 0, NOW),
            Decision::Refuse(Refusal::WrongResetUsername)
        );
    }

    #[test]
    fn test_release_and_reusable() {
        let mut h = with_invites();
        let handle = h.claim("T", 0, NOW).unwrap().unwrap();
        assert!(h.release("T", &handle));
        assert_eq!(h.registering(true, Some("T"), Some("bob"), 0, NOW), allow());
        let mut group = account("example.com", None, NOW + 100);
        group.reusable = true;
        assert!(h.put("G", group));
        assert_eq!(h.claim("G", 0, NOW), Ok(None));
        assert_eq!(h.settle("G", None, NOW), Settled::Reusable);
        assert_eq!(h.settle("T", None, NOW), Settled::NotOurs);
        assert_eq!(h.use_invite("G", NOW), Settled::Reusable);
    }

    #[test]
    fn test_roster_consumption_deletes_the_inviters_entry() {
        let mut h = with_invites();
        let handle = h.claim("R", 0, NOW).unwrap().unwrap();
        let Settled::Consumed { deletion, .. } = h.settle("R", Some(&handle), NOW) else {
            panic!("not consumed");
        };
        assert_eq!(deletion.user.as_deref(), Some("juliet"));
        h.queue("R", deletion);
        assert!(!h.contact_valid("R", Some((NOW + 10) as f64), NOW));
        let batch = h.batch();
        assert_eq!(batch.host, vec!["R"]);
        assert_eq!(batch.users, vec![("juliet".into(), vec!["R".into()])]);
        assert_eq!(h.batch_done(true), vec!["R"]);
        assert!(h.index.get("R").is_none());
    }

    #[test]
    fn test_queued_tokens_stay_refused_everywhere() {
        let mut h = with_invites();
        assert!(matches!(h.use_invite("T", NOW), Settled::Consumed { .. }));
        assert_eq!(h.use_invite("T", NOW), Settled::NotOurs, "never twice");
        h.queue(
            "T",
            Deletion {
                host: true,
                user: None,
            },
        );
        // Even after the consumed ledger forgot it (cap, margin), the queue refuses it.
        h.ledger = Ledger::new();
        assert!(h.preauth_judge("T", SECURE.ip, false, 0, NOW).is_err());
        assert_eq!(
            h.registering(true, Some("T"), Some("bob"), 0, NOW),
            Decision::Refuse(Refusal::TokenUsed)
        );
        assert_eq!(h.claim("T", 0, NOW), Err(Refusal::TokenUsed));
        let _ = h.batch();
        h.batch_done(false);
        assert_eq!(h.status().awaiting_deletion, 1, "retried");
    }

    #[test]
    fn test_cleanup_spares_recent_preauths() {
        let mut h = with_invites();
        assert!(h.put("old", account("example.com", None, NOW - 10)));
        assert!(h.put("seen", account("example.com", None, NOW + 1)));
        assert!(h.preauth_judge("seen", SECURE.ip, false, 0, NOW).is_ok());
        let later = NOW + 200;
        assert_eq!(h.expired(1, later), vec!["A", "R", "T", "old"]);
        assert_eq!(
            h.expired(PREAUTH_GRACE_MS, later),
            vec!["A", "R", "T", "old", "seen"]
        );
        h.cleaned(["old"]);
        assert!(h.index.get("old").is_none());
        assert_eq!(h.status().pending, 4);
    }

    #[test]
    fn test_contact_entries() {
        let mut h = with_invites();
        assert!(h.contact_valid("C", Some((NOW + 1) as f64), NOW));
        assert!(!h.contact_valid("C", Some((NOW - 1) as f64), NOW));
        assert!(!h.contact_valid("C", None, NOW));
        let d = h.consume_contact("C", "juliet", NOW + 1, NOW);
        assert!(!d.host, "a contact-only invite has no host record");
        assert!(!h.contact_valid("C", Some((NOW + 1) as f64), NOW));
        assert!(h.consume_contact("R", "juliet", NOW + 1, NOW).host);
    }
}
