//! The module's numeric options (SPEC §3, §7.1), validated the same way: Prosody 0.12's
//! typed getters return nil for a value they cannot parse, so the plugin hands the raw
//! value over and gets the value to use plus, for a bad one, the error line to log.

/// A configuration value as read with `module:get_option`, before validation.
#[derive(Debug, Clone, PartialEq)]
pub enum RawOption {
    /// Not set.
    Unset,
    /// A Lua integer.
    Int(i64),
    /// A Lua float.
    Float(f64),
    /// A Lua string (Prosody's config may hold "10").
    Str(String),
    /// Any other Lua value.
    Other,
}

/// A numeric option with its name, default and inclusive range.
#[derive(Debug, Clone, Copy)]
pub struct NumOption {
    /// The option's name in the config.
    pub name: &'static str,
    /// Used when unset or invalid.
    pub default: i64,
    /// Smallest accepted value.
    pub min: i64,
    /// Largest accepted value.
    pub max: i64,
    /// Fractions are accepted (seconds); otherwise only integers.
    pub fractional: bool,
}

/// `invites_register_token_attempts`: failed preauths per address per minute; 0 = off.
pub const TOKEN_ATTEMPTS: NumOption = NumOption {
    name: "invites_register_token_attempts",
    default: 10,
    min: 0,
    max: u32::MAX as i64,
    fractional: false,
};

/// `invites_register_throttle_ipv6_prefix`: IPv6 throttle network size in bits.
pub const IPV6_PREFIX: NumOption = NumOption {
    name: "invites_register_throttle_ipv6_prefix",
    default: 64,
    min: 0,
    max: 128,
    fractional: false,
};

/// `invites_register_cleanup_interval`: seconds between expired-invite cleanups; 0 = never.
pub const CLEANUP_INTERVAL: NumOption = NumOption {
    name: "invites_register_cleanup_interval",
    default: 3600,
    min: 0,
    max: 365 * 86_400,
    fractional: false,
};

/// `invites_register_delete_delay`: seconds within which consumed tokens are deleted
/// from mod_invites' store in one batch; 0 = at once.
pub const DELETE_DELAY: NumOption = NumOption {
    name: "invites_register_delete_delay",
    default: 2,
    min: 0,
    max: 3600,
    fractional: true,
};

impl NumOption {
    /// The value to use, and the error to log when `raw` is set but invalid. Values above
    /// `max` of an option without an upper cap (token attempts) saturate.
    pub fn parse(&self, raw: &RawOption) -> (f64, Option<String>) {
        let parsed = match raw {
            RawOption::Unset => return (self.default as f64, None),
            RawOption::Int(i) => Some(*i as f64),
            RawOption::Float(f) => Some(*f),
            RawOption::Str(s) => s.trim().parse::<f64>().ok(),
            RawOption::Other => None,
        }
        .filter(|n| n.is_finite() && (self.fractional || n.fract() == 0.0));
        let (min, max) = (self.min as f64, self.max as f64);
        match parsed {
            Some(n) if n >= min && n <= max => (n, None),
            Some(n) if n > max && self.name == TOKEN_ATTEMPTS.name => (max, None),
            _ => (
                self.default as f64,
                Some(format!(
                    "{} must be {} from {} to {}, using the default {}",
                    self.name,
                    if self.fractional {
                        "a number"
                    } else {
                        "an integer"
                    },
                    self.min,
                    self.max,
                    self.default
                )),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_simple() {
        assert_eq!(TOKEN_ATTEMPTS.parse(&RawOption::Unset), (10.0, None));
        assert_eq!(TOKEN_ATTEMPTS.parse(&RawOption::Int(0)), (0.0, None));
        assert_eq!(TOKEN_ATTEMPTS.parse(&RawOption::Float(3.0)), (3.0, None));
        assert_eq!(
            TOKEN_ATTEMPTS.parse(&RawOption::Str(" 7".into())),
            (7.0, None)
        );
        assert_eq!(IPV6_PREFIX.parse(&RawOption::Int(48)), (48.0, None));
        assert_eq!(CLEANUP_INTERVAL.parse(&RawOption::Int(0)), (0.0, None));
        assert_eq!(DELETE_DELAY.parse(&RawOption::Unset), (2.0, None));
        assert_eq!(DELETE_DELAY.parse(&RawOption::Float(0.25)), (0.25, None));
    }

    #[test]
    fn test_token_attempts_has_no_upper_cap() {
        assert_eq!(
            TOKEN_ATTEMPTS.parse(&RawOption::Int(5_000_000_000)),
            (f64::from(u32::MAX), None)
        );
    }

    #[test]
    fn test_invalid_values_give_the_default_and_an_error() {
        for (opt, bad) in [
            (TOKEN_ATTEMPTS, RawOption::Int(-1)),
            (TOKEN_ATTEMPTS, RawOption::Float(2.5)),
            (TOKEN_ATTEMPTS, RawOption::Str("many".into())),
            (TOKEN_ATTEMPTS, RawOption::Other),
            (IPV6_PREFIX, RawOption::Int(129)),
            (IPV6_PREFIX, RawOption::Int(-1)),
            (CLEANUP_INTERVAL, RawOption::Int(-5)),
            (DELETE_DELAY, RawOption::Float(f64::NAN)),
            (CLEANUP_INTERVAL, RawOption::Float(0.5)),
            (DELETE_DELAY, RawOption::Int(86_400)),
        ] {
            let (value, err) = opt.parse(&bad);
            assert_eq!(value, opt.default as f64, "{bad:?}");
            assert!(err.unwrap().starts_with(opt.name), "{bad:?}");
        }
    }
}
