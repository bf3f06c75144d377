"""The different kinds of invites mod_invites makes, used for registration
(SPEC §4.3 steps 4–5, §4.4)."""

import client
import invites
import storage
from expect import WRONG_RESET_USERNAME, WRONG_USERNAME, assert_error, assert_result
from prosody import HOST, is_prosody_13
from xmpp_raw import RawStream


def test_bound_invite_only_for_its_username(server):
    """An invite made for alice (create_account("alice")) cannot register mallory, and
    the refusal does not spend it: alice then registers on the same stream."""
    token = invites.account(server, "alice")
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        assert_error(s.register("mallory", "secret"), "modify", "not-acceptable", WRONG_USERNAME)
        assert_result(s.register("alice", "secret"))
    assert storage.accounts(server) == {"alice"}
    assert storage.invite_gone(server, token)
    assert client.login(server.port, "alice", "secret")


def test_bound_invite_compares_after_nodeprep(server):
    """An invite made for "Alice" (stored with the capital) registers "alice"."""
    token = invites.account(server, "Alice")
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        assert_result(s.register("alice", "secret"))
    assert storage.accounts(server) == {"alice"}
    assert client.login(server.port, "alice", "secret")


def test_reset_invite(server):
    """A reset invite for bob from the command line (0.12: `prosodyctl mod_invites generate
    example.test --reset bob`; 13: `prosodyctl shell invite create_reset bob@example.test`):
    another username is refused, bob gets his new password, the old one stops working,
    the token is spent."""
    server.ctl("register", "bob", HOST, "old-password")
    assert client.login(server.port, "bob", "old-password")
    token = invites.reset(server, "bob")
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        assert_error(s.register("mallory", "secret"), "modify", "not-acceptable",
                     WRONG_RESET_USERNAME)
        assert_result(s.register("bob", "new-password"))
    assert storage.accounts(server) == {"bob"}
    assert not client.login(server.port, "bob", "old-password")
    assert client.login(server.port, "bob", "new-password")
    assert storage.invite_gone(server, token)


def test_reusable_invite(server):
    """A group invite with a ttl is reusable: two streams create two accounts and the
    token stays in storage."""
    token = invites.reusable(server)
    for name in ("first", "second"):
        with RawStream(server.port) as s:
            s.open()
            assert_result(s.preauth(token))
            assert_result(s.register(name, "secret"))
    assert storage.accounts(server) == {"first", "second"}
    assert storage.invite_stored(server, token)
    assert client.login(server.port, "second", "secret")


def test_contact_invite_with_registration(server):
    """A contact invite that allows registration registers the new user and makes
    inviter and new user mutually subscribed; the token is spent."""
    server.ctl("register", "inviter", HOST, "secret")
    token = invites.contact(server, "inviter", allow_registration=True)
    result = client.register_with_invite(server.port, token, "newbie", "secret")
    assert (result.preauth_type, result.register_type, result.logged_in) == \
        ("result", "result", True), result
    inviter_roster = client.roster(server.port, "inviter", "secret")
    newbie_roster = client.roster(server.port, "newbie", "secret")
    assert inviter_roster[f"newbie@{HOST}"]["subscription"] == "both", inviter_roster
    assert newbie_roster[f"inviter@{HOST}"]["subscription"] == "both", newbie_roster
    assert storage.invite_gone(server, token)


def test_admin_invite_grants_admin_role(server):
    """An admin invite from the command line: the account registered with it is an admin,
    one from a plain invite is not.
    0.12: `prosodyctl mod_invites generate example.test --admin` stores the role set
    {["prosody:admin"] = true} in the invite; the module writes it to keyval `roles`,
    which 0.12's usermanager.is_admin reads.
    13: `prosodyctl shell invite create_account example.test --role prosody:admin` (13 has
    no --admin) stores the list {"prosody:admin"}; the module calls set_user_role, which
    writes {_default = "prosody:admin"} to keyval `account_roles`."""
    if is_prosody_13():
        admin_token = invites.admin_account(server, role="prosody:admin")
    else:
        admin_token = invites.token_from_uri(invites.generate(server, "--admin"))
    plain_token = invites.admin_account(server)
    for token, name in ((admin_token, "boss"), (plain_token, "staff")):
        with RawStream(server.port) as s:
            s.open()
            assert_result(s.preauth(token))
            assert_result(s.register(name, "secret"))

    if is_prosody_13():
        # 13's is_admin() is deprecated and logs a stack traceback: ask for the role.
        def role(name):
            return server.shell(f'>require"core.usermanager".get_user_role("{name}", "{HOST}").name')

        assert role("boss") == "prosody:admin"
        assert role("staff") == "prosody:registered"
        assert storage.roles(server, "boss") == {"_default": "prosody:admin"}
        assert storage.keyval(server, "roles", "boss") is None
    else:
        def is_admin(name):
            return server.shell(f'>require"core.usermanager".is_admin("{name}@{HOST}", "{HOST}")')

        assert is_admin("boss") == "true"
        assert is_admin("staff") != "true"
        assert storage.roles(server, "boss") == {"prosody:admin": True}
    assert storage.primary_role(server, "boss") == "prosody:admin"
    assert storage.primary_role(server, "staff") is None
