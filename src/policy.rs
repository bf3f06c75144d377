//! The registration decision of `user-registering` (SPEC §4.3), as a pure function, and
//! the interpretation of `additional_data.roles` for `user-registered` (SPEC §4.4).
//! Mirrors stock mod_invites_register's hooks, plus single use, username binding and
//! reset-user checks that stock leaves out.

use crate::error::Error;

/// The invite a registration presents, with everything already normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented<'a> {
    /// Consumed, or claimed by another registration in progress (ledger).
    pub used: bool,
    /// Username binding after nodeprep (`Some("")` if the binding failed nodeprep).
    pub bound: Option<&'a str>,
    /// Account a reset invite may reset, after nodeprep.
    pub reset: Option<&'a str>,
}

/// The module's vote on one registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Leave `event.allowed` as it is.
    NoOpinion,
    /// `event.allowed = false` with this reason.
    Refuse(Error),
    /// Allowed; for a reset invite, set `event.allow_reset` to this username.
    Allow {
        /// The account a reset invite resets.
        allow_reset: Option<String>,
    },
}

/// Decides one registration (SPEC §4.3 steps 1–5).
/// - `already_refused`: another module set `allowed = false` first.
/// - `invite`: `None` without an invite (or one validated on another host);
///   `Some(Err(_))` when a front-end's invite has no valid record any more.
/// - `username`: the requested username after nodeprep (`None` if it fails nodeprep).
pub fn decide(
    invite_only: bool,
    already_refused: bool,
    invite: Option<Result<Presented<'_>, Error>>,
    username: Option<&str>,
) -> Decision {
    if already_refused {
        return Decision::NoOpinion;
    }
    let invite = match invite {
        None if invite_only => return Decision::Refuse(Error::NoInvite),
        None => return Decision::NoOpinion,
        Some(Err(_)) => return Decision::Refuse(Error::TokenUsed),
        Some(Ok(p)) => p,
    };
    if invite.used {
        return Decision::Refuse(Error::TokenUsed);
    }
    if let Some(reset) = invite.reset {
        if username != Some(reset) {
            return Decision::Refuse(Error::WrongResetUsername);
        }
        return Decision::Allow {
            allow_reset: Some(reset.to_owned()),
        };
    }
    if let Some(bound) = invite.bound {
        if username != Some(bound) {
            return Decision::Refuse(Error::WrongUsername);
        }
    }
    Decision::Allow { allow_reset: None }
}

/// A key or value of a Lua table, reduced to what role tables may hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
    /// `true`.
    True,
    /// Anything else.
    Other,
}

/// The shapes `additional_data.roles` comes in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roles {
    /// `{"prosody:admin", "x"}`: the first is the primary role (13), the rest secondary.
    List(Vec<String>),
    /// `{["prosody:admin"] = true}` as 0.12 stores it; names sorted.
    Set(Vec<String>),
    /// Anything else: logged and ignored.
    Invalid,
}

