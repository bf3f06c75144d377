"""Storage faults (SPEC §5: "Storage errors (`nil, err`) are logged and mean 'not valid' —
never 'valid'"; §4.4: "Delete failures are logged and never undo the registration").

Store `invite_token` goes through tests/e2e/plugins/mod_storage_faulty.lua, which wraps
the backend under test (internal, or SQL with `default_storage = "sql"`) and fails reads
or writes while <data_path>/storage_faults says so. mod_invites creates the invites while
no fault is on."""

from __future__ import annotations

import pytest

import client
import invites
import storage
from expect import INVITE_ONLY, TOKEN_INVALID, TOKEN_USED, assert_error, assert_result
from prosody import HOST, Prosody
from xmpp_raw import NS_CLIENT, NS_PREAUTH, RawStream, q

MODULE_LOG = f"{HOST}:invites_register"


@pytest.fixture
def faulty(monkeypatch):
    """Servers started in this test keep `invite_token` on the faulty driver."""
    render = Prosody.render_config

    def render_faulty(self):
        out, placed = [], False
        for line in render(self).split("\n"):
            if line.strip() == 'storage = "sql"':
                line = 'default_storage = "sql"'
            if line.startswith("VirtualHost ") and not placed:
                out.append('storage = { invite_token = "faulty" }')
                placed = True
            out.append(line)
        return "\n".join(out)

    monkeypatch.setattr(Prosody, "render_config", render_faulty)


def faults(server: Prosody, what: str) -> None:
    """Switch faults: "read", "write", "read write" or "" (none)."""
    (server.data_dir / "storage_faults").write_text(what)


def logged(server: Prosody, level: str, *needles: str) -> list[str]:
    return [line for line in server.log_lines(source=MODULE_LOG, level=level)
            if all(n in line for n in needles)]


def test_driver_is_in_use(prosody, faulty):
    """Sanity: the faulty driver carries the store (a read fault reaches mod_invites)."""
    server = prosody.start()
    token = invites.account(server)
    assert storage.invite_stored(server, token)
    faults(server, "read")
    out = server.shell(f'>select(2, require"core.storagemanager".open("{HOST}", "invite_token", '
                       f'"map"):get(nil, "{token}"))')
    assert "simulated read failure" in out, out


def test_read_failure_means_invalid(prosody, faulty):
    """Failing reads: a valid token gets item-not-found (never result), the module logs
    a warning, registration stays invite-only; once reads work the token is fine."""
    server = prosody.start()
    token = invites.account(server)
    faults(server, "read")
    with RawStream(server.port) as s:
        s.open()
        assert_error(s.preauth(token), "cancel", "item-not-found", TOKEN_INVALID)
        assert_error(s.register("alice", "secret"), "modify", "not-acceptable", INVITE_ONLY)
    assert logged(server, "warn", "Failed to read invite token", "simulated read failure")
    assert not storage.account_exists(server, "alice")

    faults(server, "")
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        assert_result(s.register("alice", "secret"))
    assert client.login(server.port, "alice", "secret")


def test_write_failure_at_consumption(prosody, faulty):
    """Failing writes when the invite is consumed: the registration still succeeds, the
    failed delete is logged as an error by our module, the server keeps running, and the
    token — still in storage while writes fail — is refused from then on. The delete is
    retried: once writes work again the record goes."""
    server = prosody.start()
    token = invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        faults(server, "write")
        assert_result(s.register("alice", "secret"))
        assert_error(s.register("again", "secret"), "modify", "not-acceptable", TOKEN_USED)
    assert logged(server, "error", "Failed to delete used invite token", "simulated write failure")
    assert storage.invite_stored(server, token)  # the delete did fail
    with RawStream(server.port) as s:
        s.open()
        assert_error(s.preauth(token), "cancel", "item-not-found", TOKEN_INVALID)
        assert_error(s.register("mallory", "secret"), "modify", "not-acceptable", INVITE_ONLY)
    faults(server, "")
    assert storage.account_exists(server, "alice")
    assert client.login(server.port, "alice", "secret")
    assert server.proc.poll() is None
    assert storage.invite_gone(server, token, timeout=15)  # retried
    with RawStream(server.port) as s:
        s.open()
        fresh = invites.account(server)
        assert_result(s.preauth(fresh))
        assert_result(s.register("bob", "secret"))
    assert storage.accounts(server) == {"alice", "bob"}
    assert storage.invite_gone(server, fresh)


