"""The failed-preauth throttle end to end (SPEC §4.2 step 3), beyond test_preauth.py's
basic "N failures, then wait/policy-violation even for a valid token": what counts and
what does not, per address, per host, and (marked `slow`) the 60-second sliding window.
Other client addresses come from other loopback sources (127.0.0.2, …): the server sees
them as other `session.ip`s."""

import time

import pytest

import invites
import storage
from expect import (INVITE_ONLY, THROTTLED, TOKEN_INVALID, assert_error, assert_result)
from prosody import HOST, OTHER_HOST, selected
from xmpp_raw import NS_PREAUTH, RawStream

BAD = "AAAAAAAAAAAAAAAAAAAAAAAA"


def invalid(reply):
    assert_error(reply, "cancel", "item-not-found", TOKEN_INVALID)


def throttled(reply):
    assert_error(reply, "wait", "policy-violation", THROTTLED)


def test_successes_neither_count_nor_reset(prosody):
    """With 3 attempts: any number of valid preauths are not failures, and they do not
    reset the count either — 2 failures, 10 successes, 1 failure → throttled."""
    server = prosody.start(extra_config={"invites_register_token_attempts": 3})
    token = invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        for _ in range(10):
            assert_result(s.preauth(token))
        invalid(s.preauth(BAD))
        invalid(s.preauth(BAD))
        for _ in range(10):
            assert_result(s.preauth(token))
        invalid(s.preauth(BAD))
        throttled(s.preauth(token))
        throttled(s.preauth(BAD))


def test_missing_empty_and_overlong_tokens_count(prosody):
    """Missing, empty and over-long tokens are answered without a lookup but count as
    failures like an unknown one."""
    server = prosody.start(extra_config={"invites_register_token_attempts": 3})
    token = invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        invalid(s.preauth(None))
        invalid(s.preauth(""))
        invalid(s.preauth("A" * 1025))
        throttled(s.preauth(token))


def test_refusals_before_the_throttle_do_not_count(prosody):
    """A preauth for another host (service-unavailable), IQ results/errors carrying a
    preauth (ignored by Prosody) and preauths that Prosody routes elsewhere are not
    failed attempts: with 1 attempt allowed, the first invalid token afterwards is still
    answered normally."""
    server = prosody.start(extra_config={"invites_register_token_attempts": 1})
    token = invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        for _ in range(5):
            assert_error(s.preauth(BAD, to=OTHER_HOST), "cancel", "service-unavailable")
            assert_error(s.preauth(BAD, to=f"someone@{HOST}"), "cancel", "service-unavailable")
        for kind in ("result", "error"):
            s.send(f"<iq type='{kind}' id='ignored-{kind}'>"
                   f"<preauth xmlns='{NS_PREAUTH}' token='{BAD}'/></iq>")
        assert_result(s.preauth(token))
        invalid(s.preauth(BAD))
        throttled(s.preauth(token))


def test_throttle_is_per_address(prosody):
    """Failures from 127.0.0.1 throttle 127.0.0.1 only: 127.0.0.2 still gets answers (and
    its own budget), and so does 127.0.0.3 after 127.0.0.2 is throttled too."""
    server = prosody.start(extra_config={"invites_register_token_attempts": 2})
    token = invites.account(server)
    with RawStream(server.port, source="127.0.0.1") as one, \
            RawStream(server.port, source="127.0.0.2") as two, \
            RawStream(server.port, source="127.0.0.3") as three:
        for s in (one, two, three):
            s.open()
        invalid(one.preauth(BAD))
        invalid(one.preauth(BAD))
        throttled(one.preauth(token))

        assert_result(two.preauth(token))
        invalid(two.preauth(BAD))
        invalid(two.preauth(BAD))
        throttled(two.preauth(token))
        throttled(one.preauth(token))

        assert_result(three.preauth(token))
        assert_result(three.register("third", "secret"))
    assert storage.accounts(server) == {"third"}


def test_throttle_is_per_host(prosody):
    """Throttled on example.test; a stream opened to other.test from the same address is
    not (state per host)."""
    server = prosody.start(extra_config={"invites_register_token_attempts": 2})
    other_token = invites.account(server, host=OTHER_HOST)
    token = invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        invalid(s.preauth(BAD))
        invalid(s.preauth(BAD))
        throttled(s.preauth(token))
    with RawStream(server.port, to=OTHER_HOST) as s:
        s.open()
        invalid(s.preauth(BAD))
        assert_result(s.preauth(other_token))
        assert_result(s.register("elsewhere", "secret"))
    assert storage.account_exists(server, "elsewhere", host=OTHER_HOST)


def test_throttle_does_not_undo_an_earlier_valid_preauth(prosody):
    """The throttle guards the preauth lookup only: a stream whose token was accepted
    before its address got throttled still registers."""
    server = prosody.start(extra_config={"invites_register_token_attempts": 2})
    token = invites.account(server)
    with RawStream(server.port) as good, RawStream(server.port) as bad:
        good.open()
        bad.open()
        assert_result(good.preauth(token))
        invalid(bad.preauth(BAD))
        invalid(bad.preauth(BAD))
        throttled(bad.preauth(token))
        throttled(good.preauth(token))  # the address is throttled for everyone on it...
        assert_result(good.register("patient", "secret"))  # ...but the earlier result holds
        assert_error(bad.register("eager", "secret"), "modify", "not-acceptable", INVITE_ONLY)
    assert storage.accounts(server) == {"patient"}


def test_throttle_zero_disables(prosody):
    """invites_register_token_attempts = 0: hundreds of failures, never throttled."""
    server = prosody.start(extra_config={"invites_register_token_attempts": 0})
    token = invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        payload = "".join(f"<iq type='set' id='f{i}'><preauth xmlns='{NS_PREAUTH}' "
                          f"token='bad{i}'/></iq>" for i in range(300))
        s.send(payload)
        for i in range(300):
            invalid(s.wait_for(lambda st, i=i: st.id == f"f{i}"))
        assert_result(s.preauth(token))


@pytest.mark.slow
def test_window_slides(prosody, request):
    """The window is 60 s and sliding, and throttled replies do not count: 2 failures at
    t=0 and t≈20 s, throttled attempts every few seconds in between and after; just after
    t=60 s one failure has left the window (one attempt free again), just after t≈80 s
    both have."""
    if not selected(request, "slow"):
        pytest.skip("61-second window test: run with -m slow")
    server = prosody.start(extra_config={"invites_register_token_attempts": 2})
    token = invites.account(server)
    with RawStream(server.port, timeout=15) as s:
        s.open()
        t0 = time.monotonic()
        invalid(s.preauth(BAD))
        time.sleep(20)
        invalid(s.preauth(BAD))
        t1 = time.monotonic()
        while time.monotonic() < t0 + 58:
            throttled(s.preauth(token))  # throttled replies must not extend the window
            time.sleep(4)
        time.sleep(max(0.0, t0 + 61 - time.monotonic()))
        assert_result(s.preauth(token))  # successes do not count
        invalid(s.preauth(BAD))          # the one free attempt
        throttled(s.preauth(token))
        time.sleep(max(0.0, t1 + 61 - time.monotonic()))
        assert_result(s.preauth(token))
        invalid(s.preauth(BAD))
        throttled(s.preauth(BAD))
