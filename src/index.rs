//! The per-host invite index (SPEC §7.2): every valid-shaped host record of mod_invites'
//! `invite_token` store by token, and the tokens of account invites bound to each
//! (nodeprepped) username. Prosody has no such structure: on its default file storage
//! every `get` of the map store parses the host's whole invite file, so stock's preauth
//! and registration cost O(pending invites); here they cost a hash lookup.

use std::collections::HashMap;
use std::sync::Arc;

use crate::invite::{Entry, Extra, Name};
use crate::token::Key;

/// The index of one host.
#[derive(Debug, Default)]
pub struct Index {
    entries: HashMap<Key, Entry>,
    bound: HashMap<Box<str>, Vec<Box<str>>>,
    literals: Vec<Arc<str>>,
    literal_ids: HashMap<Arc<str>, u32>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets everything (before a reload).
    pub fn clear(&mut self) {
        self.entries = HashMap::new();
        self.bound.clear();
        self.literals.clear();
        self.literal_ids.clear();
    }

    /// `additional_data` kept as `literal`, shared with equal ones.
    pub fn intern(&mut self, literal: String) -> Extra {
        if let Some(&id) = self.literal_ids.get(literal.as_str()) {
            return Extra::literal(id);
        }
        let Ok(id) = u32::try_from(self.literals.len()) else {
            return Extra::UNSUPPORTED;
        };
        let shared: Arc<str> = literal.into();
        self.literals.push(shared.clone());
        self.literal_ids.insert(shared, id);
        Extra::literal(id)
    }

    /// The literal `extra` stands for, if any.
    pub fn literal(&self, extra: Extra) -> Option<&str> {
        extra
            .literal_id()
            .and_then(|id| self.literals.get(id as usize))
            .map(|l| &**l)
    }

    /// Adds or replaces the entry of `token`.
    pub fn insert(&mut self, token: &str, entry: Entry) {
        self.remove(token);
        if let Some(Name::Valid(name)) = entry.bound() {
            self.bound
                .entry(name.clone())
                .or_default()
                .push(token.into());
        }
        self.entries.insert(Key::from(token), entry);
    }

    /// Removes the entry of `token`, returning it.
    pub fn remove(&mut self, token: &str) -> Option<Entry> {
        let entry = self.entries.remove(token)?;
        if let Some(Name::Valid(name)) = entry.bound() {
            if let Some(tokens) = self.bound.get_mut(name) {
                tokens.retain(|t| **t != *token);
                if tokens.is_empty() {
                    self.bound.remove(name);
                }
            }
        }
        Some(entry)
    }

    /// The entry of `token`.
    pub fn get(&self, token: &str) -> Option<&Entry> {
        self.entries.get(token)
    }

    /// The tokens of account invites bound to `name` (nodeprepped), expired ones included.
    pub fn bound_to(&self, name: &str) -> &[Box<str>] {
        self.bound.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Tokens whose invite expired before `now` (Unix seconds).
    pub fn expired(&self, now: i64) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(move |(_, e)| !e.live(now))
            .map(|(t, _)| t.as_str())
    }

    /// Number of invites held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no invite is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// About how many bytes of memory the index holds: its tables at their capacity, the
    /// entries' own allocations, the bound names and the `additional_data` literals.
    pub fn heap_bytes(&self) -> usize {
        // A table of capacity c has about c * 8 / 7 buckets of one slot and one control byte.
        let slot = std::mem::size_of::<(Key, Entry)>() + 1;
        let bound_slot = std::mem::size_of::<(Box<str>, Vec<Box<str>>)>() + 1;
        self.entries.capacity() * 8 / 7 * slot
            + self.entries.values().map(Entry::heap_bytes).sum::<usize>()
            + self.bound.capacity() * 8 / 7 * bound_slot
            + self
                .bound
                .iter()
                .map(|(n, t)| n.len() + t.iter().map(|t| 16 + t.len()).sum::<usize>())
                .sum::<usize>()
            + self
                .literals
                .iter()
                .map(|l| 2 * 16 + l.len())
                .sum::<usize>()
    }

    /// Number of distinct usernames that account invites are bound to.
    pub fn bound_names(&self) -> usize {
        self.bound.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invite::Fields;

    fn entry(jid: &str, bound: Option<&str>, expires: f64) -> Entry {
        Entry::from_fields(
            "example.com",
            "T",
            Fields {
                kind: Some("register"),
                jid: Some(jid),
                expires: Some(expires),
                allow_registration: true,
                node: bound.map(|b| Name::Valid(b.into())),
                ..Fields::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn test_simple() {
        let mut i = Index::new();
        i.insert("A", entry("example.com", None, 100.0));
        i.insert("B", entry("Alice@example.com", Some("alice"), 100.0));
        assert_eq!(i.len(), 2);
        assert_eq!(i.bound_to("alice"), &["B".into()]);
        assert_eq!(i.bound_names(), 1);
        assert!(i.get("A").is_some());
        assert!(i.get("C").is_none());
    }

    #[test]
    fn test_replace_and_remove_keep_names_exact() {
        let mut i = Index::new();
        i.insert("B", entry("alice@example.com", Some("alice"), 100.0));
        i.insert("C", entry("alice@example.com", Some("alice"), 100.0));
        i.insert("B", entry("bob@example.com", Some("bob"), 100.0));
        assert_eq!(i.bound_to("alice"), &["C".into()]);
        assert_eq!(i.bound_to("bob"), &["B".into()]);
        i.remove("C");
        assert!(i.bound_to("alice").is_empty());
        assert_eq!(i.bound_names(), 1);
        assert!(i.remove("C").is_none());
    }

    #[test]
    fn test_heap_bytes_grow_with_the_index() {
        let mut i = Index::new();
        let empty = i.heap_bytes();
        for n in 0..1000 {
            let token = format!("tok{n}");
            let uri = format!("xmpp:example.com?register;preauth={token}");
            let fields = Fields {
                kind: Some("register"),
                jid: Some("example.com"),
                expires: Some(100.0),
                allow_registration: true,
                uri: Some(&uri),
                ..Fields::default()
            };
            i.insert(
                &token,
                Entry::from_fields("example.com", &token, fields).unwrap(),
            );
        }
        let full = i.heap_bytes();
        // A plain account invite is one slot: a 32-byte inline key and a 24-byte entry, no
        // allocation of its own; the table at most doubles that.
        assert_eq!(std::mem::size_of::<(Key, Entry)>(), 56);
        assert!(
            full >= empty + 1000 * 57 && full <= empty + 1000 * 2 * 57 * 8 / 7,
            "{full}"
        );
    }

    #[test]
    fn test_expired() {
        let mut i = Index::new();
        i.insert("old", entry("example.com", None, 99.0));
        i.insert("new", entry("example.com", None, 100.0));
        assert_eq!(i.expired(100).collect::<Vec<_>>(), vec!["old"]);
    }

    #[test]
    fn test_literals_are_shared() {
        let mut i = Index::new();
        let a = i.intern(r#"{["groups"]={};}"#.into());
        let b = i.intern(r#"{["groups"]={};}"#.into());
        assert_eq!(a, b);
        assert_ne!(a, i.intern(r#"{["roles"]={};}"#.into()));
        assert_eq!(i.literal(a), Some(r#"{["groups"]={};}"#));
        assert_eq!(i.literal(Extra::NONE), None);
        assert_eq!(i.literal(Extra::UNSUPPORTED), None);
        let mut e = entry("example.com", None, 1.0);
        e.extra = a;
        i.insert("X", e);
        i.clear();
        assert!(i.is_empty());
    }
}
