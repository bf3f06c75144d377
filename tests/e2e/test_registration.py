"""Registration with and without invites (SPEC §4.3, §4.4), single use included."""

import client
import invites
import storage
from expect import INVITE_ONLY, TOKEN_USED, assert_error, assert_result
from prosody import HOST
from xmpp_raw import RawStream


def test_registration_without_invite_refused(server):
    """Invite-only (the default): IBR without a preauth is modify/not-acceptable with
    the invite-only text, and no account appears."""
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.register_form())
        assert_error(s.register("nobody", "secret"), "modify", "not-acceptable", INVITE_ONLY)
    assert not storage.account_exists(server, "nobody")
    assert storage.accounts(server) == set()


def test_registration_with_invite(server):
    """A real client (slixmpp) presents an invite from the command line (0.12: `mod_invites
    generate`, 13: `shell invite create_account`) and registers; the account logs in
    afterwards on a fresh connection and the token is gone from mod_invites' store."""
    token = invites.admin_account(server)
    assert storage.invite_stored(server, token)

    result = client.register_with_invite(server.port, token, "alice", "s3cret")
    assert result.preauth_type == "result", result
    assert result.register_type == "result", result
    assert result.logged_in, result

    assert client.login(server.port, "alice", "s3cret")
    assert not client.login(server.port, "alice", "wrong")
    assert storage.invite_gone(server, token)


def test_second_registration_on_same_stream_refused(server):
    """A single-use token validated once cannot create a second account on the same
    stream (stock: unlimited)."""
    token = invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        assert_result(s.register("first", "secret"))
        assert_error(s.register("second", "secret"), "modify", "not-acceptable", TOKEN_USED)
    assert storage.accounts(server) == {"first"}
    assert storage.invite_gone(server, token)


def test_two_streams_same_token_only_one_account(server):
    """Two streams preauth the same token (both accepted: the token is not consumed at
    preauth), then both register: exactly one account, the other refused."""
    token = invites.account(server)
    with RawStream(server.port) as one, RawStream(server.port) as two:
        one.open()
        two.open()
        assert_result(one.preauth(token))
        assert_result(two.preauth(token))
        assert_result(one.register("winner", "secret"))
        assert_error(two.register("loser", "secret"), "modify", "not-acceptable", TOKEN_USED)
    assert storage.accounts(server) == {"winner"}
    assert storage.invite_gone(server, token)


def test_failed_registration_keeps_token_same_stream(server):
    """A registration that fails after the module allowed it (username taken →
    cancel/conflict) does not burn the token: the same stream then registers another name."""
    server.ctl("register", "taken", HOST, "secret")
    token = invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        assert_error(s.register("taken", "other"), "cancel", "conflict")
        assert storage.invite_stored(server, token)
        assert_result(s.register("fresh", "secret"))
    assert storage.accounts(server) == {"taken", "fresh"}
    assert storage.invite_gone(server, token)
    assert client.login(server.port, "taken", "secret")


def test_failed_registration_keeps_token_new_stream(server):
    """After a conflict the token is still valid for a new stream."""
    server.ctl("register", "taken", HOST, "secret")
    token = invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        assert_error(s.register("taken", "other"), "cancel", "conflict")
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        assert_result(s.register("fresh", "secret"))
    assert storage.accounts(server) == {"taken", "fresh"}
    assert storage.invite_gone(server, token)
