//! Consumed tokens waiting to be deleted from mod_invites' store (SPEC §7.2). On Prosody's
//! file storage every write of the map store parses and rewrites the host's whole invite
//! file, so one delete per registration costs O(pending invites) each; here deletions
//! are collected and written with one `set_keys` per batch. Single use does not wait for
//! the batch: a token is refused from the moment it is queued (and a durable marker,
//! written by the plugin before queueing, survives a crash).

use std::collections::HashMap;

/// Largest share of the server's time batch writes may take.
pub const WRITE_BUDGET: f64 = 0.05;

/// What to delete for one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// A host record exists (account invites, roster invites allowing registration).
    pub host: bool,
    /// The inviter whose per-user entry holds the token (roster invites).
    pub user: Option<Box<str>>,
}

/// One batch: host keys to delete, and per-user keys by user.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// Tokens to delete from the host map.
    pub host: Vec<String>,
    /// Tokens to delete from each user's map.
    pub users: Vec<(String, Vec<String>)>,
}

impl Batch {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.host.is_empty() && self.users.is_empty()
    }
}

/// The deletion queue of one host.
#[derive(Debug, Default)]
pub struct Deletions {
    pending: HashMap<Box<str>, Deletion>,
    writing: HashMap<Box<str>, Deletion>,
}

impl Deletions {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `token`.
    pub fn push(&mut self, token: &str, deletion: Deletion) {
        self.pending.insert(token.into(), deletion);
    }

    /// True while `token` waits for (or is in) a batch write.
    pub fn contains(&self, token: &str) -> bool {
        self.pending.contains_key(token) || self.writing.contains_key(token)
    }

    /// Tokens waiting, written or not.
    pub fn len(&self) -> usize {
        self.pending.len() + self.writing.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts a batch write of everything pending (tokens queued meanwhile go into the
    /// next one).
    pub fn take(&mut self) -> Batch {
        let mut users: HashMap<Box<str>, Vec<String>> = HashMap::new();
        let mut batch = Batch::default();
        for (token, d) in self.pending.drain() {
            if d.host {
                batch.host.push(token.to_string());
            }
            if let Some(user) = &d.user {
                users
                    .entry(user.clone())
                    .or_default()
                    .push(token.to_string());
            }
            self.writing.insert(token, d);
        }
        batch.host.sort();
        batch.users = users
            .into_iter()
            .map(|(u, mut t)| {
                t.sort();
                (u.into_string(), t)
            })
            .collect();
        batch.users.sort();
        batch
    }

    /// The batch write ended: on success its tokens are gone for good (returned, for the
    /// markers to remove); on failure they wait for the next batch.
    pub fn done(&mut self, ok: bool) -> Vec<String> {
        if ok {
            return self.writing.drain().map(|(t, _)| t.into_string()).collect();
        }
        for (token, d) in self.writing.drain() {
            self.pending.entry(token).or_insert(d);
        }
        Vec::new()
    }
}

/// Seconds until the next batch write: `delay` (the option), stretched so that writes
/// that took `write_s` seconds stay within [`WRITE_BUDGET`] of the time.
pub fn next_interval(delay: f64, write_s: f64) -> f64 {
    let stretched = if write_s.is_finite() && write_s > 0.0 {
        write_s / WRITE_BUDGET
    } else {
        0.0
    };
    delay.max(stretched)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Deletion {
        Deletion {
            host: true,
            user: None,
        }
    }

    #[test]
    fn test_simple() {
        let mut d = Deletions::new();
        d.push("B", host());
        d.push(
            "A",
            Deletion {
                host: true,
                user: Some("juliet".into()),
            },
        );
        d.push(
            "C",
            Deletion {
                host: false,
                user: Some("juliet".into()),
            },
        );
        assert!(d.contains("A"));
        let batch = d.take();
        assert_eq!(batch.host, vec!["A", "B"]);
        assert_eq!(
            batch.users,
            vec![("juliet".to_string(), vec!["A".to_string(), "C".to_string()])]
        );
        assert!(d.contains("C"), "still refused while the batch is written");
        d.push("D", host());
        let mut gone = d.done(true);
        gone.sort();
        assert_eq!(gone, vec!["A", "B", "C"]);
        assert!(!d.contains("A"));
        assert_eq!(d.len(), 1);
        assert_eq!(d.take().host, vec!["D"]);
    }

    #[test]
    fn test_failed_write_is_retried() {
        let mut d = Deletions::new();
        d.push("A", host());
        assert!(!d.take().is_empty());
        assert!(d.done(false).is_empty());
        assert!(d.contains("A"));
        assert_eq!(d.take().host, vec!["A"]);
        assert!(d.take().is_empty(), "nothing new pending");
    }

    #[test]
    fn test_interval_stretches_within_budget() {
        assert_eq!(next_interval(2.0, 0.001), 2.0);
        assert_eq!(next_interval(2.0, 1.0), 20.0);
        assert_eq!(next_interval(0.5, f64::NAN), 0.5);
        assert_eq!(next_interval(2.0, -1.0), 2.0);
    }
}
