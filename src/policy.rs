//! The registration decision of `user-registering` (SPEC §4.3, §7.3 F11–F12) as a pure
//! function. Mirrors stock mod_invites_register's hook, plus what stock leaves out: single
//! use, revocation after preauth, username binding, the reset user and username
//! reservation (XEP-0445 §5: a username-bound invite reserves its name until it expires).

use crate::error::Refusal;
use crate::invite::Name;

/// The invite a registration presents, as the index sees it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    /// No invite, or one validated on another host.
    None,
    /// An invite whose token is gone from the store, consumed, claimed by another
    /// registration in progress, or not a token at all.
    Unusable,
    /// A usable invite.
    Invite {
        /// The name an account invite is bound to.
        bound: Option<&'a Name>,
        /// The account a reset invite resets.
        reset: Option<&'a Name>,
    },
}

/// The module's vote on one registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Leave `event.allowed` as it is (open registration without an invite).
    NoOpinion,
    /// Allowed; for a reset invite, `event.allow_reset` is set to this username.
    Allow {
        /// The account a reset invite resets.
        reset: Option<String>,
    },
    /// `event.allowed = false` with this reason.
    Refuse(Refusal),
}

/// Decides one registration that no other module refused yet.
/// - `username`: the requested username after nodeprep (`None` if it fails nodeprep).
/// - `reserved`: an unexpired, unconsumed account invite other than the presented one is
///   bound to `username`.
pub fn decide(
    invite_only: bool,
    presented: Presented<'_>,
    username: Option<&str>,
    reserved: bool,
) -> Decision {
    let (bound, reset) = match presented {
        Presented::None if invite_only => return Decision::Refuse(Refusal::NoInvite),
        Presented::None if reserved => return Decision::Refuse(Refusal::Reserved),
        Presented::None => return Decision::NoOpinion,
        Presented::Unusable => return Decision::Refuse(Refusal::TokenUsed),
        Presented::Invite { bound, reset } => (bound, reset),
    };
    if let Some(reset) = reset {
        // A reset invite names its account: it resets, it registers no new name.
        return match reset.as_str() {
            Some(name) if reset.matches(username) => Decision::Allow {
                reset: Some(name.to_owned()),
            },
            _ => Decision::Refuse(Refusal::WrongResetUsername),
        };
    }
    match bound {
        Some(name) if !name.matches(username) => Decision::Refuse(Refusal::WrongUsername),
        // The invite bound to this name may always take it.
        Some(_) => Decision::Allow { reset: None },
        None if reserved => Decision::Refuse(Refusal::Reserved),
        None => Decision::Allow { reset: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// invite_only, presented, username, reserved → expected decision.
    type Case<'a> = (bool, Presented<'a>, Option<&'a str>, bool, Decision);

    #[test]
    fn test_decision_table() {
        let alice = Name::Valid("alice".into());
        let bob = Name::Valid("bob".into());
        let broken = Name::Unmatchable;
        let plain = Presented::Invite {
            bound: None,
            reset: None,
        };
        let bound = Presented::Invite {
            bound: Some(&alice),
            reset: None,
        };
        let reset = Presented::Invite {
            bound: None,
            reset: Some(&bob),
        };
        let allow = Decision::Allow { reset: None };
        let refuse = Decision::Refuse;
        let cases: Vec<Case<'_>> = vec![
            (
                true,
                Presented::None,
                Some("a"),
                false,
                refuse(Refusal::NoInvite),
            ),
            (
                true,
                Presented::None,
                Some("a"),
                true,
                refuse(Refusal::NoInvite),
            ),
            (
                false,
                Presented::None,
                Some("a"),
                false,
                Decision::NoOpinion,
            ),
            (
                false,
                Presented::None,
                Some("a"),
                true,
                refuse(Refusal::Reserved),
            ),
            (
                true,
                Presented::Unusable,
                Some("a"),
                false,
                refuse(Refusal::TokenUsed),
            ),
            (
                false,
                Presented::Unusable,
                Some("a"),
                true,
                refuse(Refusal::TokenUsed),
            ),
            (true, plain, Some("a"), false, allow.clone()),
            (true, plain, Some("alice"), true, refuse(Refusal::Reserved)),
            (true, plain, None, false, allow.clone()),
            (true, bound, Some("alice"), false, allow.clone()),
            (true, bound, Some("alice"), true, allow.clone()),
            (
                true,
                bound,
                Some("mallory"),
                false,
                refuse(Refusal::WrongUsername),
            ),
            (true, bound, None, false, refuse(Refusal::WrongUsername)),
            (
                true,
                Presented::Invite {
                    bound: Some(&broken),
                    reset: None,
                },
                Some(""),
                false,
                refuse(Refusal::WrongUsername),
            ),
            (
                true,
                reset,
                Some("bob"),
                true,
                Decision::Allow {
                    reset: Some("bob".into()),
                },
            ),
            (
                true,
                reset,
                Some("eve"),
                false,
                refuse(Refusal::WrongResetUsername),
            ),
            (
                true,
                Presented::Invite {
                    bound: None,
                    reset: Some(&broken),
                },
                Some(""),
                false,
                refuse(Refusal::WrongResetUsername),
            ),
        ];
        for (n, (only, presented, user, reserved, want)) in cases.into_iter().enumerate() {
            assert_eq!(decide(only, presented, user, reserved), want, "case {n}");
        }
    }
}
