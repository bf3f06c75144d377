//! Failed-preauth throttle (SPEC §4.2 step 3, §7.3 F15): at most N failures per client
//! address in a sliding 60-second window, IPv6 clients counted per network (a /64 by
//! default: one subscriber line holds a whole /64). Stock has none, which makes preauth a
//! token oracle. Memory is bounded: entries expire after the window and the table is
//! capped, evicting the address whose last failure is oldest.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};

/// The sliding window, ms.
pub const WINDOW_MS: u64 = 60_000;
/// Most addresses tracked at once.
pub const MAX_ADDRESSES: usize = 10_000;

/// Default of `invites_register_throttle_ipv6_prefix`.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// The throttle bucket of a client address (`session.ip`): IPv4 addresses (also when
/// IPv4-mapped, `::ffff:192.0.2.1`) count alone, IPv6 addresses per network of
/// `v6_prefix` bits (`2001:db8:1:2::/64`). No address shares one bucket (""); an address
/// that does not parse (it never comes from a socket) counts alone, as given.
pub fn network_key(ip: Option<&str>, v6_prefix: u8) -> String {
    let Some(ip) = ip else {
        return String::new();
    };
    // A zone index (fe80::1%eth0) names the interface, not the network.
    let bare = ip.split('%').next().unwrap_or(ip);
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let prefix = v6_prefix.min(128);
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                let net = Ipv6Addr::from(u128::from(v6) & mask);
                format!("{net}/{prefix}")
            }
        },
        Err(_) => ip.to_owned(),
    }
}

/// Per-host throttle of failed preauths.
#[derive(Debug)]
pub struct Throttle {
    limit: u32,
    failures: HashMap<String, VecDeque<u64>>,
}

impl Throttle {
    /// A throttle allowing `limit` failures per address per window; 0 disables it.
    pub fn new(limit: u32) -> Self {
        Throttle {
            limit,
            failures: HashMap::new(),
        }
    }

    /// True when `addr` has used up its `limit` failures in the window: the next attempt
    /// would be one too many.
    pub fn is_throttled(&mut self, addr: &str, now_ms: u64) -> bool {
        if self.limit == 0 {
            return false;
        }
        let Some(times) = self.failures.get_mut(addr) else {
            return false;
        };
        expire(times, now_ms);
        if times.is_empty() {
            self.failures.remove(addr);
            return false;
        }
        times.len() >= self.limit as usize
    }

    /// Counts a failed attempt from `addr`.
    pub fn record_failure(&mut self, addr: &str, now_ms: u64) {
        if self.limit == 0 {
            return;
        }
        if !self.failures.contains_key(addr) && self.failures.len() >= MAX_ADDRESSES {
            self.make_room(now_ms);
        }
        let times = self.failures.entry(addr.to_owned()).or_default();
        expire(times, now_ms);
        times.push_back(now_ms);
        // Only the newest `limit` failures can matter.
        while times.len() > self.limit as usize {
            times.pop_front();
        }
    }

    /// Drops expired entries; if the table is still full, evicts the tenth of addresses
    /// whose last failure is oldest (in one pass, so a flood of new addresses costs
    /// amortised O(1) per failure).
    fn make_room(&mut self, now_ms: u64) {
        self.failures.retain(|_, t| {
            expire(t, now_ms);
            !t.is_empty()
        });
        if self.failures.len() < MAX_ADDRESSES {
            return;
        }
        let mut by_age: Vec<(u64, String)> = self
            .failures
            .iter()
            .map(|(k, t)| (t.back().copied().unwrap_or(0), k.clone()))
            .collect();
        let evict = MAX_ADDRESSES / 10;
        by_age.select_nth_unstable(evict - 1);
        for (_, k) in by_age.iter().take(evict) {
            self.failures.remove(k);
        }
    }

    /// Forgets addresses whose failures have all left the window.
    pub fn sweep(&mut self, now_ms: u64) {
        self.failures.retain(|_, t| {
            expire(t, now_ms);
            !t.is_empty()
        });
    }

