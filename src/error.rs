//! Why a preauth or a registration is refused (SPEC §4.2, §4.3, §7.3): the codes the glue
//! hands to Lua (`nil, "kebab-code"`), the texts Prosody puts into replies and
//! `event.reason`, the XMPP error type and condition of preauth replies, and the
//! `result` label of the module's metrics (SPEC §7.4).

use std::fmt;

/// An expected refusal. Each has a stable code, a text and a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// A stream of one host addressed a preauth to another host.
    WrongHost,
    /// A preauth arrived over an unencrypted stream while encryption is required.
    EncryptionRequired,
    /// Too many failed preauths from this address (or network) in the last minute.
    Throttled,
    /// The token is missing, unknown, expired, consumed, claimed or not for registration.
    TokenInvalid,
    /// Invite-only registration without an invite.
    NoInvite,
    /// The invite was valid at preauth but is consumed, claimed or gone from the store.
    TokenUsed,
    /// A username-bound invite used for another username.
    WrongUsername,
    /// The username is reserved by a pending invite bound to it (XEP-0445 §5).
    Reserved,
    /// A password-reset invite used for another account.
    WrongResetUsername,
    /// The native library could not be used (reported by the plugin's fail-closed path).
    Unavailable,
}

/// Every refusal, in declaration order.
pub const ALL: [Refusal; 10] = [
    Refusal::WrongHost,
    Refusal::EncryptionRequired,
    Refusal::Throttled,
    Refusal::TokenInvalid,
    Refusal::NoInvite,
    Refusal::TokenUsed,
    Refusal::WrongUsername,
    Refusal::Reserved,
    Refusal::WrongResetUsername,
    Refusal::Unavailable,
];

impl Refusal {
    /// The kebab-case code Lua sees.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::WrongHost => "wrong-host",
            Refusal::EncryptionRequired => "encryption-required",
            Refusal::Throttled => "throttled",
            Refusal::TokenInvalid => "token-invalid",
            Refusal::NoInvite => "invite-required",
            Refusal::TokenUsed => "token-used",
            Refusal::WrongUsername => "wrong-username",
            Refusal::Reserved => "username-reserved",
            Refusal::WrongResetUsername => "wrong-reset-username",
            Refusal::Unavailable => "unavailable",
        }
    }

    /// The text the client sees (error `<text/>` or `event.reason`).
    pub fn text(self) -> &'static str {
        match self {
            Refusal::WrongHost => "This stream is not for the addressed host",
            Refusal::EncryptionRequired => "Encryption is required",
            Refusal::Throttled => "Too many invalid invite tokens, try again later",
            Refusal::TokenInvalid => "The provided token is invalid or expired",
            Refusal::NoInvite => "Registration on this server is through invitation only",
            Refusal::TokenUsed => "The invite token is no longer valid",
            Refusal::WrongUsername => "The chosen username is not valid with this invitation",
            Refusal::Reserved => "The chosen username is reserved",
            Refusal::WrongResetUsername => "Incorrect username for password reset",
            Refusal::Unavailable => "Registration is temporarily unavailable",
        }
    }

    /// The `result` label of the `preauth` or `registrations` counter.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::WrongHost => "wrong_host",
            Refusal::EncryptionRequired => "encryption_required",
            Refusal::Throttled => "throttled",
            Refusal::TokenInvalid => "invalid",
            Refusal::NoInvite => "no_invite",
            Refusal::TokenUsed => "used",
            Refusal::WrongUsername => "username",
            Refusal::Reserved => "reserved",
            Refusal::WrongResetUsername => "reset_user",
            Refusal::Unavailable => "unavailable",
        }
    }

    /// For preauth refusals, the RFC 6120 §8.3 error type and defined condition of the
    /// reply; `None` for registration refusals (mod_register_ibr answers those with
    /// modify/not-acceptable and [`Refusal::text`]).
    pub fn stanza_error(self) -> Option<(&'static str, &'static str)> {
        match self {
            Refusal::WrongHost => Some(("cancel", "service-unavailable")),
            Refusal::EncryptionRequired => Some(("modify", "policy-violation")),
            Refusal::Throttled => Some(("wait", "policy-violation")),
            Refusal::TokenInvalid => Some(("cancel", "item-not-found")),
            _ => None,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::error::Error for Refusal {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Every refusal held to its code, text, label and reply (SPEC §4.2–4.3, §7.3–7.4): a
    /// new refusal must be added here, and none can answer with another's words.
    #[test]
    fn test_every_refusal_has_its_own_words() {
        type Row = (
            Refusal,
            &'static str,
            &'static str,
            &'static str,
            Option<(&'static str, &'static str)>,
        );
        let table: [Row; 10] = [
            (
                Refusal::WrongHost,
                "wrong-host",
                "This stream is not for the addressed host",
                "wrong_host",
                Some(("cancel", "service-unavailable")),
            ),
            (
                Refusal::EncryptionRequired,
                "encryption-required",
                "Encryption is required",
                "encryption_required",
                Some(("modify", "policy-violation")),
            ),
            (
                Refusal::Throttled,
                "throttled",
                "Too many invalid invite tokens, try again later",
                "throttled",
                Some(("wait", "policy-violation")),
            ),
            (
                Refusal::TokenInvalid,
                "token-invalid",
                "The provided token is invalid or expired",
                "invalid",
                Some(("cancel", "item-not-found")),
            ),
            (
                Refusal::NoInvite,
                "invite-required",
                "Registration on this server is through invitation only",
                "no_invite",
                None,
            ),
            (
                Refusal::TokenUsed,
                "token-used",
                "The invite token is no longer valid",
                "used",
                None,
            ),
            (
                Refusal::WrongUsername,
                "wrong-username",
                "The chosen username is not valid with this invitation",
                "username",
                None,
            ),
            (
                Refusal::Reserved,
                "username-reserved",
                "The chosen username is reserved",
                "reserved",
                None,
            ),
            (
                Refusal::WrongResetUsername,
                "wrong-reset-username",
                "Incorrect username for password reset",
                "reset_user",
                None,
            ),
            (
                Refusal::Unavailable,
                "unavailable",
                "Registration is temporarily unavailable",
                "unavailable",
                None,
            ),
        ];
        assert_eq!(table.len(), ALL.len());
        for (i, (r, code, text, label, reply)) in table.into_iter().enumerate() {
            assert_eq!(ALL[i], r);
            assert_eq!(r.code(), code);
            assert_eq!(r.text(), text);
            assert_eq!(r.label(), label);
            assert_eq!(r.stanza_error(), reply);
            assert_eq!(r.to_string(), code);
        }
        for words in [
            ALL.map(Refusal::code),
            ALL.map(Refusal::text),
            ALL.map(Refusal::label),
        ] {
            let distinct: HashSet<_> = words.iter().collect();
            assert_eq!(distinct.len(), ALL.len(), "{words:?}");
        }
    }
}
