"""Expired-invite cleanup and the admin shell's view of the index (SPEC §7.3 F13, issue 12
item 3): host records and per-user contact-invite entries whose `expires` has passed
are deleted, every `invites_register_cleanup_interval` seconds and on
`invites_register:cleanup(HOST)` (word form `prosodyctl shell invites_register cleanup
HOST`), logged at info with counts; live invites stay; an expired invite validated by a
preauth in the last 15 minutes is kept. `invites_register status HOST` prints the index's
sizes."""

from __future__ import annotations

import re
import time

import invites
import storage
from expect import TOKEN_INVALID, THROTTLED, assert_error, assert_result
from prosody import HOST, OTHER_HOST, Prosody, lua
from xmpp_raw import RawStream

MODULE_LOG = f"{HOST}:invites_register"
SUMMARY = "Removed {} expired invites and {} expired contact invites of {} users"
STATUS_RE = re.compile(r"^(pending invites|bound usernames|tokens awaiting deletion|"
                       r"claims in flight|throttled addresses):\s+(\d+)\s*$", re.M)


def cleanup(server: Prosody, host: str = HOST) -> str:
    """`invites_register:cleanup(HOST)` in the admin shell; its OK line."""
    return server.shell(f"invites_register:cleanup({lua(host)})")


def cleanup_words(server: Prosody, host: str = HOST) -> str:
    """The word form `prosodyctl shell invites_register cleanup HOST`; its stdout."""
    return server.ctl("shell", "invites_register", "cleanup", host).stdout


def status(server: Prosody, host: str = HOST) -> dict[str, int]:
    """`prosodyctl shell invites_register status HOST`, parsed."""
    out = server.ctl("shell", "invites_register", "status", host).stdout
    found = {name: int(value) for name, value in STATUS_RE.findall(out)}
    assert set(found) == {"pending invites", "bound usernames", "tokens awaiting deletion",
                          "claims in flight", "throttled addresses"}, out
    return found


def summary_logged(server: Prosody, *counts: int, host: str = HOST) -> bool:
    line = SUMMARY.format(*counts)
    return any(line in entry for entry in
               server.log_lines(source=f"{host}:invites_register", level="info"))


def preauth_once(server: Prosody, token: str, host: str = HOST):
    with RawStream(server.port, to=host) as s:
        s.open()
        return s.preauth(token)


def register(server: Prosody, token: str, username: str) -> None:
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        assert_result(s.register(username, "secret"))


def wait_expired(server: Prosody, token: str, timeout: float = 5.0) -> None:
    """Wait until a fresh preauth of `token` says invalid."""
    deadline = time.monotonic() + timeout
    while preauth_once(server, token).type != "error":
        assert time.monotonic() < deadline, "invite did not expire in time"
        time.sleep(0.2)


def test_cleanup_removes_expired_and_keeps_live(server):
    """Expired host records (account, roster-with-registration, group) and expired per-user
    contact entries are deleted; live ones, of the same users, stay and still work. The
    command prints the counts and logs them at info; a second run finds nothing."""
    for user in ("alice", "bob"):
        server.ctl("register", user, HOST, "secret")
    expired_account = invites.account(server, ttl=-60)
    expired_roster = invites.contact(server, "alice", allow_registration=True, ttl=-60)
    expired_contact = invites.contact(server, "bob", ttl=-60)
    expired_group = server.shell(f"testinvite:group({lua(HOST)}, {{}}, -60)")
    live_account = invites.account(server)
    live_bound = invites.account(server, "carol")
    live_roster = invites.contact(server, "alice", allow_registration=True)
    live_contact = invites.contact(server, "bob")
    for token in (expired_account, expired_roster, expired_group, live_account, live_roster):
        assert storage.invite_stored(server, token)
    for user, token in (("alice", expired_roster), ("bob", expired_contact),
                        ("alice", live_roster), ("bob", live_contact)):
        assert storage.invite_stored(server, token, user=user)

    assert cleanup(server) == SUMMARY.format(3, 2, 2)
    assert summary_logged(server, 3, 2, 2)

    for token in (expired_account, expired_roster, expired_group):
        assert not storage.invite_stored(server, token), token
    assert not storage.invite_stored(server, expired_roster, user="alice")
    assert not storage.invite_stored(server, expired_contact, user="bob")
    for token in (live_account, live_bound, live_roster):
        assert storage.invite_stored(server, token), token
    assert storage.invite_stored(server, live_roster, user="alice")
    assert storage.invite_stored(server, live_contact, user="bob")

    assert SUMMARY.format(0, 0, 0) in cleanup_words(server)
    assert_error(preauth_once(server, expired_account), "cancel", "item-not-found", TOKEN_INVALID)
    register(server, live_account, "dave")
    register(server, live_bound, "carol")
    register(server, live_roster, "erin")
    assert storage.accounts(server) == {"alice", "bob", "dave", "carol", "erin"}


