"""Resource use (SPEC §4.2 step 3 "memory bounded", §4.4 "bounded: keep entries until
the record's expiry plus a margin"): after many registrations and failed preauths the
server's memory stays bounded.

It measures the Prosody process: resident set size from /proc/<pid>/status (VmRSS) and
the Lua heap (collectgarbage("count"), through the admin shell), after a full GC, before
and after the load; the growth outside the Lua heap is where native allocations show. It
also reads the native state's sizes, which the plugin exposes as
`require "core.modulemanager".get_module(host, "invites_register").status()` (the sizes
`prosodyctl shell invites_register status` prints: claims, consumed tokens, throttled
addresses, invites in the index, tokens awaiting deletion), and checks them.

  E2E_MEMORY_REGISTRATIONS  registrations (default 2000; `slow`: 10000)
  E2E_MEMORY_FAILURES       failed preauths from one address (default 10000; `slow`: 10000)
  E2E_MEMORY_ADDRESSES      failed preauths from that many distinct loopback addresses
                            (default 0; `slow`: 12000, above the throttle's 10000 cap)

The throttle is on with a limit too high to trigger (every failure is recorded).
"""

from __future__ import annotations

import os
import time

import pytest

from expect import TOKEN_INVALID, assert_error, assert_result
from prosody import HOST, Prosody, lua_eval, selected
from xmpp_raw import NS_PREAUTH, NS_REGISTER, RawStream

# c2s_timeout: Prosody's mod_c2s keeps every unauthenticated session referenced from its
# c2s_timeout timer (default 300 s) even after the connection closed, ~2 KiB of Lua heap
# per connection; a short timeout lets the many-addresses run measure us, not that. Every
# stream here lives well under it.
C2S_TIMEOUT = 10
CONFIG = {"invites_register_token_attempts": 1_000_000, "c2s_timeout": C2S_TIMEOUT}
BATCH = 50           # invites created and used per round (internal storage rewrites the
                     # whole invite_token file on every change: keep it small)
PIPELINE = 500       # stanzas in flight on one stream

# Generous bounds on growth (KiB) after a full GC; the native state itself should need
# well under 100 bytes per consumed token and per throttle entry.
RSS_BOUND_KB = {"quick": 64 * 1024, "slow": 128 * 1024}


def rss_kb(server: Prosody) -> int:
    status = f"/proc/{server.proc.pid}/status"
    with open(status) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS in {status}")


def lua_heap_kb(server: Prosody) -> float:
    return float(lua_eval(server, 'collectgarbage("collect"); collectgarbage("collect"); '
                                  'return collectgarbage("count")'))


def native_stats(server: Prosody) -> dict[str, int] | None:
    """The module's `status()`; None when the module under test has none (E2E_STOCK=1)."""
    out = lua_eval(server, f"""
        local env = require "core.modulemanager".get_module("{HOST}", "invites_register");
        local f = env and rawget(env, "status");
        if type(f) ~= "function" then return "unavailable" end
        local s = f();
        return ("%d %d %d %d %d"):format(s.claims, s.consumed, s.throttled, s.pending,
            s.awaiting_deletion)""")
    if out == "unavailable":
        return None
    claims, consumed, throttled, pending, awaiting = map(int, out.split())
    return {"claims": claims, "consumed": consumed, "throttled_addresses": throttled,
            "pending": pending, "awaiting_deletion": awaiting}


def snapshot(server: Prosody) -> dict:
    heap = lua_heap_kb(server)
    return {"rss_kb": rss_kb(server), "lua_kb": heap, "stats": native_stats(server)}


def create_invites(server: Prosody, n: int) -> list[str]:
    out = lua_eval(server, f"""
        local inv = require "core.modulemanager".get_module("{HOST}", "invites");
        local t = {{}};
        for i = 1, {n} do t[i] = inv.create_account(nil, nil, 3600).token; end
        return table.concat(t, " ")""")
    tokens = out.split()
    assert len(tokens) == n, out[:200]
    return tokens


def pipeline(stream: RawStream, items: list[tuple[str, str]], check) -> None:
    """Send (id, xml) items PIPELINE at a time; `check(id, reply)` each reply."""
    for start in range(0, len(items), PIPELINE):
        chunk = items[start:start + PIPELINE]
        stream.send("".join(xml for _, xml in chunk))
        for iq_id, _ in chunk:
            check(iq_id, stream.wait_for(lambda s, i=iq_id: s.id == i, timeout=60))


def register_many(server: Prosody, first: int, count: int) -> None:
    """`count` registrations, each with its own single-use invite: preauth + register,
    pipelined, one stream per batch (a stream may register again after a new preauth)."""
    done = 0
    while done < count:
        n = min(BATCH, count - done)
        items = []
        for k, token in enumerate(create_invites(server, n)):
            i = first + done + k
            items.append((f"p{i}", f"<iq type='set' id='p{i}'><preauth xmlns='{NS_PREAUTH}' "
                                   f"token='{token}'/></iq>"))
            items.append((f"r{i}", f"<iq type='set' id='r{i}'><query xmlns='{NS_REGISTER}'>"
                                   f"<username>m{i}</username><password>pw{i}</password>"
                                   f"</query></iq>"))
        with RawStream(server.port, timeout=60) as s:
            s.open()
            pipeline(s, items, lambda _id, reply: assert_result(reply))
        done += n


def fail_many(server: Prosody, first: int, count: int) -> None:
    """`count` preauths with distinct unknown tokens from 127.0.0.1, pipelined."""
    items = [(f"f{i}", f"<iq type='set' id='f{i}'><preauth xmlns='{NS_PREAUTH}' "
                       f"token='nope-{i:08d}-xxxxxxxxxxxx'/></iq>")
             for i in range(first, first + count)]
    for start in range(0, len(items), PIPELINE):
        with RawStream(server.port, timeout=60) as s:
            s.open()
            pipeline(s, items[start:start + PIPELINE],
                     lambda _id, reply: assert_error(reply, "cancel", "item-not-found",
                                                     TOKEN_INVALID))


