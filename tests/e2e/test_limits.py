"""Other registration limits still apply to invited registrations (SPEC §4.3: never set
`event.error`, refuse nothing on another module's behalf, claim only registrations still
allowed). mod_register_limits (loaded with IBR) throttles per IP; 127.0.0.1 is allow-listed
unless `registration_allowlist` (0.12 and 13; `registration_whitelist` is the old name) is
emptied."""

import client
import frontend
import invites
import storage
from expect import assert_error, assert_result
from xmpp_raw import RawStream

LIMITS_THROTTLED = "Too many registrations from this IP address recently"

LIMITS = {
    "registration_throttle_max": 1,
    "registration_throttle_period": 3600,
    "registration_allowlist": [],
}


def register(server, token, username):
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        return s.register(username, "secret")


def test_throttle_refuses_second_invited_registration(prosody):
    """One registration per hour from 127.0.0.1: the first invited registration succeeds,
    the second (another valid invite) is refused by mod_register_limits with its own
    wait/policy-violation — not by us — and its token is not burnt: still stored, and
    usable afterwards from another address (through the front-end)."""
    server = prosody.start(extra_config=LIMITS, extra_modules=frontend.FRONTEND)
    first = invites.account(server)
    second = invites.account(server)

    assert_result(register(server, first, "first"))
    assert_error(register(server, second, "second"), "wait", "policy-violation", LIMITS_THROTTLED)
    assert storage.accounts(server) == {"first"}
    assert storage.invite_gone(server, first)
    assert storage.invite_stored(server, second)
    refusals = [line for line in server.log_lines(level="debug")
                if "Registration disallowed by module" in line]
    assert refusals and LIMITS_THROTTLED in refusals[-1], refusals
    ours = [line for line in server.log_lines(source="example.test:invites_register")
            if "Refusing registration" in line]
    assert ours == [], ours

    # The refused attempt left no claim behind: the token registers at once elsewhere.
    assert frontend.register(server, second, "second", "secret", ip="192.0.2.7") == \
        frontend.REGISTERED
    assert client.login(server.port, "second", "secret")
    assert storage.invite_gone(server, second)


def test_throttle_refusal_through_frontend_claims_nothing(prosody):
    """A front-end registration (no IBR around it, so nothing would give a claim back)
    refused by mod_register_limits leaves the token unclaimed: the same invite registers at
    once from another address. A module that claimed refused registrations would answer
    "The invite token is no longer valid" here for two minutes."""
    server = prosody.start(extra_config=LIMITS, extra_modules=frontend.FRONTEND)
    assert_result(register(server, invites.account(server), "first"))
    token = invites.account(server)
    refused = frontend.register(server, token, "second", "secret", ip="127.0.0.1")
    assert refused == f"refused: {LIMITS_THROTTLED}", refused
    assert frontend.register(server, token, "second", "secret", ip="192.0.2.8") == frontend.REGISTERED
    assert storage.accounts(server) == {"first", "second"}


def test_throttle_refusal_keeps_stream_invite(prosody):
    """A throttled stream may retry: each attempt is refused by the limits module again
    (no claim from the first refusal turns into "no longer valid"), and the token still
    preauths on a new stream and stays stored."""
    server = prosody.start(extra_config=LIMITS)
    token = invites.account(server)
    blocker = invites.account(server)
    assert_result(register(server, blocker, "blocker"))
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        assert_error(s.register("late", "secret"), "wait", "policy-violation", LIMITS_THROTTLED)
        assert_error(s.register("late", "secret"), "wait", "policy-violation", LIMITS_THROTTLED)
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
    assert storage.invite_stored(server, token)
    assert storage.accounts(server) == {"blocker"}


def test_allowlisted_loopback_is_not_throttled(prosody):
    """Control: with the default allowlist (127.0.0.1 in it) the same throttle does not
    stop a second invited registration from loopback."""
    server = prosody.start(extra_config={"registration_throttle_max": 1,
                                         "registration_throttle_period": 3600})
    for name in ("first", "second"):
        assert_result(register(server, invites.account(server), name))
    assert storage.accounts(server) == {"first", "second"}