def test_read_failure_after_preauth(prosody, faulty):
    """A registration is judged against the store as it is then (SPEC §7.3 F12), so when
    the store cannot be read after the preauth the registration is refused ("no longer
    valid": a storage error never counts as valid), nothing is burnt, and once reads work
    again the same stream registers. Deletes that then fail are logged, never a traceback."""
    server = prosody.start()
    token = invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        faults(server, "read")
        assert_error(s.register("alice", "secret"), "modify", "not-acceptable", TOKEN_USED)
        assert logged(server, "warn", "Failed to read invite token", "simulated read failure")
        assert not storage.account_exists(server, "alice")
        faults(server, "write")
        assert_result(s.register("alice", "secret"))
    faults(server, "")
    assert client.login(server.port, "alice", "secret")
    assert logged(server, "error", "Failed to delete used invite token")
    assert storage.invite_stored(server, token)  # the delete did fail
    with RawStream(server.port) as s:
        s.open()
        assert_error(s.preauth(token), "cancel", "item-not-found", TOKEN_INVALID)


def test_frontend_invite_read_failure_refused(prosody, faulty):
    """An invite handed in by a front-end (mod_test_frontend, like mod_register_web) is
    re-read at registration; when that read fails the registration is refused with "The
    invite token is no longer valid" (storage error = not valid), and works once reads do."""
    server = prosody.start(extra_modules=["test_frontend"])
    token = invites.account(server)
    form = server.shell(f'testfrontend:open("{HOST}", "{token}")')
    faults(server, "read")
    outcome = server.shell(f'testfrontend:submit("{form}", "frank", "secret")')
    assert outcome == f"refused: {TOKEN_USED}", outcome
    assert logged(server, "warn", "Failed to read invite token", "simulated read failure")
    assert not storage.account_exists(server, "frank")
    faults(server, "")
    outcome = server.shell(f'testfrontend:submit("{form}", "frank", "secret")')
    assert outcome == "registered", outcome
    assert client.login(server.port, "frank", "secret")


def subscribe(stream: RawStream, contact: str, token: str) -> list:
    """Send a pre-authenticated subscription request; return what arrived before the
    ping answer (stanzas of one session are handled in order)."""
    stream.send(f"<presence type='subscribe' to='{contact}'>"
                f"<preauth xmlns='{NS_PREAUTH}' token='{token}'/></presence>")
    stream.iq(f"<iq type='get' id='{stream.next_id('ping')}' to='{HOST}'>"
              "<ping xmlns='urn:xmpp:ping'/></iq>")
    got, stream.pending = stream.pending, []
    return got


def asked_back(got, contact: str) -> bool:
    return any(s.tag == q(NS_CLIENT, "presence") and s.type == "subscribe"
               and (s.get("from") or "").split("/")[0] == contact for s in got)


def online(stream: RawStream, user: str) -> None:
    stream.login(user, "secret")
    stream.send("<presence/>")


def test_contact_invite_read_failure(prosody, faulty):
    """XEP-0379: when alice's contact invite cannot be read, carol's subscription request
    is handled normally (no pre-approval, warning logged); with storage back, the same
    token pre-approves."""
    server = prosody.start()
    for user in ("alice", "carol"):
        server.ctl("register", user, HOST, "secret")
    token = invites.contact(server, "alice")
    with RawStream(server.port) as carol:
        online(carol, "carol")
        faults(server, "read")
        assert not asked_back(subscribe(carol, f"alice@{HOST}", token), f"alice@{HOST}")
        assert logged(server, "warn", "Failed to read contact invite of alice")
        faults(server, "")
        assert asked_back(subscribe(carol, f"alice@{HOST}", token), f"alice@{HOST}")
    assert storage.invite_gone(server, token, user="alice")


def test_contact_invite_write_failure(prosody, faulty):
    """XEP-0379 with failing writes: the subscription is still pre-approved, the failed
    deletes are logged as errors, and the token — consumed in memory though still stored —
    does not pre-approve a second contact."""
    server = prosody.start()
    for user in ("alice", "carol", "dave"):
        server.ctl("register", user, HOST, "secret")
    token = invites.contact(server, "alice")
    with RawStream(server.port) as carol:
        online(carol, "carol")
        faults(server, "write")
        assert asked_back(subscribe(carol, f"alice@{HOST}", token), f"alice@{HOST}")
    faults(server, "")
    assert logged(server, "error", "Failed to delete used contact invite of alice",
                  "simulated write failure")
    assert storage.invite_stored(server, token, user="alice")
    with RawStream(server.port) as dave:
        online(dave, "dave")
        assert not asked_back(subscribe(dave, f"alice@{HOST}", token), f"alice@{HOST}")
    assert server.proc.poll() is None
