//! One host's native state and the preauth flow of stock's
//! `stanza/iq/urn:xmpp:pars:0:preauth` handler (SPEC §4.2), split around the storage
//! lookup that stays in Lua: [`Host::preauth_begin`] decides everything that needs no
//! record, [`Host::preauth_finish`] judges the record. The outcome becomes the reply
//! through [`crate::stanza::preauth_reply`].

use crate::error::Error;
use crate::invite::{Ledger, Record, ValidInvite};
use crate::throttle::Throttle;
use crate::token;

/// Default of `invites_register_token_attempts`.
pub const DEFAULT_TOKEN_ATTEMPTS: u32 = 10;

/// A configuration value as read from Prosody, before validation.
#[derive(Debug, Clone, PartialEq)]
pub enum RawOption {
    /// Not set.
    Unset,
    /// A Lua integer.
    Int(i64),
    /// A Lua float.
    Float(f64),
    /// A Lua string.
    Str(String),
    /// Any other Lua value.
    Other,
}

/// Validates `invites_register_token_attempts`: a non-negative integer, no upper cap.
/// Anything else gives the default and the message to log as an error.
pub fn token_attempts(raw: &RawOption) -> (u32, Option<String>) {
    let parsed = match raw {
        RawOption::Unset => return (DEFAULT_TOKEN_ATTEMPTS, None),
        RawOption::Int(i) => Some(*i),
        RawOption::Float(f) if f.fract() == 0.0 && f.is_finite() => Some(*f as i64),
        RawOption::Str(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match parsed {
        Some(n) if n >= 0 => (u32::try_from(n).unwrap_or(u32::MAX), None),
        _ => (
            DEFAULT_TOKEN_ATTEMPTS,
            Some(format!(
                "invites_register_token_attempts must be a non-negative integer, using the default {DEFAULT_TOKEN_ATTEMPTS}"
            )),
        ),
    }
}

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

/// One host's configuration, throttle and ledger.
#[derive(Debug)]
pub struct Host {
    /// Settings.
    pub config: Config,
    throttle: Throttle,
    /// Claims and consumed tokens.
    pub ledger: Ledger,
}

impl Host {
    /// Fresh state for `config`.
    pub fn new(config: Config) -> Self {
        Host {
            throttle: Throttle::new(config.token_attempts),
            config,
            ledger: Ledger::new(),
        }
    }

    /// Steps 1–4 of SPEC §4.2 that need no storage: `Ok(())` means "look the token up
    /// and call [`Host::preauth_finish`]", `Err` is the refusal to send
    /// ([`stanza::preauth_reply`] turns either into the reply).
    pub fn preauth_begin(
        &mut self,
        token: Option<&str>,
        origin: Origin<'_>,
        now_ms: u64,
    ) -> Result<(), Error> {
        if !origin.same_host {
            return Err(Error::WrongHost);
        }
        if self.config.require_encryption && !origin.secure {
            return Err(Error::EncryptionRequired);
        }
        let addr = origin.ip.unwrap_or("");
        if self.throttle.is_throttled(addr, now_ms) {
            return Err(Error::Throttled);
        }
        if !token.is_some_and(token::is_lookup_candidate) {
            self.throttle.record_failure(addr, now_ms);
            return Err(Error::TokenInvalid);
        }
        Ok(())
    }

    /// Steps 4–5 of SPEC §4.2: judges the looked-up record. `record` is `Err(())` when the
    /// storage read failed, which never counts as valid. A failure counts for the throttle.
    pub fn preauth_finish(
        &mut self,
        token: &str,
        record: Result<Option<&Record>, ()>,
        ip: Option<&str>,
        now_ms: u64,
        now_s: i64,
    ) -> Result<ValidInvite, Error> {
        let valid = match record {
            Ok(Some(r)) => r.validate(token, Some(now_s)).ok(),
            _ => None,
        }
        .filter(|v| !self.ledger.is_used(token, v.reusable, now_ms, now_s));
        valid.ok_or_else(|| {
            self.throttle.record_failure(ip.unwrap_or(""), now_ms);
            Error::TokenInvalid
        })
    }

    /// Drops expired claims, consumed entries and throttle windows.
    pub fn sweep(&mut self, now_ms: u64, now_s: i64) {
        self.ledger.sweep(now_ms, now_s);
        self.throttle.sweep(now_ms);
    }

    /// Number of addresses the throttle tracks.
    pub fn throttled_addresses(&self) -> usize {
        self.throttle.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(attempts: u32) -> Host {
        Host::new(Config {
            host: "example.com".into(),
            invite_only: true,
            require_encryption: true,
            token_attempts: attempts,
        })
    }

    const SECURE: Origin<'static> = Origin {
        ip: Some("192.0.2.1"),
        secure: true,
        same_host: true,
    };

    fn record() -> Record {
        Record {
            kind: Some("register".into()),
            jid: Some("example.com".into()),
            expires: Some(1000.0),
            ..Record::default()
        }
    }

    #[test]
    fn test_simple() {
        let mut h = host(10);
        assert_eq!(h.preauth_begin(Some("T"), SECURE, 0), Ok(()));
        let v = h
            .preauth_finish("T", Ok(Some(&record())), SECURE.ip, 0, 10)
            .unwrap();
        assert_eq!(v.token, "T");
    }

    #[test]
    fn test_invalid_plaintext_hides_token() {
        let mut h = host(10);
        let plain = Origin {
            secure: false,
            ..SECURE
        };
        assert_eq!(
            h.preauth_begin(Some("valid"), plain, 0),
            Err(Error::EncryptionRequired)
        );
        assert_eq!(
            h.preauth_begin(Some("bogus"), plain, 0),
            Err(Error::EncryptionRequired)
        );
        assert_eq!(h.throttled_addresses(), 0, "not counted");
    }

    #[test]
    fn test_invalid_wrong_host() {
        let mut h = host(10);
        let other = Origin {
            same_host: false,
            secure: false,
            ..SECURE
        };
        assert_eq!(h.preauth_begin(Some("T"), other, 0), Err(Error::WrongHost));
    }

    #[test]
    fn test_invalid_tokens_count_and_throttle() {
        let mut h = host(2);
        let long = "x".repeat(2000);
        for t in [Some(""), Some(long.as_str())] {
            assert_eq!(h.preauth_begin(t, SECURE, 0), Err(Error::TokenInvalid));
        }
        assert_eq!(
            h.preauth_begin(Some("valid"), SECURE, 1),
            Err(Error::Throttled)
        );
        assert_eq!(h.throttled_addresses(), 1);
        let other = Origin {
            ip: Some("192.0.2.2"),
            ..SECURE
        };
        assert_eq!(h.preauth_begin(Some("valid"), other, 1), Ok(()));
        assert_eq!(h.preauth_begin(None, other, 1), Err(Error::TokenInvalid));
    }

    #[test]
    fn test_successes_do_not_count() {
        let mut h = host(1);
        for _ in 0..5 {
            assert_eq!(h.preauth_begin(Some("T"), SECURE, 0), Ok(()));
            assert!(h
                .preauth_finish("T", Ok(Some(&record())), SECURE.ip, 0, 10)
                .is_ok());
        }
        assert_eq!(h.throttled_addresses(), 0);
    }

    #[test]
    fn test_storage_error_is_invalid() {
        let mut h = host(10);
        assert_eq!(
            h.preauth_finish("T", Err(()), SECURE.ip, 0, 10),
            Err(Error::TokenInvalid)
        );
        assert_eq!(
            h.preauth_finish("T", Ok(None), SECURE.ip, 0, 10),
            Err(Error::TokenInvalid)
        );
    }

    #[test]
    fn test_consumed_token_is_invalid() {
        let mut h = host(10);
        h.ledger.mark_consumed("T", 1000, 10);
        assert_eq!(
            h.preauth_finish("T", Ok(Some(&record())), SECURE.ip, 0, 10),
            Err(Error::TokenInvalid)
        );
    }

    #[test]
    fn test_token_attempts_option() {
        assert_eq!(token_attempts(&RawOption::Unset), (10, None));
        assert_eq!(token_attempts(&RawOption::Int(0)), (0, None));
        assert_eq!(token_attempts(&RawOption::Int(5_000_000_000)).0, u32::MAX);
        assert_eq!(token_attempts(&RawOption::Float(3.0)), (3, None));
        assert_eq!(token_attempts(&RawOption::Str("7".into())), (7, None));
        for bad in [
            RawOption::Int(-1),
            RawOption::Float(2.5),
            RawOption::Str("many".into()),
            RawOption::Other,
        ] {
            let (n, warn) = token_attempts(&bad);
            assert_eq!(n, 10);
            assert!(warn.unwrap().contains("invites_register_token_attempts"));
        }
    }
}
