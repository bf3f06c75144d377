"""Password reset invites (`prosodyctl mod_invites generate HOST --reset USER`, SPEC §4.3
step 4, §4.4): the reset works once, with a real client, and never for another account."""

import client
import invites
import storage
from expect import TOKEN_INVALID, TOKEN_USED, WRONG_RESET_USERNAME, assert_error, assert_result
from prosody import HOST
from xmpp_raw import RawStream


def test_reset_with_client_then_link_is_dead(server):
    """slixmpp registers bob with the reset invite and a new password: the old password
    stops working, the new one works, and the reset link is consumed — a second client
    using it is refused at preauth (item-not-found) and bob's password stays the new one."""
    server.ctl("register", "bob", HOST, "old-password")
    assert client.login(server.port, "bob", "old-password")
    uri = invites.generate(server, "--reset", "bob")
    assert uri.startswith(f"xmpp:bob@{HOST}?register;preauth="), uri
    token = invites.token_from_uri(uri)

    result = client.register_with_invite(server.port, token, "bob", "new-password")
    assert (result.preauth_type, result.register_type, result.logged_in) == \
        ("result", "result", True), result
    assert not client.login(server.port, "bob", "old-password")
    assert client.login(server.port, "bob", "new-password")
    assert storage.invite_gone(server, token)

    again = client.register_with_invite(server.port, token, "bob", "third-password")
    assert again.preauth_type == "error" and again.preauth_condition == "item-not-found", again
    assert not again.logged_in, again
    assert not client.login(server.port, "bob", "third-password")
    assert client.login(server.port, "bob", "new-password")
    assert storage.accounts(server) == {"bob"}


def test_reset_twice_on_same_stream(server):
    """After a reset on a stream, the invite validated there cannot reset bob's password a
    second time (stock: it can, as often as the stream likes)."""
    server.ctl("register", "bob", HOST, "old-password")
    token = invites.reset(server, "bob")
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        assert_result(s.register("bob", "new-password"))
        assert_error(s.register("bob", "attacker-password"), "modify", "not-acceptable", TOKEN_USED)
    assert client.login(server.port, "bob", "new-password")
    assert not client.login(server.port, "bob", "attacker-password")
    assert storage.invite_gone(server, token)


def test_reset_refused_for_other_user_keeps_link(server):
    """A reset invite for bob cannot reset alice's password (or create mallory); the refusal
    does not spend it, and bob's password is untouched until he uses it."""
    for user in ("alice", "bob"):
        server.ctl("register", user, HOST, "old-password")
    token = invites.reset(server, "bob")
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        assert_error(s.register("alice", "hijacked"), "modify", "not-acceptable",
                     WRONG_RESET_USERNAME)
        assert_error(s.register("mallory", "secret"), "modify", "not-acceptable",
                     WRONG_RESET_USERNAME)
    assert client.login(server.port, "alice", "old-password")
    assert client.login(server.port, "bob", "old-password")
    assert storage.accounts(server) == {"alice", "bob"}
    assert storage.invite_stored(server, token)

    result = client.register_with_invite(server.port, token, "bob", "new-password")
    assert (result.register_type, result.logged_in) == ("result", True), result
    assert storage.invite_gone(server, token)


def test_two_streams_same_reset_link(server):
    """Two streams preauth the same reset link; only the first reset goes through."""
    server.ctl("register", "bob", HOST, "old-password")
    token = invites.reset(server, "bob")
    with RawStream(server.port) as one, RawStream(server.port) as two:
        one.open()
        two.open()
        assert_result(one.preauth(token))
        assert_result(two.preauth(token))
        assert_result(one.register("bob", "first-password"))
        assert_error(two.register("bob", "second-password"), "modify", "not-acceptable", TOKEN_USED)
    assert client.login(server.port, "bob", "first-password")
    assert not client.login(server.port, "bob", "second-password")
    assert storage.invite_gone(server, token)


def test_expired_reset_link(server):
    """A reset invite past its expiry is refused at preauth like any invalid token."""
    server.ctl("register", "bob", HOST, "old-password")
    token = server.shell(f'testinvite:reset("{HOST}", "bob", -60)')
    with RawStream(server.port) as s:
        s.open()
        assert_error(s.preauth(token), "cancel", "item-not-found", TOKEN_INVALID)
    assert client.login(server.port, "bob", "old-password")


def test_reset_link_for_missing_account_creates_it(server):
    """A reset invite for an account that does not exist creates it (as stock does: IBR
    finds no account and registers the name; the invite allows only that name). Made
    through mod_invites' API: 13.0.2+'s `shell invite create_reset` refuses unknown users."""
    token = server.shell(f'testinvite:reset("{HOST}", "ghost", 3600)')
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        assert_error(s.register("other", "secret"), "modify", "not-acceptable",
                     WRONG_RESET_USERNAME)
        assert_result(s.register("ghost", "secret"))
    assert storage.accounts(server) == {"ghost"}
    assert client.login(server.port, "ghost", "secret")
    assert storage.invite_gone(server, token)
