//! Invite records as mod_invites stores them (map store `invite_token`), their validation
//! for registration (what `mod_invites.get()` checks, without its crashes), and the
//! single-use bookkeeping stock lacks: claims held during a registration and tokens
//! consumed since.

use std::collections::{HashMap, VecDeque};

use crate::error::Error;

/// How long a claim lives without settling (front-ends that don't go through IBR), ms.
pub const CLAIM_TTL_MS: u64 = 120_000;
/// How long a consumed token is remembered past its record's expiry, seconds.
pub const CONSUMED_MARGIN_S: i64 = 3_600;
/// Most consumed tokens remembered at once; the oldest are forgotten first.
pub const CONSUMED_CAP: usize = 200_000;

/// A value of `allow_registration` as stored (0.12's shell stores the string "true").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flag {
    /// Field absent (nil).
    #[default]
    Absent,
    /// A truthy Lua value.
    Truthy,
    /// `false`.
    False,
}

/// A host-level record (`store:get(nil, token)`), decoded field by field. Fields of the
/// wrong Lua type decode to `None`; the record then fails validation instead of crashing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// `type`: "register" or "roster".
    pub kind: Option<String>,
    /// `jid`: host, `user@host` for bound/reset invites, the inviter for roster invites.
    pub jid: Option<String>,
    /// `allow_registration`.
    pub allow_registration: Flag,
    /// `expires` (Unix seconds).
    pub expires: Option<f64>,
    /// `reusable` is truthy.
    pub reusable: bool,
    /// `additional_data.allow_reset`, when a string.
    pub allow_reset: Option<String>,
}

/// What an invite permits, as decided from its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// An account invite (`type = "register"`).
    Register,
    /// A contact invite allowing registration (`type = "roster"`).
    Roster,
}

/// A record that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidInvite {
    /// The token (map key).
    pub token: String,
    /// Account or contact invite.
    pub kind: Kind,
    /// Inviter's username for roster invites.
    pub inviter: Option<String>,
    /// The username this invite is bound to (raw node of `jid`), register invites only.
    pub bound: Option<String>,
    /// The account a reset invite may reset.
    pub allow_reset: Option<String>,
    /// May serve several registrations.
    pub reusable: bool,
    /// Expiry, Unix seconds.
    pub expires: i64,
}

/// `node` of a JID `node@domain/resource`, like `util.jid.node`.
pub fn jid_node(jid: &str) -> Option<&str> {
    let bare = jid.split('/').next().unwrap_or(jid);
    let (node, domain) = bare.split_once('@')?;
    (!node.is_empty() && !domain.is_empty()).then_some(node)
}

impl Record {
    /// Validates for registration (SPEC §5). `now` is Unix seconds; `None` skips the
    /// expiry check (a front-end already validated the token; XEP-0445 never re-checks).
    pub fn validate(&self, token: &str, now: Option<i64>) -> Result<ValidInvite, Error> {
        let expires = match self.expires {
            Some(e) if e.is_finite() => e.floor() as i64,
            _ => return Err(Error::TokenInvalid),
        };
        if let Some(now) = now {
            if now > expires {
                return Err(Error::TokenInvalid);
            }
        }
        if self.allow_registration == Flag::False {
            return Err(Error::TokenInvalid);
        }
        let jid = self.jid.as_deref();
        let (kind, inviter, bound) = match self.kind.as_deref() {
            Some("register") => (
                Kind::Register,
                None,
                if self.allow_reset.is_some() {
                    None
                } else {
                    jid.and_then(jid_node).map(str::to_owned)
                },
            ),
            Some("roster") => {
                let inviter = jid.and_then(jid_node).ok_or(Error::TokenInvalid)?;
                (Kind::Roster, Some(inviter.to_owned()), None)
            }
            _ => return Err(Error::TokenInvalid),
        };
        Ok(ValidInvite {
            token: token.to_owned(),
            kind,
            inviter,
            bound,
            allow_reset: self.allow_reset.clone(),
            reusable: self.reusable,
            expires,
        })
    }
}

/// Validates a contact-invite entry in the inviter's map (`store:get(user, token)`): a
/// number not yet passed.
pub fn contact_entry_valid(expires: Option<f64>, now: i64) -> bool {
    matches!(expires, Some(e) if e.is_finite() && (now as f64) <= e)
}

#[derive(Debug, Clone)]
struct Claim {
    handle: String,
    since_ms: u64,
    expires: i64,
}