    /// Number of addresses tracked.
    pub fn len(&self) -> usize {
        self.failures.len()
    }

    /// True when no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.failures.is_empty()
    }
}

fn expire(times: &mut VecDeque<u64>, now_ms: u64) {
    while times
        .front()
        .is_some_and(|&t| now_ms.saturating_sub(t) >= WINDOW_MS)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_simple() {
        let mut t = Throttle::new(3);
        for i in 0..3 {
            assert!(!t.is_throttled("1.2.3.4", i));
            t.record_failure("1.2.3.4", i);
        }
        assert!(t.is_throttled("1.2.3.4", 10));
        assert!(!t.is_throttled("5.6.7.8", 10), "per address");
    }

    #[test]
    fn test_window_slides() {
        let mut t = Throttle::new(2);
        t.record_failure("a", 0);
        t.record_failure("a", 30_000);
        assert!(t.is_throttled("a", 59_999));
        assert!(
            !t.is_throttled("a", 60_000),
            "first failure left the window"
        );
        t.record_failure("a", 60_000);
        assert!(t.is_throttled("a", 60_001));
        assert!(!t.is_throttled("a", 120_000));
    }

    #[test]
    fn test_zero_disables() {
        let mut t = Throttle::new(0);
        for i in 0..100 {
            t.record_failure("a", i);
        }
        assert!(!t.is_throttled("a", 100));
        assert!(t.is_empty());
    }

    #[test]
    fn test_memory_bounded() {
        let mut t = Throttle::new(10);
        for i in 0..100_000u64 {
            t.record_failure(&format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255), i);
        }
        assert!(t.len() <= MAX_ADDRESSES);
        // The newest addresses survive, the oldest were evicted.
        assert!(t.failures.contains_key("10.1.134.159"));
        assert!(!t.failures.contains_key("10.0.0.0"));
    }

    #[test]
    fn test_sweep_forgets_quiet_addresses() {
        let mut t = Throttle::new(5);
        t.record_failure("a", 0);
        t.record_failure("b", 30_000);
        t.sweep(WINDOW_MS + 1);
        assert_eq!(t.len(), 1);
        t.sweep(WINDOW_MS + 30_000);
        assert!(t.is_empty());
    }

    #[test]
    fn test_network_key() {
        let key = |ip, p| network_key(Some(ip), p);
        assert_eq!(key("192.0.2.1", 64), "192.0.2.1");
        assert_eq!(key("::ffff:192.0.2.1", 64), "192.0.2.1");
        assert_eq!(key("2001:db8:1:2:3:4:5:6", 64), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff::1", 64), "2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:3::1", 64), key("2001:db8:1:2::1", 64));
        assert_eq!(key("2001:db8:1:2:3:4:5:6", 48), "2001:db8:1::/48");
        assert_eq!(key("2001:db8::1", 128), "2001:db8::1/128");
        assert_eq!(key("2001:db8::1", 0), "::/0");
        assert_eq!(key("2001:db8::1", 200), "2001:db8::1/128");
        assert_eq!(key("::1", 64), "::/64");
        assert_eq!(key("fe80::1%eth0", 64), "fe80::/64");
        assert_eq!(key("not an address", 64), "not an address");
        assert_eq!(network_key(None, 64), "");
    }

    #[test]
    fn test_ipv6_network_shares_a_bucket() {
        let mut t = Throttle::new(2);
        for host in ["2001:db8::1", "2001:db8::2"] {
            t.record_failure(&network_key(Some(host), 64), 0);
        }
        assert!(t.is_throttled(&network_key(Some("2001:db8::ffff"), 64), 1));
        assert!(!t.is_throttled(&network_key(Some("2001:db8:0:1::1"), 64), 1));
    }

    #[test]
    fn test_entries_expire() {
        let mut t = Throttle::new(5);
        t.record_failure("a", 0);
        assert!(!t.is_throttled("a", WINDOW_MS));
        assert!(t.is_empty());
    }
}
