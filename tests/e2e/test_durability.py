"""Single use survives a crash, and batched deletes survive storage errors (SPEC §7.2,
issue 12 item 2).

On internal storage a used token is refused at once, recorded durably (keyval store
`invites_register_consumed`, one entry per token) and deleted from mod_invites' store with
the next batch write, within `invites_register_delete_delay` seconds; markers a crash
leaves behind are applied at the next start. On SQL storage the record is deleted at once.
Either way, after the registration's reply a `kill -9` never makes the token valid again.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

import client
import invites
import server_state
import storage
from expect import TOKEN_INVALID, TOKEN_USED, assert_error, assert_result
from prosody import HOST, Prosody
from xmpp_raw import RawStream

MODULE_LOG = f"{HOST}:invites_register"
MARKERS = "invites_register_consumed"
# The module's default delay (2 s) instead of the harness' quarter second: the kill
# then lands before the batch write.
DEFAULT_DELAY = {"invites_register_delete_delay": None}


def crash_and_restart(server: Prosody) -> None:
    """SIGKILL the server (no shutdown handler runs), then start it again on the same
    data directory and config."""
    assert server.proc is not None and server.proc.poll() is None, "server not running"
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=10)
    assert server.proc.returncode == -signal.SIGKILL
    server.stop()  # only forgets the dead process and closes its console file
    server.start()


def marker(server: Prosody, token: str) -> dict | None:
    """The durable consumed-token record of `token` (internal storage only)."""
    return storage.keyval(server, MARKERS, token)


def register(server: Prosody, token: str, username: str, password: str = "secret") -> None:
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        assert_result(s.register(username, password))


def assert_refused(server: Prosody, token: str) -> None:
    """The token is refused at preauth (XEP-0445's invalid-token reply)."""
    with RawStream(server.port) as s:
        s.open()
        assert_error(s.preauth(token), "cancel", "item-not-found", TOKEN_INVALID)


def test_kill_after_account_registration(prosody):
    """kill -9 right after an invited registration returned (before the batch write, with
    the default 2 s delay): after the restart the token is refused, the account logs in,
    and the used token leaves mod_invites' store (the marker is applied at start)."""
    server = prosody.start(extra_config=DEFAULT_DELAY)
    token = invites.account(server)
    other = invites.account(server)
    register(server, token, "alice")
    if server.options.storage == "internal":
        # The kill lands before the batch: the record is still in the file, and the
        # durable marker is already there.
        assert storage.invite_stored(server, token)
        assert marker(server, token) is not None
    crash_and_restart(server)

    assert_refused(server, token)
    assert client.login(server.port, "alice", "secret")
    assert storage.invite_gone(server, token, timeout=6)
    if server.options.storage == "internal":
        assert marker(server, token) is None, "marker left after the batch write"
    # The other invite survived the crash and is still good.
    register(server, other, "bob")
    assert storage.accounts(server) == {"alice", "bob"}


def test_kill_after_roster_invite_registration(prosody):
    """The same for a roster invite with registration: after kill -9 and restart the
    token is refused, the new account logs in with its mutual subscription, and both the
    host record and the inviter's entry leave the store."""
    server = prosody.start(extra_config=DEFAULT_DELAY, extra_modules=server_state.INSPECT)
    server.ctl("register", "alice", HOST, "secret")
    token = invites.contact(server, "alice", allow_registration=True)
    assert storage.invite_stored(server, token)
    assert storage.invite_stored(server, token, user="alice")
    register(server, token, "bob")
    if server.options.storage == "internal":
        assert storage.invite_stored(server, token)
        assert marker(server, token) is not None
    crash_and_restart(server)

    assert_refused(server, token)
    assert client.login(server.port, "bob", "secret")
    assert server_state.roster(server, "alice").get(f"bob@{HOST}", {}).get("subscription") == "both"
    assert server_state.roster(server, "bob").get(f"alice@{HOST}", {}).get("subscription") == "both"
    assert storage.invite_gone(server, token, timeout=6)
    assert storage.invite_gone(server, token, user="alice", timeout=6)
    if server.options.storage == "internal":
        assert marker(server, token) is None


def test_kill_without_registration_keeps_invite(prosody):
    """Negative: a crash after a preauth alone (nothing consumed) leaves the invite valid."""
    server = prosody.start(extra_config=DEFAULT_DELAY)
    token = invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
    crash_and_restart(server)
    register(server, token, "alice")
    assert storage.invite_gone(server, token, timeout=6)


def test_clean_shutdown_writes_pending_batch(prosody):
    """A clean stop (SIGTERM) within the delete delay writes the batch before exiting:
    the token is out of the store and no marker is left once the process is gone."""
    server = prosody.start(extra_config=DEFAULT_DELAY)
    token = invites.account(server)
    register(server, token, "alice")
    server.stop()
    assert not storage.invite_stored(server, token)
    if server.options.storage == "internal":
        assert marker(server, token) is None
    server.start()
    assert_refused(server, token)
    assert client.login(server.port, "alice", "secret")


def chattr(path, flag: str) -> bool:
    result = subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True)
    return result.returncode == 0


def test_batch_write_error_is_logged_and_retried(prosody):
    """Internal storage: while the host's data directory is immutable the batch write of
    mod_invites' store fails; that is logged as an error, the token stays refused, and the
    write is retried: once the directory is writable again the token leaves the store."""
    if prosody.storage != "internal":
        pytest.skip("batched deletes and their write errors are internal storage's")
    server = prosody.start()  # harness delay: 0.25 s
    host_dir = server.data_dir / "example%2etest"
    # Warm up: one registration creates the accounts/ and marker folders, so that while
    # the host folder is immutable only the rewrite of invite_token.dat fails.
    warmup = invites.account(server)
    register(server, warmup, "first")
    assert storage.invite_gone(server, warmup)
    token = invites.account(server)
    other = invites.account(server)
    if not chattr(host_dir, "+i"):
        pytest.skip("chattr +i is not available here")
    try:
        register(server, token, "alice")
        deadline = time.monotonic() + 5
        errors: list[str] = []
        while not errors and time.monotonic() < deadline:
            time.sleep(0.1)
            errors = [line for line in server.log_lines(source=MODULE_LOG, level="error")
                      if "used invite token" in line]
        assert errors, "no error logged for the failed batch write"
        assert storage.invite_stored(server, token)  # the write did fail
        assert marker(server, token) is not None
        assert_refused(server, token)
        with RawStream(server.port) as s:
            s.open()
            assert_result(s.preauth(other))
        assert server.proc.poll() is None
    finally:
        chattr(host_dir, "-i")
    assert storage.invite_gone(server, token, timeout=6), "the failed batch was not retried"
    deadline = time.monotonic() + 3
    while marker(server, token) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker(server, token) is None
    assert_refused(server, token)
    register(server, other, "bob")
    assert storage.accounts(server) == {"first", "alice", "bob"}
    assert client.login(server.port, "alice", "secret")


def test_used_token_refused_on_same_stream_before_batch(prosody):
    """Between consumption and the batch write (default delay) the token is refused for a
    second registration on the same stream and at every new preauth."""
    server = prosody.start(extra_config=DEFAULT_DELAY)
    token = invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        assert_result(s.register("alice", "secret"))
        assert_error(s.register("again", "secret"), "modify", "not-acceptable", TOKEN_USED)
    if server.options.storage == "internal":
        assert storage.invite_stored(server, token)
    assert_refused(server, token)
    assert storage.accounts(server) == {"alice"}
    assert storage.invite_gone(server, token, timeout=6)
