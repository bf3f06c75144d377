"""Username reservation, revocation after preauth and expiry after preauth (SPEC §7.3
F11, F12; issue 13 items 1 and 2).

While an unexpired, unconsumed account invite bound to U exists, U registers only with
that invite; every other way gets modify/not-acceptable "The chosen username is reserved",
and the refused invite is neither claimed nor burnt (it then registers another name).
"""

from __future__ import annotations

import time

import client
import frontend
import invites
import storage
from expect import (INVITE_ONLY, RESERVED, TOKEN_INVALID, TOKEN_USED, WRONG_USERNAME,
                    assert_error, assert_result)
from prosody import HOST, OTHER_HOST, Prosody, lua
from xmpp_raw import RawStream

DEFAULT_DELAY = {"invites_register_delete_delay": None}


def assert_reserved(reply) -> None:
    assert_error(reply, "modify", "not-acceptable", RESERVED)


def register(server: Prosody, token: str, username: str, password: str = "secret") -> None:
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        assert_result(s.register(username, password))


def wait_expired(server: Prosody, token: str, timeout: float = 5.0) -> None:
    """Wait until a fresh preauth of `token` says invalid (its expiry has passed)."""
    deadline = time.monotonic() + timeout
    while True:
        with RawStream(server.port) as s:
            s.open()
            if s.preauth(token).type == "error":
                return
        assert time.monotonic() < deadline, "invite did not expire in time"
        time.sleep(0.2)


# -- every other way to the reserved name is refused ---------------------------

def test_open_registration_cannot_take_reserved_name(prosody):
    """Open registration (no invite needed): a name bound to a pending invite is refused
    without an invite; other names register; the bound invite takes its name."""
    server = prosody.start(invite_only=False, allow_registration=True)
    alice = invites.account(server, "alice")
    with RawStream(server.port) as s:
        s.open()
        assert_reserved(s.register("alice", "secret"))
        assert_result(s.register("bob", "secret"))
    assert storage.accounts(server) == {"bob"}
    register(server, alice, "alice")
    assert client.login(server.port, "alice", "secret")
    assert storage.invite_gone(server, alice)


def test_open_registration_without_reservation(prosody):
    """Negative: with no bound invite, open registration takes any name, and an unbound
    invite reserves nothing."""
    server = prosody.start(invite_only=False, allow_registration=True)
    invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.register("alice", "secret"))
    assert storage.accounts(server) == {"alice"}


def test_another_invite_cannot_take_reserved_name(server):
    """Another (unbound) account invite is refused for the reserved name and not burnt:
    the same stream then registers another name, and the bound invite still takes its own."""
    alice = invites.account(server, "alice")
    other = invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(other))
        assert_reserved(s.register("alice", "secret"))
        assert storage.invite_stored(server, other)
        assert_result(s.register("zed", "secret"))
    register(server, alice, "alice")
    assert storage.accounts(server) == {"zed", "alice"}
    assert storage.invite_gone(server, other)


def test_reservation_refusal_keeps_invite_for_a_new_stream(server):
    """The refused invite is not claimed: a new stream preauths and registers with it."""
    invites.account(server, "alice")
    other = invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(other))
        assert_reserved(s.register("alice", "secret"))
    register(server, other, "zed")
    assert storage.accounts(server) == {"zed"}


def test_invite_bound_to_another_name_gets_binding_error(server):
    """An invite bound to bob trying the reserved alice is refused by its own binding
    first (SPEC §4.3 step 5 runs before the reservation)."""
    invites.account(server, "alice")
    bob = invites.account(server, "bob")
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(bob))
        assert_error(s.register("alice", "secret"), "modify", "not-acceptable", WRONG_USERNAME)
        assert_result(s.register("bob", "secret"))
    assert storage.accounts(server) == {"bob"}


def test_group_invite_cannot_take_reserved_name(server):
    """A reusable group invite is refused for the reserved name and keeps working."""
    invites.account(server, "alice")
    group = invites.reusable(server)
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(group))
        assert_reserved(s.register("alice", "secret"))
        assert_result(s.register("g1", "secret"))
    register(server, group, "g2")
    assert storage.accounts(server) == {"g1", "g2"}
    assert storage.invite_stored(server, group)


