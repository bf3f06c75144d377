//! Invite records as mod_invites stores them (map store `invite_token`, SPEC §5), reduced
//! to what registration needs (what `mod_invites.get()` checks, without its crashes), and
//! the single-use bookkeeping stock lacks: claims held during a registration and tokens
//! consumed since.

use std::collections::{HashMap, VecDeque};

use crate::error::Refusal;

/// How long a claim lives without settling (front-ends that don't go through IBR), ms.
pub const CLAIM_TTL_MS: u64 = 120_000;
/// How long a consumed token is remembered past its record's expiry, seconds.
pub const CONSUMED_MARGIN_S: i64 = 3_600;
/// Most consumed tokens remembered at once; the oldest are forgotten first (tokens still
/// waiting to be deleted from storage are held by the deletion queue, not here).
pub const CONSUMED_CAP: usize = 200_000;

/// A username after nodeprep, or a stored name that nodeprep rejects (which no
/// registering username can match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    /// The nodeprepped name.
    Valid(Box<str>),
    /// The stored name failed nodeprep.
    Unmatchable,
}

impl Name {
    /// True when `username` (nodeprepped; `None` if it failed nodeprep) is this name.
    pub fn matches(&self, username: Option<&str>) -> bool {
        match (self, username) {
            (Name::Valid(n), Some(u)) => **n == *u,
            _ => false,
        }
    }

    /// The name, when valid.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Name::Valid(n) => Some(n),
            Name::Unmatchable => None,
        }
    }
}

/// What an invite permits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An account invite (`type = "register"`).
    Register,
    /// A contact invite allowing registration (`type = "roster"`).
    Roster,
}

impl Kind {
    /// mod_invites' `type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Register => "register",
            Kind::Roster => "roster",
        }
    }
}

/// `additional_data` as kept by the index: none, a literal in the index's table
/// ([`crate::index::Index::literal`], [`crate::data`]), or stored but not representable
/// (the plugin then reads the record). Four bytes, so that an entry stays small.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extra(u32);

impl Extra {
    /// None stored (or not kept: SQL storage re-reads records).
    pub const NONE: Extra = Extra(0);
    /// Stored, but not representable.
    pub const UNSUPPORTED: Extra = Extra(u32::MAX);

    /// Literal number `id` of the index.
    pub fn literal(id: u32) -> Extra {
        match id.checked_add(1) {
            Some(n) if n != u32::MAX => Extra(n),
            _ => Extra::UNSUPPORTED,
        }
    }

    /// The literal's number, for a literal.
    pub fn literal_id(self) -> Option<u32> {
        (self != Extra::NONE && self != Extra::UNSUPPORTED).then(|| self.0 - 1)
    }
}

/// The stored `uri`, compared with what mod_invites would build for the record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Uri {
    /// `xmpp:JID?TYPE;preauth=TOKEN[;ibr=y]`, rebuilt when asked for.
    #[default]
    Canonical,
    /// The record has none.
    Absent,
    /// Something else, kept as is.
    Other(Box<str>),
}

/// The fields of one host record, as the plugin read them (names already nodeprepped).
#[derive(Debug, Clone, Default)]
pub struct Fields<'a> {
    /// `type`.
    pub kind: Option<&'a str>,
    /// `jid`.
    pub jid: Option<&'a str>,
    /// `expires` when a number.
    pub expires: Option<f64>,
    /// `allow_registration` is absent or truthy (0.12 may store the string "true").
    pub allow_registration: bool,
    /// `reusable` is truthy.
    pub reusable: bool,
    /// `nodeprep(jid_node(jid))`: `None` without a node.
    pub node: Option<Name>,
    /// `nodeprep(additional_data.allow_reset)` when that is a string.
    pub reset: Option<Name>,
    /// `uri` when a string.
    pub uri: Option<&'a str>,
    /// `additional_data`.
    pub extra: Extra,
}

/// Fields only some invites have, boxed so that the common unbound account invite stays
/// small in the index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rare {
    /// `jid` when it is not the bare host (bound, reset and roster invites).
    jid: Option<Box<str>>,
    /// The name a register invite (without `allow_reset`) is bound to.
    bound: Option<Name>,
    /// The account a reset invite resets.
    reset: Option<Name>,
    uri: Uri,
}