def from_addresses(server: Prosody, count: int, first_octet: int, preauth: bool) -> None:
    """A connection from each of `count` distinct loopback addresses 127.<first_octet>.x.y…
    that opens a stream and, with `preauth`, sends one failed preauth."""
    for i in range(count):
        a, rest = divmod(i, 250 * 250)
        b, c = divmod(rest, 250)
        with RawStream(server.port, timeout=30, source=f"127.{first_octet + a}.{b}.{1 + c}") as s:
            s.open()
            if preauth:
                assert_error(s.preauth(f"addr-{i}"), "cancel", "item-not-found", TOKEN_INVALID)


def report(label: str, before: dict, after: dict, work: str, seconds: float) -> int:
    rss = after["rss_kb"] - before["rss_kb"]
    lua = after["lua_kb"] - before["lua_kb"]
    print(f"\nmemory [{label}] after {work} in {seconds:.1f}s: "
          f"RSS {before['rss_kb']} → {after['rss_kb']} KiB ({rss:+d}); "
          f"Lua heap {before['lua_kb']:.0f} → {after['lua_kb']:.0f} KiB ({lua:+.0f}); "
          f"outside the Lua heap {rss - lua:+.0f} KiB; "
          f"native stats {before['stats']} → {after['stats']}")
    return rss


def run(prosody, storage_name: str, mode: str, registrations: int, failures: int,
        addresses: int) -> None:
    server = prosody.start(extra_config=CONFIG)
    # Warm-up: allocator arenas, Lua tables, file buffers settle before the baseline.
    register_many(server, 0, min(200, registrations))
    fail_many(server, 0, min(1000, failures))
    before = snapshot(server)

    started = time.monotonic()
    register_many(server, 1_000_000, registrations)
    fail_many(server, 1_000_000, failures)
    seconds = time.monotonic() - started
    after = snapshot(server)
    work = f"{registrations} registrations + {failures} failed preauths ({storage_name})"
    growth = report(mode, before, after, work, seconds)
    assert server.proc.poll() is None
    assert growth < RSS_BOUND_KB[mode], f"RSS grew by {growth} KiB"
    stats = after["stats"]
    assert stats is not None or os.environ.get("E2E_STOCK", "") not in ("", "0"), \
        "the module's status() is missing"
    if stats is not None:
        assert stats["claims"] == 0, stats  # every claim settled
        # Consumed tokens are kept until their record's expiry (+ margin), one entry per
        # registration (warm-up included): none has expired within the test.
        assert stats["consumed"] == min(200, registrations) + registrations, stats
        assert stats["throttled_addresses"] == 1, stats  # all from 127.0.0.1
        # Every token was used: none pending in the index once the batches are written.
        assert stats["pending"] <= stats["awaiting_deletion"], stats

    if addresses:
        # Many client addresses. Each connection costs Prosody itself some memory that
        # stays in the RSS (allocator high-water mark), so first a control flood of the
        # same shape without a preauth, then the flood with failed preauths from as many
        # other addresses: the difference is what the throttle table adds.
        started = time.monotonic()
        from_addresses(server, addresses, 10, preauth=False)
        time.sleep(C2S_TIMEOUT + 2)  # let mod_c2s drop its closed sessions (see CONFIG)
        control = snapshot(server)
        report(mode, after, control, f"control: {addresses} connections from distinct "
               f"addresses, no preauth ({storage_name})", time.monotonic() - started)
        started = time.monotonic()
        from_addresses(server, addresses, 100, preauth=True)
        time.sleep(C2S_TIMEOUT + 2)
        flood = snapshot(server)
        extra = report(mode, control, flood, f"{addresses} failed preauths from distinct "
                       f"addresses ({storage_name})", time.monotonic() - started)
        assert server.proc.poll() is None
        assert extra < RSS_BOUND_KB[mode] // 4, f"RSS grew by {extra} KiB"
        assert flood["rss_kb"] - before["rss_kb"] < RSS_BOUND_KB[mode]
        if flood["stats"] is not None:
            # 127.0.0.1 and the new addresses, capped (the oldest tenth evicted at the cap).
            assert flood["stats"]["throttled_addresses"] <= min(10_000, addresses + 1), flood

    # Still serving.
    token = create_invites(server, 1)[0]
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        assert_result(s.register("last", "pw"))


def test_memory_bounded(prosody, storage):
    """2,000 registrations and 10,000 failed preauths (configurable): RSS growth bounded."""
    if storage != "internal":
        pytest.skip("measured once, on internal storage (the native state does not depend "
                    "on the backend); the `slow` run covers every backend")
    run(prosody, storage, "quick",
        int(os.environ.get("E2E_MEMORY_REGISTRATIONS", "2000")),
        int(os.environ.get("E2E_MEMORY_FAILURES", "10000")),
        int(os.environ.get("E2E_MEMORY_ADDRESSES", "0")))


@pytest.mark.slow
def test_memory_bounded_slow(prosody, storage, request):
    """10,000 registrations, 10,000 failed preauths from one address and 12,000 from
    distinct addresses (more than the throttle's cap): RSS growth bounded."""
    if not selected(request, "slow"):
        pytest.skip("long memory run: run with -m slow")
    run(prosody, storage, "slow",
        int(os.environ.get("E2E_MEMORY_REGISTRATIONS", "10000")),
        int(os.environ.get("E2E_MEMORY_FAILURES", "10000")),
        int(os.environ.get("E2E_MEMORY_ADDRESSES", "12000")))