def test_roster_invite_cannot_take_reserved_name(server):
    """A roster invite with registration is refused for the reserved name and then
    registers another one (and is consumed by that)."""
    server.ctl("register", "inviter", HOST, "secret")
    invites.account(server, "alice")
    roster = invites.contact(server, "inviter", allow_registration=True)
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(roster))
        assert_reserved(s.register("alice", "secret"))
        assert storage.invite_stored(server, roster)
        assert_result(s.register("friend", "secret"))
    assert storage.accounts(server) == {"inviter", "friend"}
    assert storage.invite_gone(server, roster)


def test_frontend_cannot_take_reserved_name(prosody):
    """A front-end passing `event.validated_invite` is refused for the reserved name; the
    same validated invite then registers another name; the bound invite registers its own
    name through the front-end."""
    server = prosody.start(extra_modules=frontend.FRONTEND)
    alice = invites.account(server, "alice")
    other = invites.account(server)
    form = frontend.open_form(server, other)
    assert frontend.submit(server, form, "alice", "secret") == f"refused: {RESERVED}"
    assert frontend.register(server, other, "alice", "secret") == f"refused: {RESERVED}"
    assert frontend.submit(server, form, "zed", "secret") == frontend.REGISTERED
    assert frontend.register(server, alice, "alice", "secret") == frontend.REGISTERED
    assert storage.accounts(server) == {"zed", "alice"}
    assert client.login(server.port, "alice", "secret")


def test_new_bound_invite_reserves_at_once(prosody):
    """An invite created through mod_invites in this process reserves its name at once,
    even for a registration decided in the same event-loop turn (one admin-shell chunk
    creates the invite, then a front-end registers the name with another invite): the
    index is kept exact for in-process creations, not only after a timer has run."""
    server = prosody.start(extra_modules=frontend.FRONTEND)
    other = invites.account(server)
    outcome = server.shell(
        f'>(function () local env = require"core.modulemanager".get_module({lua(HOST)}, '
        f'"test_invites").module:shared("/*/admin_shell/env"); '
        f'assert(env.testinvite:account({lua(HOST)}, "bob", 3600)); '
        f'return select(2, env.testfrontend:register({lua(HOST)}, {lua(other)}, "bob", '
        f'"secret")) end)()')
    assert outcome == f"refused: {RESERVED}", outcome
    assert storage.accounts(server) == set()
    assert frontend.register(server, other, "zed", "secret") == frontend.REGISTERED


def test_reservation_compares_after_nodeprep(server):
    """An invite made for "Alice" reserves alice in every spelling nodeprep maps to it,
    and itself registers "ALICE" (the account alice)."""
    alice = invites.account(server, "Alice")
    other = invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(other))
        assert_reserved(s.register("alice", "secret"))
        assert_reserved(s.register("ALICE", "secret"))
        assert_reserved(s.register("aLiCe", "secret"))
        # Not the same name after nodeprep: free.
        assert_result(s.register("alice2", "secret"))
    register(server, alice, "ALICE")
    assert storage.accounts(server) == {"alice2", "alice"}
    assert client.login(server.port, "alice", "secret")


def test_lowercase_binding_reserves_mixed_case_requests(prosody):
    """The other direction: an invite for "bob" reserves "BOB" on open registration."""
    server = prosody.start(invite_only=False, allow_registration=True)
    invites.account(server, "bob")
    with RawStream(server.port) as s:
        s.open()
        assert_reserved(s.register("BOB", "secret"))
        assert_reserved(s.register("Bob", "secret"))
    assert storage.accounts(server) == set()


# -- what reserves nothing -------------------------------------------------------

def test_reset_invite_reserves_nothing(server):
    """A pending reset invite for carl (no such account yet) reserves nothing: carl
    registers with another invite."""
    reset = server.shell(f'testinvite:reset({lua(HOST)}, "carl", 3600)')
    assert storage.invite_stored(server, reset)
    other = invites.account(server)
    register(server, other, "carl")
    assert storage.accounts(server) == {"carl"}


def test_reset_invite_still_resets_reserved_name(server):
    """A reset invite for an existing user still resets the password while an account
    invite bound to the same name is pending; the bound invite stays unused."""
    server.ctl("register", "bob", HOST, "old-password")
    bound = invites.account(server, "bob")
    reset = invites.reset(server, "bob")
    register(server, reset, "bob", "new-password")
    assert client.login(server.port, "bob", "new-password")
    assert not client.login(server.port, "bob", "old-password")
    assert storage.invite_gone(server, reset)
    assert storage.invite_stored(server, bound)


