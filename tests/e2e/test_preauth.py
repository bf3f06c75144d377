"""The preauth IQ (XEP-0401 / XEP-0445, SPEC §4.2): which tokens are accepted, and how
refusals look on the wire."""

import pytest

import invites
import storage
from expect import (ENCRYPTION_REQUIRED, INVITE_ONLY, THROTTLED, TOKEN_INVALID, assert_error,
                    assert_result)
from prosody import HOST, OTHER_HOST
from xmpp_raw import RawStream


def test_valid_token_from_only_when_request_had_to(server):
    """A valid token gets an empty result with the request's id; the reply carries
    from='example.test' only when the request carried to (st.reply semantics)."""
    token = invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        reply = s.preauth(token, iq_id="no-to")
        assert_result(reply)
        assert reply.id == "no-to"
        assert reply.get("from") is None, reply
        assert reply.get("to") is None, reply
        assert len(reply.el) == 0, reply

        reply = s.preauth(token, to=HOST, iq_id="with-to")
        assert_result(reply)
        assert reply.id == "with-to"
        assert reply.get("from") == HOST, reply


def test_get_behaves_like_set(server):
    """type='get' preauth is handled exactly like 'set': valid → result, invalid → error."""
    token = invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token, iq_type="get"))
        assert_error(s.preauth("not-a-token", iq_type="get"), "cancel", "item-not-found",
                     TOKEN_INVALID)


def _used_token(server):
    """A token consumed by a completed registration."""
    token = invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        assert_result(s.register("firstuser", "secret"))
    return token


INVALID_TOKENS = {
    "missing": lambda server: None,
    "empty": lambda server: "",
    "unknown": lambda server: "AAAAAAAAAAAAAAAAAAAAAAAA",
    "over-long": lambda server: "A" * 1025,
    "expired": invites.expired,
    "used": _used_token,
    "contact-only": lambda server: invites.contact(server, "inviter", allow_registration=False),
}


@pytest.mark.parametrize("kind", INVALID_TOKENS)
def test_invalid_token_is_item_not_found(server, kind):
    """Missing, empty, unknown, over-long, expired, used and contact-only (no registration) tokens
    are all refused with cancel/item-not-found and the XEP-0445 text; without `to`
    the error has no `from`, with `to` it has from='example.test'."""
    if kind == "contact-only":
        server.ctl("register", "inviter", HOST, "secret")
    token = INVALID_TOKENS[kind](server)
    with RawStream(server.port) as s:
        s.open()
        reply = s.preauth(token, iq_id="bad1")
        assert_error(reply, "cancel", "item-not-found", TOKEN_INVALID)
        assert reply.id == "bad1"
        assert reply.get("from") is None, reply

        reply = s.preauth(token, to=HOST, iq_id="bad2")
        assert_error(reply, "cancel", "item-not-found", TOKEN_INVALID)
        assert reply.get("from") == HOST, reply

        # Nothing was validated: registration is still invite-only on this stream.
        assert_error(s.register("intruder", "secret"), "modify", "not-acceptable", INVITE_ONLY)
    assert not storage.account_exists(server, "intruder")


def test_plaintext_stream_refused_when_encryption_required(tls_server):
    """On a server requiring encryption, a preauth on a plaintext stream is refused with
    modify/policy-violation before the token is looked at: a valid and an invalid token
    get byte-identical errors, and the valid token still works after STARTTLS."""
    token = invites.account(tls_server)
    with RawStream(tls_server.port) as s:
        s.open()
        valid = s.preauth(token, iq_id="same")
        invalid = s.preauth("AAAAAAAAAAAAAAAAAAAAAAAA", iq_id="same")
    assert_error(valid, "modify", "policy-violation", ENCRYPTION_REQUIRED)
    assert_error(invalid, "modify", "policy-violation", ENCRYPTION_REQUIRED)
    assert valid.error_payload() == invalid.error_payload()
    assert valid.attrs == invalid.attrs

    with RawStream(tls_server.port) as s:
        s.open()
        s.starttls()
        assert_result(s.preauth(token))
        assert_result(s.register("alice", "secret"))
    assert storage.account_exists(tls_server, "alice")


def test_preauth_addressed_to_other_host(server):
    """A stream opened to example.test sending a preauth to other.test (also served by
    this Prosody) gets cancel/service-unavailable, even with a token valid on other.test,
    and nothing is remembered: registration on the stream stays invite-only."""
    other_token = invites.account(server, host=OTHER_HOST)
    with RawStream(server.port, to=HOST) as s:
        s.open()
        reply = s.preauth(other_token, to=OTHER_HOST)
        assert_error(reply, "cancel", "service-unavailable")
        assert reply.get("from") == OTHER_HOST, reply
        assert_error(s.register("crosser", "secret"), "modify", "not-acceptable", INVITE_ONLY)
    assert not storage.account_exists(server, "crosser", host=HOST)
    assert not storage.account_exists(server, "crosser", host=OTHER_HOST)
    assert storage.invite_stored(server, other_token, host=OTHER_HOST)


def test_throttle_after_too_many_invalid_tokens(prosody):
    """With invites_register_token_attempts = 3, three invalid tokens are answered
    normally; then every preauth from the address, even with a valid token, gets
    wait/policy-violation without a lookup (SPEC §4.2 step 3)."""
    server = prosody.start(extra_config={"invites_register_token_attempts": 3})
    token = invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        for _ in range(3):
            assert_error(s.preauth("AAAAAAAAAAAAAAAAAAAAAAAA"), "cancel", "item-not-found",
                         TOKEN_INVALID)
        assert_error(s.preauth("AAAAAAAAAAAAAAAAAAAAAAAA"), "wait", "policy-violation", THROTTLED)
    with RawStream(server.port) as s:
        s.open()
        assert_error(s.preauth(token), "wait", "policy-violation", THROTTLED)


def test_plaintext_refusals_are_not_counted(prosody):
    """Refusals for missing encryption don't count towards the throttle: after many of
    them a secure stream still gets a normal answer for an invalid and a valid token."""
    server = prosody.start(encryption=True, extra_config={"invites_register_token_attempts": 1})
    token = invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        for _ in range(5):
            assert_error(s.preauth("AAAAAAAAAAAAAAAAAAAAAAAA"), "modify", "policy-violation",
                         ENCRYPTION_REQUIRED)
    with RawStream(server.port) as s:
        s.open()
        s.starttls()
        assert_result(s.preauth(token))
        assert_error(s.preauth("AAAAAAAAAAAAAAAAAAAAAAAA"), "cancel", "item-not-found",
                     TOKEN_INVALID)
