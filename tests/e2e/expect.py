"""Assertions on replies and stream features, and the texts the module promises (SPEC.md §4)."""

from __future__ import annotations

from xmpp_raw import NS_IBR_TOKEN, NS_INVITE, Stanza

TOKEN_INVALID = "The provided token is invalid or expired"
ENCRYPTION_REQUIRED = "Encryption is required"
THROTTLED = "Too many invalid invite tokens, try again later"
INVITE_ONLY = "Registration on this server is through invitation only"
TOKEN_USED = "The invite token is no longer valid"
WRONG_USERNAME = "The chosen username is not valid with this invitation"
WRONG_RESET_USERNAME = "Incorrect username for password reset"
UNAVAILABLE = "Registration is temporarily unavailable"


def assert_result(reply: Stanza) -> None:
    assert reply.type == "result", f"expected an IQ result, got: {reply}"


def assert_error(reply: Stanza, error_type: str, condition: str, text: str | None = None) -> None:
    """The reply is an error of this type and defined condition (and text, when given)."""
    assert reply.type == "error", f"expected an error reply, got: {reply}"
    err = reply.error()
    assert err is not None, f"error reply without <error/>: {reply}"
    assert (err.type, err.condition) == (error_type, condition), f"unexpected error: {reply}"
    if text is not None:
        assert err.text == text, f"unexpected error text: {reply}"


# Stream features as (namespace, name), see RawStream.feature_namespaces().
INVITE = (NS_INVITE, "register")
IBR_TOKEN = (NS_IBR_TOKEN, "register")
IBR_FEATURE = ("http://jabber.org/features/iq-register", "register")


def assert_invite_features(features: list[tuple[str, str]]) -> None:
    """Both invite features, once each, the legacy XEP-0401 one first."""
    assert features.count(INVITE) == 1, features
    assert features.count(IBR_TOKEN) == 1, features
    assert features.index(INVITE) < features.index(IBR_TOKEN), features


def assert_no_invite_features(features: list[tuple[str, str]]) -> None:
    assert INVITE not in features and IBR_TOKEN not in features, features


# Round 2 (SPEC §7.3 F11): a name bound to a pending account invite.
RESERVED = "The chosen username is reserved"
