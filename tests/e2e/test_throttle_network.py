"""The failed-preauth throttle by network (SPEC §7.3 F15, issue 13 item 4): IPv6 clients
count per prefix of `invites_register_throttle_ipv6_prefix` bits (default 64), IPv4
clients per address.

Over real sockets this needs IPv6 loopback (the server listens on ::1 too); the tests that
compare two IPv6 networks also need a second local IPv6 address outside ::/64 to connect
from (e.g. a ULA on eth0): ::1 and that address are different /64 networks, but one
network at prefix 0. That two addresses of
one /64 share a bucket is pinned by the Rust unit tests of the key function (a machine
has no two loopback-routable addresses in one /64 without reconfiguring its network).
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess

import pytest

import invites
from expect import THROTTLED, assert_error, assert_result
from prosody import Prosody
from xmpp_raw import RawStream

ATTEMPTS = 3


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _other_ipv6_address() -> str | None:
    """A local global-scope IPv6 address outside ::/64 that can reach ::1."""
    try:
        out = subprocess.run(["ip", "-6", "-o", "addr", "show", "scope", "global"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        words = line.split()
        if "inet6" not in words:
            continue
        address = words[words.index("inet6") + 1].split("/")[0]
        ip = ipaddress.IPv6Address(address)
        if ip in ipaddress.IPv6Network("::/64") or ip.ipv4_mapped:
            continue
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.bind((address, 0))
        except OSError:
            continue
        return address
    return None


HAS_V6 = _has_ipv6_loopback()
OTHER_V6 = _other_ipv6_address() if HAS_V6 else None

pytestmark = pytest.mark.skipif(not HAS_V6, reason="needs IPv6 loopback")
needs_other_v6 = pytest.mark.skipif(OTHER_V6 is None,
                                    reason="needs a second local IPv6 address outside ::/64")


class RawStream6(RawStream):
    """RawStream over IPv6 to [::1], optionally from a given local source address."""

    def __init__(self, port: int, source6: str | None = None, **kwargs):
        super().__init__(port, **kwargs)
        # Replace the IPv4 connection the base class made by one to [::1].
        self.sock.close()
        self.sock = socket.create_connection(("::1", port), timeout=self.timeout,
                                             source_address=(source6, 0) if source6 else None)


def start(prosody, **extra) -> Prosody:
    return prosody.start(extra_config={"interfaces": ["127.0.0.1", "::1"],
                                       "invites_register_token_attempts": ATTEMPTS, **extra})


def fail_until_throttled(stream: RawStream) -> None:
    for i in range(ATTEMPTS):
        assert_error(stream.preauth(f"wrong-{i}-xxxxxxxxxxxxxxxxxxxx"), "cancel", "item-not-found")
    assert_error(stream.preauth("wrong-x-xxxxxxxxxxxxxxxxxxxx"), "wait", "policy-violation",
                 THROTTLED)


def test_ipv6_network_throttled_alone(prosody):
    """Default prefix 64: failures from ::1 throttle ::1 (even a valid token, on a new
    stream too), not IPv4 clients, nor (where the machine has one) a client in another /64."""
    server = start(prosody)
    token = invites.account(server)
    with RawStream6(server.port) as s:
        s.open()
        fail_until_throttled(s)
        assert_error(s.preauth(token), "wait", "policy-violation", THROTTLED)
    with RawStream6(server.port) as again:
        again.open()
        assert_error(again.preauth(token), "wait", "policy-violation", THROTTLED)
    if OTHER_V6:
        with RawStream6(server.port, source6=OTHER_V6) as other:
            other.open()
            assert_result(other.preauth(token))
    with RawStream(server.port) as v4:
        v4.open()
        assert_result(v4.preauth(token))


@needs_other_v6
def test_ipv6_prefix_option_widens_the_network(prosody):
    """`invites_register_throttle_ipv6_prefix = 0`: every IPv6 client is one network, so
    failures from ::1 throttle the other IPv6 address too; IPv4 stays apart."""
    server = start(prosody, invites_register_throttle_ipv6_prefix=0)
    token = invites.account(server)
    with RawStream6(server.port) as s:
        s.open()
        fail_until_throttled(s)
    with RawStream6(server.port, source6=OTHER_V6) as other:
        other.open()
        assert_error(other.preauth(token), "wait", "policy-violation", THROTTLED)
    with RawStream(server.port) as v4:
        v4.open()
        assert_result(v4.preauth(token))


def test_ipv4_failures_do_not_throttle_ipv6(prosody):
    """IPv4 failures count for that address only: IPv6 clients are not throttled by them."""
    server = start(prosody)
    token = invites.account(server)
    with RawStream(server.port) as v4:
        v4.open()
        fail_until_throttled(v4)
    with RawStream6(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        assert_result(s.register("alice", "secret"))