/// One valid-shaped host record: what preauth, registration and cleanup need.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Expiry, Unix seconds.
    pub expires: i64,
    rare: Option<Box<Rare>>,
    /// `additional_data`.
    pub extra: Extra,
    /// Account or contact invite.
    pub kind: Kind,
    /// May serve several registrations.
    pub reusable: bool,
}

/// `node` of a JID `node@domain/resource`, like `util.jid.node`.
pub fn jid_node(jid: &str) -> Option<&str> {
    let bare = jid.split('/').next().unwrap_or(jid);
    let (node, domain) = bare.split_once('@')?;
    (!node.is_empty() && !domain.is_empty()).then_some(node)
}

/// What mod_invites' `get_uri` builds for an invite.
pub fn canonical_uri(kind: Kind, jid: &str, token: &str) -> String {
    let ibr = if kind == Kind::Roster { ";ibr=y" } else { "" };
    format!("xmpp:{jid}?{};preauth={token}{ibr}", kind.as_str())
}

impl Entry {
    /// Decodes a host record of `host` (SPEC §5): `None` for anything that can never
    /// register (wrong type, no numeric expiry, `allow_registration = false`, a roster
    /// invite without an inviter). Expired records are kept: they matter for cleanup and
    /// for registrations validated before they expired (XEP-0445).
    pub fn from_fields(host: &str, token: &str, f: Fields<'_>) -> Option<Entry> {
        let expires = f.expires.filter(|e| e.is_finite())?.floor() as i64;
        if !f.allow_registration {
            return None;
        }
        let kind = match f.kind? {
            "register" => Kind::Register,
            "roster" => Kind::Roster,
            _ => return None,
        };
        if kind == Kind::Roster && f.jid.and_then(jid_node).is_none() {
            return None;
        }
        let (bound, reset) = match kind {
            Kind::Register if f.reset.is_some() => (None, f.reset),
            Kind::Register => (f.node, None),
            Kind::Roster => (None, None),
        };
        let jid = f.jid.filter(|j| *j != host);
        let uri = match (f.uri, f.jid) {
            (None, _) => Uri::Absent,
            (Some(u), Some(j)) if u == canonical_uri(kind, j, token) => Uri::Canonical,
            (Some(u), _) => Uri::Other(u.into()),
        };
        let rare = Rare {
            jid: jid.map(Into::into),
            bound,
            reset,
            uri,
        };
        Some(Entry {
            kind,
            expires,
            reusable: f.reusable,
            extra: f.extra,
            rare: (rare != Rare::default()).then(|| Box::new(rare)),
        })
    }

    /// Not expired at `now` (Unix seconds; valid through the expiry second).
    pub fn live(&self, now: i64) -> bool {
        now <= self.expires
    }

    /// The inviter's username, for roster invites.
    pub fn inviter(&self) -> Option<&str> {
        match self.kind {
            Kind::Roster => self.jid().and_then(jid_node),
            Kind::Register => None,
        }
    }

    /// The stored `jid` unless it is the bare host.
    fn jid(&self) -> Option<&str> {
        self.rare.as_ref().and_then(|r| r.jid.as_deref())
    }

    /// The name a register invite is bound to (not for reset invites).
    pub fn bound(&self) -> Option<&Name> {
        self.rare.as_ref().and_then(|r| r.bound.as_ref())
    }

    /// The account a reset invite resets.
    pub fn reset(&self) -> Option<&Name> {
        self.rare.as_ref().and_then(|r| r.reset.as_ref())
    }

    /// Heap bytes this entry owns beyond its own size (its rare fields, if any).
    pub fn heap_bytes(&self) -> usize {
        let text = |s: Option<&str>| s.map_or(0, str::len);
        self.rare.as_ref().map_or(0, |r| {
            let uri = match &r.uri {
                Uri::Other(u) => u.len(),
                _ => 0,
            };
            std::mem::size_of::<Rare>()
                + text(r.jid.as_deref())
                + text(r.bound.as_ref().and_then(Name::as_str))
                + text(r.reset.as_ref().and_then(Name::as_str))
                + uri
        })
    }