/// Claims and consumed tokens of one host.
#[derive(Debug, Default)]
pub struct Ledger {
    claims: HashMap<String, Claim>,
    consumed: HashMap<String, i64>,
    consumed_order: VecDeque<(String, i64)>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    fn live_claim(&self, token: &str, now_ms: u64) -> Option<&Claim> {
        self.claims
            .get(token)
            .filter(|c| now_ms.saturating_sub(c.since_ms) < CLAIM_TTL_MS)
    }

    /// True when `token` may not serve another registration: consumed, or claimed by a
    /// registration still in progress. Reusable tokens are never used up.
    pub fn is_used(&self, token: &str, reusable: bool, now_ms: u64, now_s: i64) -> bool {
        if reusable {
            return false;
        }
        self.consumed
            .get(token)
            .is_some_and(|&until| until >= now_s)
            || self.live_claim(token, now_ms).is_some()
    }

    /// Claims `token` (whose record expires at `expires`) for one registration under
    /// `handle`. Fails if already claimed.
    pub fn claim(
        &mut self,
        token: &str,
        handle: String,
        expires: i64,
        now_ms: u64,
    ) -> Result<(), Error> {
        if self.live_claim(token, now_ms).is_some() {
            return Err(Error::TokenUsed);
        }
        self.claims.insert(
            token.to_owned(),
            Claim {
                handle,
                since_ms: now_ms,
                expires,
            },
        );
        Ok(())
    }

    /// Turns the claim `handle` on `token` into a consumption. Returns false (and changes
    /// nothing) when `handle` does not hold the claim. A claim past its TTL still settles:
    /// the registration did happen.
    pub fn settle(&mut self, token: &str, handle: &str, now_s: i64) -> bool {
        match self.claims.get(token) {
            Some(c) if c.handle == handle => {
                let expires = c.expires;
                self.claims.remove(token);
                self.mark_consumed(token, expires, now_s);
                true
            }
            _ => false,
        }
    }

    /// Gives the claim back (the registration failed after being allowed).
    pub fn release(&mut self, token: &str, handle: &str) -> bool {
        match self.claims.get(token) {
            Some(c) if c.handle == handle => {
                self.claims.remove(token);
                true
            }
            _ => false,
        }
    }

    /// Remembers `token` as consumed until `expires` plus a margin.
    pub fn mark_consumed(&mut self, token: &str, expires: i64, now_s: i64) {
        let until = expires.max(now_s).saturating_add(CONSUMED_MARGIN_S);
        self.consumed.insert(token.to_owned(), until);
        self.consumed_order.push_back((token.to_owned(), until));
        self.prune(now_s);
    }

    /// Drops expired claims and consumed entries, and enforces [`CONSUMED_CAP`].
    pub fn sweep(&mut self, now_ms: u64, now_s: i64) {
        self.claims
            .retain(|_, c| now_ms.saturating_sub(c.since_ms) < CLAIM_TTL_MS);
        self.prune(now_s);
    }

    fn prune(&mut self, now_s: i64) {
        // Entries are roughly time-ordered; expired ones may hide behind live ones, which
        // `sweep`'s full retain catches when the cap is reached.
        while self.consumed_order.len() > CONSUMED_CAP {
            if let Some((t, until)) = self.consumed_order.pop_front() {
                if self.consumed.get(&t) == Some(&until) {
                    self.consumed.remove(&t);
                }
            }
        }
        while let Some((t, until)) = self.consumed_order.front() {
            if *until >= now_s {
                break;
            }
            if self.consumed.get(t) == Some(until) {
                self.consumed.remove(t);
            }
            self.consumed_order.pop_front();
        }
    }