def test_cleanup_word_form_prints_what_it_did(server):
    """`prosodyctl shell invites_register cleanup HOST` deletes and prints the counts."""
    server.ctl("register", "alice", HOST, "secret")
    token = invites.account(server, ttl=-60)
    contact = invites.contact(server, "alice", ttl=-60)
    out = cleanup_words(server)
    assert SUMMARY.format(1, 1, 1) in out, out
    assert not storage.invite_stored(server, token)
    assert not storage.invite_stored(server, contact, user="alice")


def test_cleanup_with_nothing_expired_removes_nothing(server):
    """Negative: only live invites → nothing deleted, counts 0."""
    server.ctl("register", "alice", HOST, "secret")
    tokens = [invites.account(server), invites.account(server, "bob"), invites.reusable(server)]
    contact = invites.contact(server, "alice")
    assert cleanup(server) == SUMMARY.format(0, 0, 0)
    for token in tokens:
        assert storage.invite_stored(server, token)
    assert storage.invite_stored(server, contact, user="alice")


def test_cleanup_spares_recently_preauthed_expired_invite(server):
    """An invite that expired after a preauth in the last 15 minutes is kept by the
    cleanup (its client may still register, XEP-0445) and then registers; an invite that
    expired at the same time without a preauth is deleted."""
    unused = invites.account(server, ttl=1)
    token = invites.account(server, ttl=1)
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        wait_expired(server, token)
        assert cleanup(server) == SUMMARY.format(1, 0, 0)
        assert not storage.invite_stored(server, unused)
        assert storage.invite_stored(server, token)
        assert_result(s.register("alice", "secret"))
    assert storage.accounts(server) == {"alice"}
    assert storage.invite_gone(server, token)


def test_cleanup_is_per_host(server):
    """Cleaning the other host leaves this host's expired invites alone, and vice versa."""
    here = invites.account(server, ttl=-60)
    there = invites.account(server, ttl=-60, host=OTHER_HOST)
    assert cleanup(server, OTHER_HOST) == SUMMARY.format(1, 0, 0)
    assert storage.invite_stored(server, here)
    assert not storage.invite_stored(server, there, host=OTHER_HOST)
    assert summary_logged(server, 1, 0, 0, host=OTHER_HOST)
    assert cleanup(server) == SUMMARY.format(1, 0, 0)
    assert not storage.invite_stored(server, here)


def test_cleanup_interval_runs_by_itself(prosody):
    """With `invites_register_cleanup_interval = 1` expired invites disappear without an
    admin command, and the run is logged; live ones stay."""
    server = prosody.start(extra_config={"invites_register_cleanup_interval": 1})
    server.ctl("register", "alice", HOST, "secret")
    expired = invites.account(server, ttl=-60)
    contact = invites.contact(server, "alice", ttl=-60)
    live = invites.account(server)
    assert storage.invite_gone(server, expired, timeout=5)
    assert storage.invite_gone(server, contact, user="alice", timeout=5)
    assert storage.invite_stored(server, live)
    assert any("Removed" in line and "expired invites" in line
               for line in server.log_lines(source=MODULE_LOG, level="info"))


def test_cleanup_interval_zero_never_runs(prosody):
    """Negative: `invites_register_cleanup_interval = 0` never cleans by itself."""
    server = prosody.start(extra_config={"invites_register_cleanup_interval": 0})
    expired = invites.account(server, ttl=-60)
    time.sleep(2.2)
    assert storage.invite_stored(server, expired)
    assert not any("expired invites" in line
                   for line in server.log_lines(source=MODULE_LOG, level="info"))


def test_status_prints_the_index(prosody):
    """`invites_register status HOST` prints pending invites, bound usernames, tokens
    awaiting deletion (internal storage, default delay), claims in flight and throttled
    addresses, and the numbers follow what happens."""
    server = prosody.start(extra_config={"invites_register_delete_delay": None,
                                         "invites_register_token_attempts": 2})
    invites.account(server, "alice")
    invites.account(server, "bob")
    plain = invites.account(server)
    before = status(server)
    assert before == {"pending invites": 3, "bound usernames": 2, "tokens awaiting deletion": 0,
                      "claims in flight": 0, "throttled addresses": 0}, before
    assert status(server, OTHER_HOST)["pending invites"] == 0

    register(server, plain, "zed")
    during = status(server)
    if server.options.storage == "internal" and storage.invite_stored(server, plain):
        assert during["tokens awaiting deletion"] == 1, during
    assert during["bound usernames"] == 2, during
    assert storage.invite_gone(server, plain, timeout=6)
    after = status(server)
    assert after["pending invites"] == 2, after
    assert after["tokens awaiting deletion"] == 0, after

    with RawStream(server.port) as s:
        s.open()
        for i in range(2):
            assert_error(s.preauth(f"wrong-token-{i}-xxxxxxxxxxxx"), "cancel", "item-not-found")
        assert_error(s.preauth("wrong-token-x-xxxxxxxxxxxx"), "wait", "policy-violation",
                     THROTTLED)
    assert status(server)["throttled addresses"] == 1
    assert status(server, OTHER_HOST)["throttled addresses"] == 0
