"""The per-host invite index (SPEC §7.2, issue 12 item 1): changes made outside the
server process, or behind the module's back inside it, are seen at the next preauth;
used tokens stay refused everywhere the module decides, before and after the batch
write; reusable invites keep working; hosts never share invites."""

from __future__ import annotations

import os
import re
import shutil
import time

import pytest

import client
import frontend
import invites
import storage
from expect import INVITE_ONLY, TOKEN_INVALID, TOKEN_USED, assert_error, assert_result
from prosody import HOST, OTHER_HOST, Prosody
from xmpp_raw import RawStream

MODULE_LOG = f"{HOST}:invites_register"
DEFAULT_DELAY = {"invites_register_delete_delay": None}
INDEXED_RE = re.compile(r"Indexed \d+ invites")


def preauth_once(server: Prosody, token: str, host: str = HOST):
    with RawStream(server.port, to=host) as s:
        s.open()
        return s.preauth(token)


def register(server: Prosody, token: str, username: str, host: str = HOST) -> None:
    with RawStream(server.port, to=host) as s:
        s.open()
        assert_result(s.preauth(token))
        assert_result(s.register(username, "secret"))


def index_loads(server: Prosody, host: str = HOST) -> int:
    """How many times the module read all of the host's invites (its debug line)."""
    return sum(1 for line in server.log_lines(source=f"{host}:invites_register")
               if INDEXED_RE.search(line))


def test_invite_from_another_process_valid_at_next_preauth(server):
    """0.12: `prosodyctl mod_invites generate` writes the store from a separate process
    while the server runs (and after the module has loaded its index); the new invite is
    valid at the very next preauth and registers. (13 has no such command: its
    replacement, the admin shell, creates the invite inside the server.)"""
    warm = invites.account(server)
    assert_result(preauth_once(server, warm))
    assert_error(preauth_once(server, "not-a-token-at-all-xxxx"), "cancel", "item-not-found")
    uri = invites.generate(server)
    token = invites.token_from_uri(uri)
    assert storage.invite_stored(server, token)
    register(server, token, "alice")
    assert client.login(server.port, "alice", "secret")
    assert storage.invite_gone(server, token)
    assert_error(preauth_once(server, token), "cancel", "item-not-found", TOKEN_INVALID)


def test_invite_deleted_behind_the_modules_back_refused(server):
    """An invite deleted by mod_invites (13: `shell invite delete`; 0.12:
    `delete_account_invite`) after it was validated once is refused at the next preauth;
    its neighbour stays valid."""
    token = invites.account(server)
    other = invites.account(server)
    assert_result(preauth_once(server, token))
    invites.delete(server, token)
    assert_error(preauth_once(server, token), "cancel", "item-not-found", TOKEN_INVALID)
    with RawStream(server.port) as s:
        s.open()
        assert_error(s.preauth(token), "cancel", "item-not-found", TOKEN_INVALID)
        assert_error(s.register("mallory", "secret"), "modify", "not-acceptable", INVITE_ONLY)
    register(server, other, "bob")
    assert storage.accounts(server) == {"bob"}


def test_restored_backup_is_seen_at_next_preauth(prosody):
    """Internal storage: an admin restores an older copy of the host's invite file while
    the server runs. At the next preauth an invite only in the replaced file is refused,
    one only in the backup is valid again, and a token consumed since the backup was taken
    stays refused (single use does not depend on the file)."""
    if prosody.storage != "internal":
        pytest.skip("the invite file is internal storage's")
    server = prosody.start()
    path = server.data_dir / "example%2etest" / "invite_token.dat"
    kept = invites.account(server)
    used = invites.account(server)
    revived = invites.account(server)
    backup = server.workdir / "invite_token.dat.backup"
    shutil.copy2(path, backup)
    register(server, used, "alice")
    assert storage.invite_gone(server, used)
    invites.delete(server, revived)
    assert_error(preauth_once(server, revived), "cancel", "item-not-found")
    newer = invites.account(server)
    assert_result(preauth_once(server, newer))

    # Restore: a new file (new inode) renamed over the live one, as backup tools do.
    staged = path.with_name("invite_token.dat.restore")
    shutil.copy2(backup, staged)
    os.replace(staged, path)

    assert_error(preauth_once(server, newer), "cancel", "item-not-found", TOKEN_INVALID)
    assert_error(preauth_once(server, used), "cancel", "item-not-found", TOKEN_INVALID)
    assert_result(preauth_once(server, revived))
    register(server, kept, "bob")
    register(server, revived, "carol")
    assert storage.accounts(server) == {"alice", "bob", "carol"}