    /// (claims, consumed tokens) held now.
    pub fn sizes(&self) -> (usize, usize) {
        (self.claims.len(), self.consumed.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &str, jid: &str, expires: f64) -> Record {
        Record {
            kind: Some(kind.into()),
            jid: Some(jid.into()),
            expires: Some(expires),
            ..Record::default()
        }
    }

    #[test]
    fn test_simple() {
        let v = record("register", "example.com", 200.0)
            .validate("T", Some(100))
            .unwrap();
        assert_eq!(v.kind, Kind::Register);
        assert_eq!(v.bound, None);
        assert_eq!(v.expires, 200);
    }

    #[test]
    fn test_bound_and_roster() {
        let v = record("register", "Alice@example.com", 200.0)
            .validate("T", Some(100))
            .unwrap();
        assert_eq!(v.bound.as_deref(), Some("Alice"));
        let r = record("roster", "bob@example.com", 200.0)
            .validate("T", Some(100))
            .unwrap();
        assert_eq!(r.inviter.as_deref(), Some("bob"));
        assert_eq!(r.bound, None);
    }

    #[test]
    fn test_reset_is_not_bound() {
        let mut rec = record("register", "bob@example.com", 200.0);
        rec.allow_reset = Some("bob".into());
        let v = rec.validate("T", Some(1)).unwrap();
        assert_eq!(v.bound, None);
        assert_eq!(v.allow_reset.as_deref(), Some("bob"));
    }

    #[test]
    fn test_invalid_records() {
        assert_eq!(
            record("register", "h", 99.0).validate("T", Some(100)),
            Err(Error::TokenInvalid)
        );
        assert!(record("register", "h", 99.0).validate("T", None).is_ok());
        assert_eq!(
            record("roster", "example.com", 200.0).validate("T", Some(1)),
            Err(Error::TokenInvalid)
        );
        assert_eq!(
            record("other", "h", 200.0).validate("T", Some(1)),
            Err(Error::TokenInvalid)
        );
        let mut no_reg = record("register", "h", 200.0);
        no_reg.allow_registration = Flag::False;
        assert_eq!(no_reg.validate("T", Some(1)), Err(Error::TokenInvalid));
        let mut nan = record("register", "h", 0.0);
        nan.expires = Some(f64::NAN);
        assert_eq!(nan.validate("T", Some(1)), Err(Error::TokenInvalid));
        assert_eq!(
            Record::default().validate("T", Some(1)),
            Err(Error::TokenInvalid)
        );
    }

    #[test]
    fn test_expiry_boundary() {
        assert!(record("register", "h", 100.0)
            .validate("T", Some(100))
            .is_ok());
        assert!(record("register", "h", 100.0)
            .validate("T", Some(101))
            .is_err());
    }

    #[test]
    fn test_jid_node() {
        assert_eq!(jid_node("a@b/c"), Some("a"));
        assert_eq!(jid_node("b"), None);
        assert_eq!(jid_node("@b"), None);
        assert_eq!(jid_node("b/a@c"), None);
    }

    #[test]
    fn test_contact_entry() {
        assert!(contact_entry_valid(Some(10.0), 10));
        assert!(!contact_entry_valid(Some(9.0), 10));
        assert!(!contact_entry_valid(None, 10));
    }

    #[test]
    fn test_claim_settle() {
        let mut l = Ledger::new();
        assert!(!l.is_used("T", false, 0, 0));
        l.claim("T", "h1".into(), 100, 0).unwrap();
        assert!(l.is_used("T", false, 1, 0));
        assert!(!l.is_used("T", true, 1, 0));
        assert_eq!(l.claim("T", "h2".into(), 100, 1), Err(Error::TokenUsed));
        assert!(!l.settle("T", "h2", 0));
        assert!(l.settle("T", "h1", 0));
        assert!(l.is_used("T", false, 2, 50));
        assert!(!l.settle("T", "h1", 0), "never twice");
    }

    #[test]
    fn test_release_frees_token() {
        let mut l = Ledger::new();
        l.claim("T", "h".into(), 100, 0).unwrap();
        assert!(!l.release("T", "other"));
        assert!(l.release("T", "h"));
        assert!(!l.is_used("T", false, 1, 0));
    }

    #[test]
    fn test_claim_expires() {
        let mut l = Ledger::new();
        l.claim("T", "h".into(), 100, 0).unwrap();
        assert!(!l.is_used("T", false, CLAIM_TTL_MS, 0));
        l.claim("T", "h2".into(), 100, CLAIM_TTL_MS).unwrap();
        l.sweep(CLAIM_TTL_MS * 3, 0);
        assert_eq!(l.sizes(), (0, 0));
    }

    #[test]
    fn test_consumed_forgotten_after_margin() {
        let mut l = Ledger::new();
        l.mark_consumed("T", 100, 0);
        assert!(l.is_used("T", false, 0, 100 + CONSUMED_MARGIN_S));
        l.sweep(0, 101 + CONSUMED_MARGIN_S);
        assert_eq!(l.sizes(), (0, 0));
    }

    #[test]
    fn test_consumed_is_capped() {
        let mut l = Ledger::new();
        for i in 0..(CONSUMED_CAP + 10) {
            l.mark_consumed(&i.to_string(), 1_000, 0);
        }
        assert_eq!(l.sizes().1, CONSUMED_CAP);
        assert!(!l.is_used("0", false, 0, 0), "oldest evicted first");
        assert!(l.is_used(&(CONSUMED_CAP + 9).to_string(), false, 0, 0));
    }
}