def test_roster_invite_reserves_nothing(server):
    """A roster invite's jid names its inviter: it reserves nothing, not even that name."""
    invites.contact(server, "ghost", allow_registration=True)
    other = invites.account(server)
    register(server, other, "ghost")
    assert storage.accounts(server) == {"ghost"}


def test_reservation_is_per_host(server):
    """An invite bound to alice on the other host reserves nothing here."""
    invites.account(server, "alice", host=OTHER_HOST)
    other = invites.account(server)
    register(server, other, "alice")
    assert storage.accounts(server) == {"alice"}


# -- the name is freed ------------------------------------------------------------

def test_name_freed_by_use(prosody):
    """Once the bound invite is consumed (even before the batch write removes its record)
    the name is no longer reserved: after the account is deleted, another invite takes it."""
    server = prosody.start(extra_config=DEFAULT_DELAY)
    dave = invites.account(server, "dave")
    other = invites.account(server)
    register(server, dave, "dave")
    if server.options.storage == "internal":
        assert storage.invite_stored(server, dave)  # the batch is still to come
    server.shell(f'user:delete("dave@{HOST}")')
    assert not storage.account_exists(server, "dave")
    register(server, other, "dave")
    assert storage.accounts(server) == {"dave"}


def test_name_freed_by_deletion(server):
    """The bound invite is deleted: the name is free at once; the stream refused before
    registers it with the same (unburnt) invite."""
    erin = invites.account(server, "erin")
    other = invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(other))
        assert_reserved(s.register("erin", "secret"))
        invites.delete(server, erin)
        assert_result(s.register("erin", "secret"))
    assert storage.accounts(server) == {"erin"}


def test_name_freed_by_expiry(server):
    """The bound invite expires: the name is free; the stream refused before registers it."""
    frank = invites.account(server, "frank", ttl=2)
    other = invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(other))
        assert_reserved(s.register("frank", "secret"))
        wait_expired(server, frank)
        assert_result(s.register("frank", "secret"))
    assert storage.accounts(server) == {"frank"}


# -- revocation and expiry after preauth (F12) -------------------------------------

def test_revocation_after_preauth(server):
    """An invite deleted after the client's preauth no longer registers ("no longer
    valid"), no account is made; an untouched invite on another stream still works."""
    token = invites.account(server)
    bound = invites.account(server, "bob")
    untouched = invites.account(server)
    with RawStream(server.port) as s, RawStream(server.port) as t:
        s.open()
        t.open()
        assert_result(s.preauth(token))
        assert_result(t.preauth(bound))
        invites.delete(server, token)
        invites.delete(server, bound)
        assert_error(s.register("alice", "secret"), "modify", "not-acceptable", TOKEN_USED)
        assert_error(t.register("bob", "secret"), "modify", "not-acceptable", TOKEN_USED)
    assert storage.accounts(server) == set()
    register(server, untouched, "carol")
    assert storage.accounts(server) == {"carol"}


def test_revocation_after_preauth_through_frontend(prosody):
    """The same for a front-end whose page validated the invite before it was deleted."""
    server = prosody.start(extra_modules=frontend.FRONTEND)
    token = invites.account(server)
    form = frontend.open_form(server, token)
    invites.delete(server, token)
    assert frontend.submit(server, form, "alice", "secret") == f"refused: {TOKEN_USED}"
    assert storage.accounts(server) == set()


def test_expiry_after_preauth_still_registers(server):
    """XEP-0445: expiry is checked at preauth only. An invite that expires between the
    preauth and the registration still registers (while a new preauth is refused)."""
    token = invites.account(server, ttl=1)
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        wait_expired(server, token)
        with RawStream(server.port) as late:
            late.open()
            assert_error(late.preauth(token), "cancel", "item-not-found", TOKEN_INVALID)
            assert_error(late.register("mallory", "secret"), "modify", "not-acceptable",
                         INVITE_ONLY)
        assert_result(s.register("alice", "secret"))
    assert client.login(server.port, "alice", "secret")
    assert storage.invite_gone(server, token)


def test_expired_bound_invite_after_preauth_registers_its_name(server):
    """A bound invite that expires after its preauth still registers its own name."""
    token = invites.account(server, "alice", ttl=1)
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        wait_expired(server, token)
        assert_result(s.register("alice", "secret"))
    assert storage.accounts(server) == {"alice"}