def test_unchanged_store_is_not_read_again(server):
    """Repeated preauths (valid and invalid) and registration refusals with no change to
    the store never read all of the host's invites again; a change by another process is
    picked up (0.12 `mod_invites generate`; on 13 the in-process creation needs no read)."""
    token = invites.account(server)
    assert_result(preauth_once(server, token))
    loads = index_loads(server)
    assert loads >= 1, "no 'Indexed N invites' line at load: the check below would be vacuous"
    for i in range(10):
        assert_result(preauth_once(server, token))
        assert_error(preauth_once(server, f"unknown-token-{i:04d}-xxxxxxxx"), "cancel",
                     "item-not-found")
    with RawStream(server.port) as s:
        s.open()
        assert_error(s.register("nobody", "secret"), "modify", "not-acceptable", INVITE_ONLY)
    assert index_loads(server) == loads, "the whole store was read again without a change"
    fresh = invites.token_from_uri(invites.generate(server))
    assert_result(preauth_once(server, fresh))


def test_consumed_token_refused_through_frontend_before_and_after_batch(prosody):
    """A token used over IBR is refused through a web-style front-end (which validates
    with mod_invites' `get()` and passes `event.validated_invite`) while its record is
    still in the store (default delete delay) and after the batch deleted it — for forms
    opened before the use, and for new ones."""
    server = prosody.start(extra_modules=frontend.FRONTEND, extra_config=DEFAULT_DELAY)
    token = invites.account(server)
    early = frontend.open_form(server, token)
    assert not early.startswith("invalid"), early
    register(server, token, "alice")
    if server.options.storage == "internal":
        assert storage.invite_stored(server, token), "batch written too early to test 'before'"
        # mod_invites' get() still finds the record; our module must refuse it.
        late = frontend.open_form(server, token)
        assert not late.startswith("invalid"), late
    else:
        late = None
    assert frontend.submit(server, early, "mallory", "secret") == f"refused: {TOKEN_USED}"
    assert frontend.register(server, token, "mallory", "secret") in (
        f"refused: {TOKEN_USED}", "invalid: token-invalid")
    if server.options.storage == "internal":
        assert frontend.register(server, token, "mallory", "secret") == f"refused: {TOKEN_USED}"
    assert_error(preauth_once(server, token), "cancel", "item-not-found", TOKEN_INVALID)

    assert storage.invite_gone(server, token, timeout=6)
    assert frontend.submit(server, early, "mallory2", "secret") == f"refused: {TOKEN_USED}"
    if late:
        assert frontend.submit(server, late, "mallory3", "secret") == f"refused: {TOKEN_USED}"
    assert frontend.register(server, token, "mallory4", "secret").startswith("invalid")
    assert_error(preauth_once(server, token), "cancel", "item-not-found", TOKEN_INVALID)
    assert storage.accounts(server) == {"alice"}


def test_reusable_invite_keeps_working_across_batches(prosody):
    """A reusable (group) invite registers over IBR and through a front-end, again after
    batch writes of other used tokens, and stays in the store."""
    server = prosody.start(extra_modules=frontend.FRONTEND)
    group = invites.reusable(server)
    single = invites.account(server)
    register(server, group, "g1")
    register(server, single, "s1")
    assert storage.invite_gone(server, single)
    time.sleep(0.4)  # past the harness' 0.25 s delete delay
    register(server, group, "g2")
    assert frontend.register(server, group, "g3", "secret") == frontend.REGISTERED
    time.sleep(0.4)
    assert storage.invite_stored(server, group)
    register(server, group, "g4")
    assert storage.accounts(server) == {"g1", "g2", "g3", "g4", "s1"}


def test_hosts_never_see_each_others_invites(server):
    """An invite of one host is unknown on the other, in both directions, at preauth and
    through a stream addressed to the other host; using one leaves the other alone."""
    mine = invites.account(server)
    theirs = invites.account(server, host=OTHER_HOST)
    bound_there = invites.account(server, "carol", host=OTHER_HOST)
    assert_error(preauth_once(server, theirs), "cancel", "item-not-found", TOKEN_INVALID)
    assert_error(preauth_once(server, mine, host=OTHER_HOST), "cancel", "item-not-found",
                 TOKEN_INVALID)
    # A name reserved on the other host is free here.
    register(server, mine, "carol")
    assert storage.account_exists(server, "carol")
    assert not storage.account_exists(server, "carol", host=OTHER_HOST)
    register(server, theirs, "dave", host=OTHER_HOST)
    assert storage.account_exists(server, "dave", host=OTHER_HOST)
    assert not storage.account_exists(server, "dave")
    assert storage.invite_gone(server, mine)
    assert storage.invite_gone(server, theirs, host=OTHER_HOST)
    assert storage.invite_stored(server, bound_there, host=OTHER_HOST)
    assert_result(preauth_once(server, bound_there, host=OTHER_HOST))
    assert_error(preauth_once(server, bound_there), "cancel", "item-not-found")


def test_other_host_out_of_process_invite_stays_there(server):
    """An invite generated for the other host (0.12: by a separate prosodyctl process) is
    valid there and unknown here."""
    token = invites.token_from_uri(invites.generate(server, host=OTHER_HOST))
    assert_error(preauth_once(server, token), "cancel", "item-not-found", TOKEN_INVALID)
    assert_result(preauth_once(server, token, host=OTHER_HOST))
