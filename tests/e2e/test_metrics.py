"""Metrics through `module:metric`, scraped over HTTP from Prosody's own
mod_http_openmetrics (issue 14 item 4; SPEC §7.4): counters `preauth{result}`,
`registrations{result}`, `consumed`, `cleaned`; gauges `pending`, `reserved`, `claims`;
each per host. They are rendered as `prosody_mod_invites_register__<name>[_total]`."""

from __future__ import annotations

import re
import time
import urllib.request

import invites
import storage
from expect import THROTTLED, assert_error, assert_result
from prosody import HOST, OTHER_HOST, Prosody, free_port, lua, prosody_version, version_tuple
from xmpp_raw import RawStream

FAMILY = "prosody_mod_invites_register__"
SAMPLE_RE = re.compile(r"^(?P<name>[A-Za-z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def start_with_metrics(prosody, **options) -> tuple[Prosody, int]:
    """A server with mod_http_openmetrics on a free HTTP port on 127.0.0.1."""
    http_port = free_port()
    extra = {"statistics": "internal", "statistics_interval": "manual",
             "http_ports": [http_port], "http_interfaces": ["127.0.0.1"]}
    extra.update(options.pop("extra_config", {}))
    server = prosody.start(extra_modules=["http_openmetrics"] + options.pop("extra_modules", []),
                           extra_config=extra, **options)
    return server, http_port


def scrape(http_port: int) -> dict[tuple[str, frozenset], float]:
    """Our module's samples: {(metric name without the family prefix, labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as reply:
        assert reply.status == 200
        body = reply.read().decode()
    samples = {}
    for line in body.splitlines():
        match = SAMPLE_RE.match(line)
        if not match or not match.group("name").startswith(FAMILY):
            continue
        name = match.group("name")[len(FAMILY):]
        if name.endswith("_created"):
            continue
        labels = frozenset(LABEL_RE.findall(match.group("labels") or ""))
        samples[(name, labels)] = float(match.group("value"))
    assert samples, f"no {FAMILY}* metrics in the scrape:\n{body[:2000]}"
    return samples


def scrape_until(http_port: int, expected: dict[tuple[str, str], float],
                 timeout: float = 2.0) -> dict[tuple[str, frozenset], float]:
    """Scrape until the gauges {(name, host): value} read as expected (a gauge may lag
    an in-process change by an event-loop turn); the last scrape."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(http_port)
        got = {key: value(samples, key[0], key[1]) for key in expected}
        if got == expected:
            return samples
        assert time.monotonic() < deadline, f"gauges {got}, expected {expected}"
        time.sleep(0.1)


def value(samples, name: str, host: str = HOST, **labels: str) -> float:
    """One sample (0 when the labelled series does not exist yet: counters appear on
    first use)."""
    key = (name, frozenset({("host", host), *labels.items()}))
    return samples.get(key, 0.0)


def delta(after, before, name: str, host: str = HOST, **labels: str) -> float:
    return value(after, name, host, **labels) - value(before, name, host, **labels)


def test_counters_follow_preauths_and_registrations(prosody):
    """Every preauth and registration outcome moves its own counter by exactly what was
    done: preauth valid/invalid/throttled/wrong_host; registrations invited, reset,
    no_invite, used, username, reserved, reset_user; consumed."""
    server, http_port = start_with_metrics(
        prosody, extra_config={"invites_register_token_attempts": 3})
    server.ctl("register", "bob", HOST, "old-password")
    plain = invites.account(server)
    invites.account(server, "alice")
    carol = invites.account(server, "carol")
    reset = invites.reset(server, "bob")
    before = scrape(http_port)

    with RawStream(server.port) as s:
        s.open()
        assert_error(s.register("nobody", "secret"), "modify", "not-acceptable")  # no_invite
        assert_result(s.preauth(plain))  # valid 1
        assert_error(s.register("alice", "secret"), "modify", "not-acceptable")  # reserved
        assert_result(s.register("zed", "secret"))  # invited, consumed 1
        assert_error(s.register("zed2", "secret"), "modify", "not-acceptable")  # used
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(carol))  # valid 2
        assert_error(s.register("dave", "secret"), "modify", "not-acceptable")  # username
        assert_result(s.register("carol", "secret"))  # invited 2, consumed 2
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(reset))  # valid 3
        assert_error(s.register("notbob", "secret"), "modify", "not-acceptable")  # reset_user
        assert_result(s.register("bob", "new-password"))  # reset, consumed 3
    with RawStream(server.port) as s:
        s.open()
        # A stream for this host asking the other host: counted there as wrong_host (from
        # 13.0.8 on Prosody's router answers it itself and never dispatches it).
        assert_error(s.preauth(plain, to=OTHER_HOST), "cancel", "service-unavailable")
        for i in range(3):
            assert_error(s.preauth(f"wrong-{i}-xxxxxxxxxxxxxxxxxx"), "cancel", "item-not-found")
        assert_error(s.preauth("wrong-x-xxxxxxxxxxxxxxxxxx"), "wait", "policy-violation",
                     THROTTLED)
    after = scrape(http_port)

    expected = {
        ("preauth", "valid"): 3, ("preauth", "invalid"): 3, ("preauth", "throttled"): 1,
        ("registrations", "invited"): 2, ("registrations", "reset"): 1,
        ("registrations", "no_invite"): 1, ("registrations", "used"): 1,
        ("registrations", "username"): 1, ("registrations", "reserved"): 1,
        ("registrations", "reset_user"): 1,
    }
    got = {key: delta(after, before, f"{key[0]}_total", result=key[1]) for key in expected}
    assert got == expected
    dispatched = version_tuple(prosody_version()) < (13, 0, 8)
    assert delta(after, before, "preauth_total", OTHER_HOST, result="wrong_host") == int(dispatched)
    assert delta(after, before, "preauth_total", result="wrong_host") == 0
    assert delta(after, before, "consumed_total") == 3
    assert delta(after, before, "consumed_total", OTHER_HOST) == 0
    assert delta(after, before, "registrations_total", OTHER_HOST, result="invited") == 0


