//! Why an invite or a registration is refused: the codes the glue hands to Lua
//! (`nil, "kebab-code"`) and the human texts Prosody puts into error replies.

use std::fmt;

/// An expected refusal. Each maps to a stable kebab-case code and a reason text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The token is missing, unknown, expired, consumed, claimed or not for registration.
    TokenInvalid,
    /// A preauth arrived over an unencrypted stream while encryption is required.
    EncryptionRequired,
    /// Too many failed preauths from this address in the last minute.
    Throttled,
    /// A stream of one host addressed a preauth to another host.
    WrongHost,
    /// Invite-only registration without an invite.
    NoInvite,
    /// The invite was valid at preauth but has since been consumed or claimed.
    TokenUsed,
    /// A username-bound invite used for another username.
    WrongUsername,
    /// A password-reset invite used for another account.
    WrongResetUsername,
    /// The native library could not be used (fail-closed path, reported by the shim).
    Unavailable,
    /// The stanza is ours but malformed beyond what the other codes describe.
    BadRequest,
}

impl Error {
    /// The kebab-case code Lua sees as the second return value.
    pub fn code(self) -> &'static str {
        match self {
            Error::TokenInvalid => "token-invalid",
            Error::EncryptionRequired => "encryption-required",
            Error::Throttled => "throttled",
            Error::WrongHost => "wrong-host",
            Error::NoInvite => "invite-required",
            Error::TokenUsed => "token-used",
            Error::WrongUsername => "wrong-username",
            Error::WrongResetUsername => "wrong-reset-username",
            Error::Unavailable => "unavailable",
            Error::BadRequest => "bad-request",
        }
    }

    /// The text the client sees (error `<text/>` or `event.reason`).
    pub fn text(self) -> &'static str {
        match self {
            Error::TokenInvalid => "The provided token is invalid or expired",
            Error::EncryptionRequired => "Encryption is required",
            Error::Throttled => "Too many invalid invite tokens, try again later",
            Error::WrongHost => "This stream is not for the addressed host",
            Error::NoInvite => "Registration on this server is through invitation only",
            Error::TokenUsed => "The invite token is no longer valid",
            Error::WrongUsername => "The chosen username is not valid with this invitation",
            Error::WrongResetUsername => "Incorrect username for password reset",
            Error::Unavailable => "Registration is temporarily unavailable",
            Error::BadRequest => "The request is malformed",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_codes_are_kebab_case() {
        for e in [
            Error::TokenInvalid,
            Error::EncryptionRequired,
            Error::Throttled,
            Error::WrongHost,
            Error::NoInvite,
            Error::TokenUsed,
            Error::WrongUsername,
            Error::WrongResetUsername,
            Error::Unavailable,
            Error::BadRequest,
        ] {
            let code = e.code();
            assert!(
                code.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{code}"
            );
            assert_eq!(e.to_string(), code);
            assert!(!e.text().is_empty());
        }
    }

    #[test]
    fn test_spec_texts() {
        assert_eq!(
            Error::TokenInvalid.text(),
            "The provided token is invalid or expired"
        );
        assert_eq!(
            Error::NoInvite.text(),
            "Registration on this server is through invitation only"
        );
    }
}