/// Classifies the entries of a roles table.
pub fn classify_roles(entries: &[(Scalar, Scalar)]) -> Roles {
    if entries.is_empty() {
        return Roles::Invalid;
    }
    let mut list: Vec<(i64, String)> = Vec::new();
    let mut set: Vec<String> = Vec::new();
    for (k, v) in entries {
        match (k, v) {
            (Scalar::Int(i), Scalar::Str(s)) => list.push((*i, s.clone())),
            (Scalar::Str(s), Scalar::True) => set.push(s.clone()),
            _ => return Roles::Invalid,
        }
    }
    match (list.is_empty(), set.is_empty()) {
        (false, true) => {
            list.sort_by_key(|(i, _)| *i);
            let contiguous = list
                .iter()
                .enumerate()
                .all(|(n, (i, _))| *i == n as i64 + 1);
            if contiguous {
                Roles::List(list.into_iter().map(|(_, s)| s).collect())
            } else {
                Roles::Invalid
            }
        }
        (true, false) => {
            set.sort();
            Roles::Set(set)
        }
        _ => Roles::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// invite_only, already_refused, invite, username → expected decision.
    type Case<'a> = (
        bool,
        bool,
        Option<Result<Presented<'a>, Error>>,
        Option<&'a str>,
        Decision,
    );

    const PLAIN: Presented<'static> = Presented {
        used: false,
        bound: None,
        reset: None,
    };

    #[test]
    fn test_decision_table() {
        let allow = Decision::Allow { allow_reset: None };
        let cases: Vec<Case<'_>> = vec![
            (true, true, None, Some("a"), Decision::NoOpinion),
            (
                true,
                false,
                None,
                Some("a"),
                Decision::Refuse(Error::NoInvite),
            ),
            (false, false, None, Some("a"), Decision::NoOpinion),
            (true, false, Some(Ok(PLAIN)), Some("a"), allow.clone()),
            (false, false, Some(Ok(PLAIN)), Some("a"), allow.clone()),
            (
                false,
                false,
                Some(Ok(Presented {
                    used: true,
                    ..PLAIN
                })),
                Some("a"),
                Decision::Refuse(Error::TokenUsed),
            ),
            (
                true,
                false,
                Some(Err(Error::TokenInvalid)),
                Some("a"),
                Decision::Refuse(Error::TokenUsed),
            ),
            (
                true,
                false,
                Some(Ok(Presented {
                    bound: Some("alice"),
                    ..PLAIN
                })),
                Some("mallory"),
                Decision::Refuse(Error::WrongUsername),
            ),
            (
                true,
                false,
                Some(Ok(Presented {
                    bound: Some("alice"),
                    ..PLAIN
                })),
                Some("alice"),
                allow.clone(),
            ),
            (
                true,
                false,
                Some(Ok(Presented {
                    bound: Some("alice"),
                    ..PLAIN
                })),
                None,
                Decision::Refuse(Error::WrongUsername),
            ),
            (
                true,
                false,
                Some(Ok(Presented {
                    reset: Some("bob"),
                    ..PLAIN
                })),
                Some("eve"),
                Decision::Refuse(Error::WrongResetUsername),
            ),
            (
                true,
                false,
                Some(Ok(Presented {
                    reset: Some("bob"),
                    ..PLAIN
                })),
                Some("bob"),
                Decision::Allow {
                    allow_reset: Some("bob".into()),
                },
            ),
            (
                true,
                false,
                Some(Ok(Presented {
                    used: true,
                    reset: Some("bob"),
                    ..PLAIN
                })),
                Some("bob"),
                Decision::Refuse(Error::TokenUsed),
            ),
        ];
        for (n, (only, refused, invite, user, want)) in cases.into_iter().enumerate() {
            assert_eq!(decide(only, refused, invite, user), want, "case {n}");
        }
    }

    #[test]
    fn test_roles_list() {
        let e = vec![
            (Scalar::Int(2), Scalar::Str("b".into())),
            (Scalar::Int(1), Scalar::Str("a".into())),
        ];
        assert_eq!(
            classify_roles(&e),
            Roles::List(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn test_roles_set() {
        let e = vec![(Scalar::Str("prosody:admin".into()), Scalar::True)];
        assert_eq!(classify_roles(&e), Roles::Set(vec!["prosody:admin".into()]));
    }

    #[test]
    fn test_invalid_roles() {
        assert_eq!(classify_roles(&[]), Roles::Invalid);
        assert_eq!(
            classify_roles(&[(Scalar::Int(2), Scalar::Str("a".into()))]),
            Roles::Invalid
        );
        assert_eq!(
            classify_roles(&[(Scalar::Str("a".into()), Scalar::Other)]),
            Roles::Invalid
        );
        assert_eq!(
            classify_roles(&[
                (Scalar::Int(1), Scalar::Str("a".into())),
                (Scalar::Str("b".into()), Scalar::True)
            ]),
            Roles::Invalid
        );
    }
}