def test_encryption_required_counter(prosody):
    """A preauth on a plaintext stream of a server that requires encryption counts as
    encryption_required (and not as invalid)."""
    server, http_port = start_with_metrics(prosody, encryption=True)
    token = invites.account(server)
    before = scrape(http_port)
    with RawStream(server.port) as s:
        s.open()
        assert_error(s.preauth(token), "modify", "policy-violation")
        assert_error(s.preauth("wrong-xxxxxxxxxxxxxxxxxxxx"), "modify", "policy-violation")
    after = scrape(http_port)
    assert delta(after, before, "preauth_total", result="encryption_required") == 2
    assert delta(after, before, "preauth_total", result="invalid") == 0
    assert delta(after, before, "preauth_total", result="valid") == 0


def test_gauges_follow_the_index(prosody):
    """`pending` counts the host's invites, `reserved` its bound names, `claims` is 0 at
    rest; they follow creation, use and cleanup; `cleaned` counts what cleanup deleted.
    (Delete delay 0: a used invite leaves the index at once.)"""
    server, http_port = start_with_metrics(
        prosody, extra_config={"invites_register_delete_delay": 0})
    start = scrape(http_port)
    assert value(start, "pending") == 0
    assert value(start, "reserved") == 0
    assert value(start, "claims") == 0

    alice = invites.account(server, "alice")
    invites.account(server, "bob")
    invites.account(server, "bob")  # a second invite for the same name
    invites.account(server)
    invites.account(server, host=OTHER_HOST)
    scrape_until(http_port, {("pending", HOST): 4, ("reserved", HOST): 2,
                             ("pending", OTHER_HOST): 1, ("reserved", OTHER_HOST): 0})

    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(alice))
        assert_result(s.register("alice", "secret"))
    assert storage.invite_gone(server, alice)
    used = scrape_until(http_port, {("pending", HOST): 3, ("reserved", HOST): 1,
                                    ("claims", HOST): 0})

    invites.account(server, ttl=-60)
    invites.account(server, "old", ttl=-60)
    out = server.shell(f"invites_register:cleanup({lua(HOST)})")
    assert out.startswith("Removed 2 expired invites"), out
    cleaned = scrape_until(http_port, {("pending", HOST): 3, ("reserved", HOST): 1})
    assert delta(cleaned, used, "cleaned_total") == 2
    assert delta(cleaned, used, "cleaned_total", OTHER_HOST) == 0