    /// The record's `uri` (rebuilt when it was mod_invites' own).
    pub fn uri(&self, host: &str, token: &str) -> Option<String> {
        match self.rare.as_ref().map(|r| &r.uri) {
            None | Some(Uri::Canonical) => {
                Some(canonical_uri(self.kind, self.jid().unwrap_or(host), token))
            }
            Some(Uri::Absent) => None,
            Some(Uri::Other(u)) => Some(u.to_string()),
        }
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
    claims: HashMap<Box<str>, Claim>,
    consumed: HashMap<Box<str>, i64>,
    consumed_order: VecDeque<(Box<str>, i64)>,
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

    /// True when `token` was consumed (until its expiry plus a margin).
    pub fn is_consumed(&self, token: &str, now_s: i64) -> bool {
        self.consumed
            .get(token)
            .is_some_and(|&until| until >= now_s)
    }

    /// True when a registration in progress holds `token`.
    pub fn is_claimed(&self, token: &str, now_ms: u64) -> bool {
        self.live_claim(token, now_ms).is_some()
    }

    /// Claims `token` (whose record expires at `expires`) for one registration under
    /// `handle`. Fails if already claimed.
    pub fn claim(
        &mut self,
        token: &str,
        handle: String,
        expires: i64,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        if self.live_claim(token, now_ms).is_some() {
            return Err(Refusal::TokenUsed);
        }
        self.claims.insert(
            token.into(),
            Claim {
                handle,
                since_ms: now_ms,
                expires,
            },
        );
        Ok(())
    }

    /// Turns the claim `handle` on `token` into a consumption; returns the record's expiry.
    /// `None` (and nothing changes) when `handle` does not hold the claim. A claim past
    /// its TTL still settles: the registration did happen.
    pub fn settle(&mut self, token: &str, handle: &str, now_s: i64) -> Option<i64> {
        match self.claims.get(token) {
            Some(c) if c.handle == handle => {
                let expires = c.expires;
                self.claims.remove(token);
                self.mark_consumed(token, expires, now_s);
                Some(expires)
            }
            _ => None,
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
        self.consumed.insert(token.into(), until);
        self.consumed_order.push_back((token.into(), until));
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
        // the cap eventually reaches.
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

    const HOST: &str = "example.com";

    fn fields<'a>(kind: &'a str, jid: &'a str, expires: f64) -> Fields<'a> {
        Fields {
            kind: Some(kind),
            jid: Some(jid),
            expires: Some(expires),
            allow_registration: true,
            ..Fields::default()
        }
    }

    fn valid(n: &str) -> Option<Name> {
        Some(Name::Valid(n.into()))
    }

    #[test]
    fn test_simple() {
        let e = Entry::from_fields(HOST, "T", fields("register", HOST, 200.0)).unwrap();
        assert_eq!(e.kind, Kind::Register);
        assert_eq!(e.bound(), None);
        assert_eq!(e.expires, 200);
        assert!(e.live(200) && !e.live(201));
        assert_eq!(e.uri(HOST, "T"), None, "no uri stored");
        assert!(e.rare.is_none() || e.rare.as_ref().unwrap().uri == Uri::Absent);
    }

    #[test]
    fn test_bound_and_roster() {
        let mut f = fields("register", "Alice@example.com", 200.0);
        f.node = valid("alice");
        let e = Entry::from_fields(HOST, "T", f).unwrap();
        assert_eq!(e.bound(), valid("alice").as_ref());
        assert_eq!(e.inviter(), None);
        let mut f = fields("roster", "bob@example.com", 200.0);
        f.node = valid("bob");
        let r = Entry::from_fields(HOST, "R", f).unwrap();
        assert_eq!(r.inviter(), Some("bob"));
        assert_eq!(r.bound(), None, "roster invites bind nothing");
    }

    #[test]
    fn test_reset_is_not_bound() {
        let mut f = fields("register", "bob@example.com", 200.0);
        f.node = valid("bob");
        f.reset = valid("bob");
        let e = Entry::from_fields(HOST, "T", f).unwrap();
        assert_eq!(e.bound(), None);
        assert_eq!(e.reset(), valid("bob").as_ref());
    }

    #[test]
    fn test_canonical_uri_is_rebuilt() {
        let mut f = fields("register", HOST, 200.0);
        f.uri = Some("xmpp:example.com?register;preauth=T");
        let e = Entry::from_fields(HOST, "T", f).unwrap();
        assert!(
            e.rare.is_none(),
            "nothing rare about a plain account invite"
        );
        assert_eq!(
            e.uri(HOST, "T").as_deref(),
            Some("xmpp:example.com?register;preauth=T")
        );
        let mut f = fields("roster", "bob@example.com", 200.0);
        f.uri = Some("xmpp:bob@example.com?roster;preauth=R;ibr=y");
        let r = Entry::from_fields(HOST, "R", f).unwrap();
        assert_eq!(
            r.uri(HOST, "R").as_deref(),
            Some("xmpp:bob@example.com?roster;preauth=R;ibr=y")
        );
        let mut f = fields("register", HOST, 200.0);
        f.uri = Some("https://example.com/invite/T");
        let o = Entry::from_fields(HOST, "T", f).unwrap();
        assert_eq!(
            o.uri(HOST, "T").as_deref(),
            Some("https://example.com/invite/T")
        );
    }

    #[test]
    fn test_invalid_records() {
        let roster_without_inviter = fields("roster", HOST, 200.0);
        assert!(Entry::from_fields(HOST, "T", roster_without_inviter).is_none());
        assert!(Entry::from_fields(HOST, "T", fields("other", HOST, 200.0)).is_none());
        let mut no_reg = fields("register", HOST, 200.0);
        no_reg.allow_registration = false;
        assert!(Entry::from_fields(HOST, "T", no_reg).is_none());
        let mut nan = fields("register", HOST, 0.0);
        nan.expires = Some(f64::NAN);
        assert!(Entry::from_fields(HOST, "T", nan).is_none());
        let mut none = fields("register", HOST, 0.0);
        none.expires = None;
        assert!(Entry::from_fields(HOST, "T", none).is_none());
        assert!(Entry::from_fields(HOST, "T", Fields::default()).is_none());
    }

    #[test]
    fn test_invalid_names_match_nothing() {
        assert!(!Name::Unmatchable.matches(Some("")));
        assert!(!Name::Unmatchable.matches(None));
        assert!(!Name::Valid("".into()).matches(None));
        assert!(Name::Valid("a".into()).matches(Some("a")));
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
        assert!(!l.is_claimed("T", 0));
        l.claim("T", "h1".into(), 100, 0).unwrap();
        assert!(l.is_claimed("T", 1));
        assert_eq!(l.claim("T", "h2".into(), 100, 1), Err(Refusal::TokenUsed));
        assert_eq!(l.settle("T", "h2", 0), None);
        assert_eq!(l.settle("T", "h1", 0), Some(100));
        assert!(l.is_consumed("T", 50));
        assert_eq!(l.settle("T", "h1", 0), None, "never twice");
    }

    #[test]
    fn test_release_frees_token() {
        let mut l = Ledger::new();
        l.claim("T", "h".into(), 100, 0).unwrap();
        assert!(!l.release("T", "other"));
        assert!(l.release("T", "h"));
        assert!(!l.is_claimed("T", 1));
    }

    #[test]
    fn test_claim_expires() {
        let mut l = Ledger::new();
        l.claim("T", "h".into(), 100, 0).unwrap();
        assert!(!l.is_claimed("T", CLAIM_TTL_MS));
        l.claim("T", "h2".into(), 100, CLAIM_TTL_MS).unwrap();
        l.sweep(CLAIM_TTL_MS * 3, 0);
        assert_eq!(l.sizes(), (0, 0));
    }

    #[test]
    fn test_consumed_forgotten_after_margin() {
        let mut l = Ledger::new();
        l.mark_consumed("T", 100, 0);
        assert!(l.is_consumed("T", 100 + CONSUMED_MARGIN_S));
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
        assert!(!l.is_consumed("0", 0), "oldest evicted first");
        assert!(l.is_consumed(&(CONSUMED_CAP + 9).to_string(), 0));
    }
}
