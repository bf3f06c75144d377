#!/usr/bin/env python3
"""End-to-end throughput benchmark: stock mod_invites_register vs ours (`make bench`).

For each storage backend (internal files, SQLite) and each number N of pending
unrelated invites, two private Prosody servers run side by side on 127.0.0.1 —
one with Prosody's own module (STOCK: no plugin_paths entry for ours) and one with
OURS (plugin_paths -> a `make install` directory) — both started on a copy of the
same data (the N invites, made once per cell by the bench module with one set_keys).
Each repetition measures them in the order A B B A (halves of the phase time), so
slow phases of a noisy machine hit both. Measured with concurrent raw-XML client
streams (asyncio; the wire format comes from tools/harness/xmpp.py):

  preauth   IQs/s: unauthenticated streams (renewed within c2s_timeout) send preauth IQs with one
            valid (never consumed) token, one request in flight per stream.
  invited   registrations/s: per registration a fresh stream, preauth with a fresh
            single-use token, IBR set, close. Tokens come in rounds from the bench
            module (created before the round, not timed); leftovers are dropped.
  open      registrations/s without any invite module (allow_registration = true):
            the floor that password hashing and account storage set. A third server,
            measured in every (storage, N) cell between the invited phases, so each
            invited/open ratio compares phases of the same minutes.

Besides: each server's start-up time (to its first answered stream) and memory (RSS)
on that data; the same cells with the data on the admin-default disk (/var/lib); and
open registration with 10,000 username-bound invites pending against none (ours must
not pay for the reservation check).

Every loop is bounded by time and count and stops by itself; only the servers
started here are signalled. Nothing listens anywhere but 127.0.0.1 on free ports.

usage: python3 bench/bench.py [--profile full|quick] [--out FILE] [--storage internal,sqlite]
                              [--ns 0,1000,10000] [--reps 3] [--streams 8] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

from harness.server import AdminSocket, Server, make_install, stock_module  # noqa: E402
from harness.xmpp import (STREAM_CLOSE, after_features, iq_attrs, preauth_iq,  # noqa: E402
                          register_iq, stream_ended, stream_header, take_iq)

BENCH_PLUGINS = REPO / "bench" / "plugins"

HOST = "bench.test"
PASSWORD = "bench-password-1"

OP_TIMEOUT = 30.0          # one request/reply or one connection step
ADMIN_TIMEOUT = 600.0      # one admin-shell command (bulk creation of 100,000 invites)
C2S_TIMEOUT = 5            # s, Prosody's c2s_timeout on the bench servers
DELETE_DELAY = 2.0         # s, ours' invites_register_delete_delay (the default; not configured)

# From this N on, stock is measured with a few operations only: each of its preauths
# parses the whole invite file (~35 MB at 100,000), each registration also rewrites it.
FEW_OPS_N = 100_000
FEW_OPS = 2                # operations per half phase, on one stream

# The data root on the admin-default disk: Debian's data_path is /var/lib/prosody.
ADMIN_DATA_PATH = Path("/var/lib/prosody")

PROFILES = {
    # ~25 min on 2 vCPUs
    "full": dict(ns={"internal": [0, 1000, 10000, 100000], "sqlite": [0, 1000, 10000]},
                 reps=5, big_reps=2, preauth_s=3.0, invited_s=6.0, open_s=6.0, max_ops=200000,
                 disk={"internal": [1000], "sqlite": [1000]}, disk_reps=2,
                 reserve_n=10000, reserve_storages=["internal", "sqlite"], reserve_reps=2),
    # < 3 min
    "quick": dict(ns={"internal": [0, 10000], "sqlite": [0, 10000]},
                  reps=1, big_reps=1, preauth_s=2.0, invited_s=4.0, open_s=3.0, max_ops=50000,
                  disk={}, disk_reps=1,
                  reserve_n=10000, reserve_storages=["internal"], reserve_reps=1),
}

# Tokens per round of invited registrations. Pool tokens live in the same host store
# as the N unrelated ones; with internal storage stock's every lookup reads the whole
# store, so rounds stay small there (on average ROUND/2 extra records) — except at large
# N, where each round's creation rewrites a large file and N/400 extra records are noise.
ROUND_SIZE = {"internal": 64, "sqlite": 512}


def round_size(storage: str, n: int) -> int:
    return max(ROUND_SIZE[storage], n // 200)


# ---------------------------------------------------------------------------
# Prosody processes

BASE_MODULES = ["roster", "saslauth", "disco", "ping", "register", "admin_shell"]
INVITE_MODULES = ["invites", "invites_register", "bench_invites"]


class BenchServer(Server):
    """One private Prosody: kind is "stock", "ours" or "open" (no invite modules).

    `open_registration`: invite modules loaded, but `registration_invite_only = false`
    and `allow_registration = true` (registration without an invite). `seed`: a data
    directory to start from (copied, so every server of a cell starts on the same data).
    `ours_dir` / `stock_dir`: the first plugin_paths entry of ours / stock (stock: a copy of
    Prosody's own module, so that no other module of that name can stand in for it).
    """

    hosts = (HOST,)
    log_level = "warn"
    # The log is at level warn: mod_posix's "Received SIGTERM" marks the shutdown.
    shutdown_marker = re.compile(r"Received SIGTERM|Exiting with status code")

    def __init__(self, root: Path, kind: str, storage: str, ours_dir: Path | None,
                 timing: bool = False, open_registration: bool = False, seed: Path | None = None,
                 name: str | None = None, stock_dir: Path | None = None):
        workdir = root / (name or f"{kind}-{storage}")
        if workdir.exists():
            shutil.rmtree(workdir)
        first = {"ours": ours_dir, "stock": stock_dir}.get(kind)
        plugin_paths = [first, BENCH_PLUGINS] if first else [BENCH_PLUGINS]
        super().__init__(workdir, log_path=workdir / "prosody.log", plugin_paths=plugin_paths)
        self.kind = kind
        self.storage = storage
        self.timing = timing
        self.open_registration = open_registration
        self.users = 0
        if seed is not None:
            shutil.copytree(seed, self.data_dir,
                            ignore=shutil.ignore_patterns("*.sock", "*.pid", "*.log"))

    def settings(self) -> dict[str, object]:
        modules = list(BASE_MODULES)
        if self.kind != "open":
            modules += INVITE_MODULES
        if self.timing:
            modules.append("bench_timing")
        settings = self.private_settings(modules)
        settings.update({
            # measure the module, not TLS
            "c2s_require_encryption": False,
            "allow_unencrypted_plain_auth": True,
            # closed unauthenticated sessions linger for c2s_timeout; it also closes any
            # stream still unauthenticated after that long (preauth runs in shorter segments)
            "c2s_timeout": C2S_TIMEOUT,
            # mod_register_limits: no throttle (registration_throttle_max stays nil unless
            # min_seconds_between_registrations is set); 127.0.0.1 is allow-listed anyway.
            "registration_allowlist": ["127.0.0.1", "::1"],
            "registration_blocklist": [],
            "allowlist_registration_only": False,
        })
        if self.kind == "open" or self.open_registration:
            settings["allow_registration"] = True
        if self.open_registration:
            settings["registration_invite_only"] = False
        return settings

    def start(self) -> "BenchServer":
        super().start()
        return self

    def stop(self) -> None:
        super().stop(settle=0.5)  # let the last client closes land before SIGTERM

    def tracebacks(self) -> list[str]:
        """Each traceback with the log line before it and up to 12 lines after it."""
        return self.traceback_lines(context=12)

    def keep_logs_if_tracebacks(self, label: str) -> None:
        """Copy the log and console output to build/bench-logs/ when they hold a traceback."""
        if not self.tracebacks():
            return
        dest = REPO / "build" / "bench-logs"
        dest.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for path in (self.log_path, self.console_path, self.config_path):
            if path.exists():
                shutil.copy(path, dest / f"{stamp}-{label}-{path.name}")
        log(f"TRACEBACK in {label}: logs copied to {dest}")

    def next_username(self) -> str:
        self.users += 1
        return f"u{self.users}"

    def admin(self, timeout: float = ADMIN_TIMEOUT) -> "Admin":
        return Admin(self.admin_socket, timeout)


# ---------------------------------------------------------------------------
# Admin shell: the bench module's commands and ours' status

class Admin(AdminSocket):
    def create(self, n: int, want_tokens: bool = False, bound_prefix: str | None = None) -> list[str] | int:
        prefix = f'"{bound_prefix}"' if bound_prefix else "nil"
        out = self.run(f'benchinvite:create("{HOST}", {n}, {"true" if want_tokens else "false"}, '
                       f"nil, {prefix})")
        return out.split() if want_tokens else int(out)

    def drop(self, tokens) -> None:
        tokens = list(tokens)
        for i in range(0, len(tokens), 2000):
            self.run(f'benchinvite:drop("{HOST}", "{" ".join(tokens[i:i + 2000])}")')

    def status(self, field: str) -> int:
        """One number from ours' `status()` (pending, bound_names, awaiting_deletion, …)."""
        return int(float(self.lua_eval(
            f'return require"core.modulemanager".get_module("{HOST}", "invites_register")'
            f".status().{field}")))

    def collect(self) -> None:
        """A full Lua collection, so that the garbage of untimed work (creating or dropping
        tokens: whole-file rewrites at large N) is not collected inside the next timed phase."""
        self.lua_eval('collectgarbage("collect"); return 0')

    def heap_kb(self) -> float:
        """The Lua heap after two full collections."""
        return float(self.lua_eval('collectgarbage("collect"); collectgarbage("collect"); '
                                   'return collectgarbage("count")'))

    def timing(self) -> dict[str, tuple[int, float, float]]:
        """benchtiming:report() → {name: (count, cpu µs, wall µs)}, then reset."""
        out = self.run("benchtiming:report()")
        self.run("benchtiming:reset()")
        result = {}
        for part in filter(None, out.split(";")):
            name, n, cpu, wall = part.rsplit("|", 3)
            result[name] = (int(n), float(cpu), float(wall))
        return result


# ---------------------------------------------------------------------------
# Raw XML client streams (asyncio; builders and scanner from harness.xmpp)

HEADER = stream_header(HOST).encode()


class BenchError(Exception):
    pass


class Stream:
    """One client stream; one request in flight; replies found by scanning for <iq>."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.buf = b""

    @classmethod
    async def open(cls, port: int) -> "Stream":
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), OP_TIMEOUT)
        self = cls(reader, writer)
        writer.write(HEADER)
        while (end := after_features(self.buf)) < 0:
            await self._read()
        self.buf = self.buf[end:]
        return self

    async def _read(self) -> None:
        data = await asyncio.wait_for(self.reader.read(65536), OP_TIMEOUT)
        if not data:
            raise BenchError("connection closed by the server: " + self.buf[-300:].decode(errors="replace"))
        self.buf += data

    async def iq(self, xml: str, iq_id: str) -> bytes:
        """Send an IQ; return the raw reply if it is a result, raise otherwise."""
        self.writer.write(xml.encode())
        while True:
            iq, self.buf = take_iq(self.buf)
            if iq is None:
                if stream_ended(self.buf):
                    raise BenchError("stream closed: " + self.buf[-300:].decode(errors="replace"))
                await self._read()
                continue
            attrs = iq_attrs(iq)
            if attrs.get(b"id") != iq_id.encode():
                continue
            if attrs.get(b"type") != b"result":
                raise BenchError("error reply: " + iq.decode(errors="replace"))
            return iq

    async def preauth(self, token: str, iq_id: str) -> None:
        await self.iq(preauth_iq(iq_id, token), iq_id)

    async def register(self, username: str, iq_id: str) -> None:
        await self.iq(register_iq(iq_id, username, PASSWORD), iq_id)

    async def close(self) -> None:
        try:
            self.writer.write(STREAM_CLOSE.encode())
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except (OSError, asyncio.TimeoutError):
            pass


@dataclass
class Tally:
    ok: int = 0
    failed: int = 0
    first_error: str | None = None
    elapsed: float = 0.0
    server_cpu: float = 0.0
    deferred_cpu: float = 0.0   # ours' batched deletes of this phase, written after it

    def merge(self, other: "Tally") -> None:
        self.ok += other.ok
        self.failed += other.failed
        self.first_error = self.first_error or other.first_error
        self.elapsed += other.elapsed
        self.server_cpu += other.server_cpu
        self.deferred_cpu += other.deferred_cpu

    def fail(self, e: Exception) -> None:
        self.failed += 1
        if self.first_error is None:
            self.first_error = f"{type(e).__name__}: {e}"


class _PreauthProtocol(asyncio.Protocol):
    """Callback-driven preauth loop (no coroutine per request: the client must not be the
    bottleneck). Opens the stream, then keeps `depth` preauth IQs in flight until `stop()`."""

    def __init__(self, token: str, tally: Tally, max_ops: int, depth: int, ready: asyncio.Future,
                 done: asyncio.Future):
        self.token, self.tally, self.max_ops, self.depth = token, tally, max_ops, depth
        self.ready, self.done = ready, done
        self.buf = b""
        self.opened = False
        self.running = False
        self.inflight = 0
        self.n = 0

    def connection_made(self, transport):
        self.transport = transport
        transport.write(HEADER)

    def start(self) -> None:
        self.running = True
        for _ in range(self.depth):
            self._send()

    def stop(self) -> None:
        self.running = False
        if self.inflight == 0 and not self.done.done():
            self.done.set_result(None)

    def _send(self) -> None:
        self.n += 1
        self.inflight += 1
        self.transport.write(preauth_iq(f"p{self.n}", self.token).encode())

    def data_received(self, data):
        self.buf += data
        if not self.opened:
            end = after_features(self.buf)
            if end < 0:
                return
            self.buf = self.buf[end:]
            self.opened = True
            self.ready.set_result(None)
        while True:
            iq, self.buf = take_iq(self.buf)
            if iq is None:
                break
            self.inflight -= 1
            if iq_attrs(iq).get(b"type") == b"result":
                self.tally.ok += 1
            else:
                self.tally.fail(BenchError("error reply: " + iq.decode(errors="replace")))
                self.running = False
            if self.running and self.tally.ok + self.tally.failed < self.max_ops:
                self._send()
            elif self.inflight == 0 and not self.done.done():
                self.done.set_result(None)
        if stream_ended(self.buf):
            self.connection_lost(None)

    def connection_lost(self, exc):
        if not self.ready.done():
            self.ready.set_exception(BenchError("stream closed before features"))
        if not self.done.done():
            self.tally.fail(BenchError(f"stream closed: {exc} {self.buf[-200:]!r}"))
            self.done.set_result(None)


async def _preauth_run(port: int, token: str, streams: int, seconds: float, max_ops: int,
                       server: BenchServer, depth: int = 1) -> Tally:
    tally = Tally()
    loop = asyncio.get_running_loop()
    protos = []
    for _ in range(streams):
        ready, done = loop.create_future(), loop.create_future()
        transport, proto = await asyncio.wait_for(loop.create_connection(
            lambda: _PreauthProtocol(token, tally, max_ops, depth, ready, done),
            "127.0.0.1", port), OP_TIMEOUT)
        protos.append(proto)
    await asyncio.wait_for(asyncio.gather(*[p.ready for p in protos]), OP_TIMEOUT)
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    for proto in protos:
        proto.start()
    await asyncio.wait([p.done for p in protos], timeout=seconds)  # max_ops or errors end it early
    for proto in protos:
        proto.stop()
    await asyncio.wait_for(asyncio.gather(*[p.done for p in protos]), OP_TIMEOUT)
    tally.elapsed = time.monotonic() - t0
    tally.server_cpu = server.cpu_seconds() - cpu0
    for proto in protos:
        try:
            proto.transport.write(STREAM_CLOSE.encode())
        except (OSError, RuntimeError):
            pass
        proto.transport.close()
    return tally


async def _registration_round(server: BenchServer, tokens: collections.deque | None, streams: int,
                              deadline: float, max_ops: int, tally: Tally) -> None:
    """Registrations until the tokens run out (invited) or the deadline / max_ops (both)."""
    async def one(token: str | None, n: int) -> None:
        conn = await Stream.open(server.port)
        try:
            if token is not None:
                await conn.preauth(token, f"pa{n}")
            await conn.register(server.next_username(), f"r{n}")
        finally:
            await conn.close()

    async def worker() -> None:
        while time.monotonic() < deadline and tally.ok + tally.failed < max_ops:
            if tokens is not None:
                if not tokens:
                    return
                token = tokens.popleft()
            else:
                token = None
            try:
                await one(token, tally.ok + tally.failed)
                tally.ok += 1
            except (BenchError, OSError, asyncio.TimeoutError) as e:
                tally.fail(e)
                if tally.failed > 20:
                    return

    await asyncio.gather(*[worker() for _ in range(streams)])


def measure_preauth(server: BenchServer, token: str, streams: int, seconds: float, max_ops: int) -> Tally:
    """Segments of fresh streams, each shorter than c2s_timeout (which closes unauthenticated
    streams `c2s_timeout` seconds after they connect)."""
    total = Tally()
    segment = C2S_TIMEOUT - 1.5
    while total.elapsed < seconds - 0.05 and total.ok + total.failed < max_ops:
        t = asyncio.run(_preauth_run(server.port, token, streams, min(segment, seconds - total.elapsed),
                                     max_ops - total.ok - total.failed, server))
        total.merge(t)
        if t.failed:
            break
    return total


def measure_open(server: BenchServer, streams: int, seconds: float, max_ops: int) -> Tally:
    tally = Tally()
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    asyncio.run(_registration_round(server, None, streams, t0 + seconds, max_ops, tally))
    tally.elapsed = time.monotonic() - t0
    tally.server_cpu = server.cpu_seconds() - cpu0
    return tally


def measure_invited(server: BenchServer, admin: Admin, streams: int, seconds: float, max_ops: int,
                    size: int, settle_token: str | None = None) -> Tally:
    """Rounds of `size` fresh tokens; only the registration phases are timed.

    Leftover tokens are dropped after each round. That write is not ours (nor
    mod_invites'), so ours re-reads the store at its next preauth: with `settle_token`
    one untimed preauth makes it do so before the next timed round."""
    tally = Tally()
    max_rounds = 1000
    rounds = 0
    while tally.elapsed < seconds and rounds < max_rounds and tally.ok + tally.failed < max_ops:
        tokens = collections.deque(admin.create(size, want_tokens=True))
        admin.collect()
        cpu0, t0 = server.cpu_seconds(), time.monotonic()
        asyncio.run(_registration_round(server, tokens, streams, t0 + seconds - tally.elapsed,
                                        max_ops, tally))
        tally.elapsed += time.monotonic() - t0
        tally.server_cpu += server.cpu_seconds() - cpu0
        if tokens:
            admin.drop(tokens)
            if settle_token:
                one_preauth(server, settle_token)
            admin.collect()
        rounds += 1
        if tally.failed > 20:
            break
    return tally


def one_preauth(server: BenchServer, token: str) -> None:
    """One preauth on a fresh stream, untimed (ours re-reads a store changed behind its back)."""
    async def run() -> None:
        conn = await Stream.open(server.port)
        try:
            await conn.preauth(token, "settle")
        finally:
            await conn.close()
    asyncio.run(run())


def drain_bound(n: int) -> float:
    """How long to wait for ours' batched deletes after a phase: one delete delay and a
    margin. Not at large N: there one write of the store takes seconds, ours stretches the
    interval to keep such writes at ~5 % of its time (a minute or more), and the next
    batch is written at shutdown; the first one (of the warm-up) is measured instead."""
    return DELETE_DELAY + 3 if n < FEW_OPS_N else 0.0


def drain(server: BenchServer, admin: Admin, bound_s: float) -> tuple[float, int]:
    """Wait (at most `bound_s`) until ours has written its batched deletes; return the
    server CPU seconds spent meanwhile and the tokens still awaiting deletion."""
    if server.kind != "ours" or bound_s <= 0:
        return 0.0, 0
    cpu0, deadline = server.cpu_seconds(), time.monotonic() + bound_s
    while (left := admin.status("awaiting_deletion")) and time.monotonic() < deadline:
        time.sleep(0.05)
    admin.collect()  # the batch write's garbage is ours' cost too: collected and charged here
    return server.cpu_seconds() - cpu0, left


# ---------------------------------------------------------------------------
# Results

@dataclass
class Cell:
    rates: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)   # server CPU ms per operation
    ops: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    few: bool = False   # measured with a few operations only

    def add(self, t: Tally) -> None:
        if t.ok:
            self.rates.append(t.ok / t.elapsed)
            self.cpu_ms.append((t.server_cpu + t.deferred_cpu) / t.ok * 1000)
        self.ops += t.ok
        self.failed += t.failed
        if t.first_error:
            self.errors.append(t.first_error)

    def median(self) -> float | None:
        return statistics.median(self.rates) if self.rates else None

    def cpu(self) -> float | None:
        return statistics.median(self.cpu_ms) if self.cpu_ms else None

    def fmt(self) -> str:
        if not self.rates:
            return "—"
        m = self.median()
        mark = "†" if self.few else ""
        if len(self.rates) == 1:
            return fmt_rate(m) + mark
        return f"{fmt_rate(m)} ({fmt_rate(min(self.rates))}–{fmt_rate(max(self.rates))}){mark}"

    def fmt_cpu(self) -> str:
        if not self.cpu_ms:
            return "—"
        us = self.cpu() * 1000
        return f"{us:,.0f}" if us >= 100 else f"{us:.1f}"


@dataclass
class Start:
    """One server start on a cell's data."""
    seconds: float
    rss_kb: int          # at the first answered stream
    rss_gc_kb: int       # after two full Lua collections
    heap_kb: float       # the Lua heap then
    rss_end_kb: int = 0  # after the repetition's measurements
    batch_cpu: float | None = 0.0  # ours: server CPU s of the warm-up's batch delete (None: not seen)


def fmt_rate(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmt_ratio(x: float | None, goal: float | None = None, above: bool = True) -> str:
    if x is None:
        return "—"
    text = f"{x:.2f}"
    if goal is not None:
        met = x >= goal if above else x <= goal
        text += " ✓" if met else " ✗"
    return text


def machine_info() -> dict[str, str]:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) // 1024} MiB"
    except OSError:
        pass
    commit = run("git", "-C", str(REPO), "rev-parse", "--short", "HEAD")
    dirty = run("git", "-C", str(REPO), "status", "--porcelain", "--", "src", "lua", "Cargo.toml", "Cargo.lock")
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "mem": mem,
        "kernel": run("uname", "-sr"),
        "prosody": run("dpkg-query", "-W", "-f", "${Version}", "prosody") or "?",
        "lua": run("dpkg-query", "-W", "-f", "${Version}", "lua5.4") or "?",
        "python": sys.version.split()[0],
        "commit": commit + (" (src/lua modified)" if dirty else ""),
    }


def run(*cmd) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def file_system(path: Path) -> str:
    """ "ext4 on /dev/vda" for the file system holding `path`."""
    out = run("findmnt", "-n", "-o", "FSTYPE,SOURCE", "--target", str(path))
    if out and out != "?":
        fstype, _, source = out.splitlines()[0].partition(" ")
        return f"{fstype} on {source.strip()}"
    return run("stat", "-f", "-c", "%T", str(path)) or "?"


# ---------------------------------------------------------------------------
# Orchestration

def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def log_phase(what: str, t: Tally) -> None:
    deferred = f", deferred deletes {t.deferred_cpu / max(t.ok, 1) * 1e6:,.1f} µs/op" if t.deferred_cpu else ""
    log(f"{what}: {t.ok / max(t.elapsed, 1e-9):.1f}/s ({t.ok} in {t.elapsed:.2f}s, {t.failed} failed, "
        f"server {t.server_cpu / max(t.ok, 1) * 1e6:,.1f} µs CPU/op{deferred})")


def install_ours(root: Path) -> Path:
    target = root / "plugins-ours"
    make_install(target)
    return target


def install_stock(root: Path) -> Path:
    """Prosody's own mod_invites_register, copied into a plugin folder for the stock servers."""
    return stock_module(root / "plugins-stock")


def identify(server: BenchServer) -> str:
    """Which module answers: stock says forbidden to a bad token, ours item-not-found."""
    async def probe() -> str:
        conn = await Stream.open(server.port)
        try:
            await conn.preauth("bench-probe-not-a-token", "probe")
            return "accepted?!"
        except BenchError as e:
            text = str(e)
            return "ours" if "item-not-found" in text else "stock" if "forbidden" in text else text
        finally:
            await conn.close()
    return asyncio.run(probe())


def refused_registration(server: BenchServer, username: str) -> str | None:
    """The error reply to registering `username` without an invite, or None if it succeeded."""
    async def attempt() -> str | None:
        conn = await Stream.open(server.port)
        try:
            await conn.register(username, "check")
            return None
        except BenchError as e:
            return str(e)
        finally:
            await conn.close()
    return asyncio.run(attempt())


class Bench:
    """One run: the cells of a profile, their results and the report."""

    def __init__(self, args, p: dict, root: Path, disk_root: Path | None, ours_dir: Path):
        self.args, self.p = args, p
        self.streams = args.streams
        self.root, self.disk_root, self.ours_dir = root, disk_root, ours_dir
        self.stock_dir = install_stock(root)
        self.results: dict[tuple, Cell] = collections.defaultdict(Cell)
        self.starts: dict[tuple, list[Start]] = collections.defaultdict(list)
        self.timings: dict[tuple, dict] = {}
        self.tracebacks: list[str] = []
        self.servers: list[BenchServer] = []
        self.seeds: dict[tuple, Path] = {}
        self.bound_checks: list[str] = []

    # -- servers -------------------------------------------------------

    def server(self, root: Path, kind: str, storage: str, seed: Path | None = None,
               name: str | None = None, **options) -> BenchServer:
        srv = BenchServer(root, kind, storage, self.ours_dir, name=name, seed=seed,
                          stock_dir=self.stock_dir, **options)
        self.servers.append(srv)
        return srv.start()

    def finish(self, srv: BenchServer, label: str, admin: Admin | None = None) -> None:
        if admin:
            admin.close()
        srv.stop()
        self.tracebacks += [f"{label}: {x}" for x in srv.tracebacks()]
        srv.keep_logs_if_tracebacks(label.replace("/", "-").replace(" ", ""))

    @staticmethod
    def check_kind(srv: BenchServer, kind: str) -> None:
        """The server runs the module it should (a probe with a bogus token)."""
        who = identify(srv)
        if who != kind:
            raise RuntimeError(f"{kind} server answers like {who!r}" + (
                " (is our module installed where Prosody finds it without plugin_paths, "
                "e.g. /usr/lib/prosody/modules/mod_invites_register/ from the .deb?)"
                if who == "ours" else ""))

    def seed(self, root: Path, storage: str, n: int, bound: bool = False) -> Path | None:
        """A data directory holding `n` invites (bound to r1 … rN when `bound`), made once
        by the bench module (mod_invites' create_account, one set_keys) on a stock server."""
        if n == 0:
            return None
        key = (root, storage, n, bound)
        if key not in self.seeds:
            name = f"seed-{storage}-{n}{'-bound' if bound else ''}"
            srv = self.server(root, "stock", storage, name=name)
            t0 = time.monotonic()
            with srv.admin() as admin:
                admin.create(n, bound_prefix="r" if bound else None)
            log(f"{storage}: {n:,} {'bound ' if bound else ''}invites made in {time.monotonic() - t0:.2f}s")
            self.finish(srv, f"seed/{storage}/N={n}")
            self.seeds[key] = srv.data_dir
        return self.seeds[key]

    # -- the main cells ------------------------------------------------

    def cell(self, label: str, root: Path, storage: str, n: int, reps: int) -> None:
        p, streams = self.p, self.streams
        seed = self.seed(root, storage, n)
        few = n >= FEW_OPS_N
        for r in range(reps):
            # Fresh server processes every repetition: a process keeps whatever speed its
            # memory layout gives it (seen: identical store calls 10 % slower in one
            # process than in another), so one pair per cell would bias the cell's ratio.
            pair: dict[str, BenchServer] = {}
            admins: dict[str, Admin] = {}
            tokens: dict[str, str] = {}
            for kind in ("stock", "ours"):
                srv = self.server(root, kind, storage, seed=seed, timing=self.args.timing)
                rss = srv.rss_kb()  # before any client: stock has read no invite yet
                admin = srv.admin()
                heap = admin.heap_kb()
                start = Start(srv.startup_seconds, rss, srv.rss_kb(), heap)
                self.starts[(label, storage, n, kind)].append(start)
                self.check_kind(srv, kind)
                tokens[kind] = admin.create(1, want_tokens=True)[0]
                # warm-up, not counted (a few operations for stock at large N)
                stock_few = few and kind == "stock"
                measure_preauth(srv, tokens[kind], 1 if stock_few else streams, 0.3, 1 if stock_few else 1000)
                measure_invited(srv, admin, 1 if stock_few else streams, 0.3, 1 if stock_few else 8,
                                1 if stock_few else 8, settle_token=tokens[kind] if kind == "ours" else None)
                # the warm-up's batch of used tokens: its write, untimed (ours only)
                # (at large N ours spaces its first write by its load time: ~35 s at 100,000)
                start.batch_cpu, left = drain(srv, admin, 30.0 if n < FEW_OPS_N else 120.0)
                if left:
                    start.batch_cpu = None
                pair[kind], admins[kind] = srv, admin
                if self.args.timing:
                    admin.timing()
                log(f"{label} {storage} N={n} {kind} rep {r + 1}: up in {start.seconds:.2f}s, "
                    f"RSS {start.rss_kb / 1024:.1f} MiB ({start.rss_gc_kb / 1024:.1f} after GC), "
                    f"Lua heap {start.heap_kb / 1024:.1f} MiB")
            open_srv = None
            if not self.args.skip_open:
                open_srv = self.server(root, "open", storage)
                measure_open(open_srv, streams, 0.5, 50)  # warm-up

            a, b = ("stock", "ours") if r % 2 == 0 else ("ours", "stock")
            # A B B A: each kind in two halves placed symmetrically, so a drift of the
            # machine within the repetition hits both alike; the open floor sits in the
            # middle of the invited phases.
            for metric, seq in (("preauth", (a, b, b, a)), ("invited", (a, b, "open", b, a))):
                halves: dict[str, Tally] = {}
                for kind in seq:
                    if kind == "open":
                        if open_srv:
                            t = measure_open(open_srv, streams, p["open_s"], p["max_ops"])
                            self.results[(label, storage, n, "open", "open")].add(t)
                            log_phase(f"{label} {storage} N={n} open registration rep {r + 1}", t)
                        continue
                    admins[kind].collect()  # untimed: nothing left over from setup or drains
                    stock_few = few and kind == "stock"
                    s = 1 if stock_few else streams
                    max_ops = FEW_OPS if stock_few else p["max_ops"]
                    if metric == "preauth":
                        t = measure_preauth(pair[kind], tokens[kind], s, p["preauth_s"] / 2, max_ops)
                    else:
                        t = measure_invited(pair[kind], admins[kind], s, p["invited_s"] / 2, max_ops,
                                            FEW_OPS if stock_few else round_size(storage, n),
                                            settle_token=tokens[kind] if kind == "ours" else None)
                        t.deferred_cpu, left = drain(pair[kind], admins[kind], drain_bound(n))
                        if left and drain_bound(n):
                            log(f"{label} {storage} N={n} {kind}: {left} used tokens still awaiting "
                                "deletion (batch interval stretched)")
                    halves.setdefault(kind, Tally()).merge(t)
                for kind in (a, b):
                    t = halves[kind]
                    cell = self.results[(label, storage, n, metric, kind)]
                    cell.add(t)
                    cell.few = cell.few or (few and kind == "stock")
                    if self.args.timing:
                        add_timing(self.timings, (label, storage, n, metric, kind), admins[kind].timing(), t.ok)
                    log_phase(f"{label} {storage} N={n} {kind} {metric} rep {r + 1}", t)
            for kind, srv in pair.items():
                self.starts[(label, storage, n, kind)][-1].rss_end_kb = srv.rss_kb()
                self.finish(srv, f"{kind}/{label}/{storage}/N={n}/rep {r + 1}", admins[kind])
            if open_srv:
                self.finish(open_srv, f"open/{label}/{storage}/N={n}/rep {r + 1}")

    # -- open registration with bound invites pending -------------------

    def reservation(self, storage: str, n: int, reps: int) -> None:
        """Open registration (no invite needed) on servers with our module, with `n`
        username-bound invites pending against none; stock beside it."""
        p, streams = self.p, self.streams
        seed = self.seed(self.root, storage, n, bound=True)
        for r in range(reps):
            servers: dict[tuple[str, int], BenchServer] = {}
            for kind in ("stock", "ours"):
                for pending in (0, n):
                    srv = self.server(self.root, kind, storage, seed=seed if pending else None,
                                      name=f"{kind}-open-{storage}-{pending}", open_registration=True,
                                      timing=self.args.timing)
                    self.check_kind(srv, kind)
                    if kind == "ours" and pending:
                        with srv.admin() as admin:
                            names = admin.status("bound_names")
                        refusal = refused_registration(srv, "r1")
                        verdict = "refused (reserved)" if refusal and "reserved" in refusal else repr(refusal)
                        self.bound_checks.append(f"{storage} rep {r + 1}: {names:,} bound names; "
                                                 f"registering r1 without its invite: {verdict}")
                        log(self.bound_checks[-1])
                    measure_open(srv, streams, 0.5, 50)  # warm-up
                    if self.args.timing:
                        with srv.admin() as admin:
                            admin.timing()
                    servers[(kind, pending)] = srv
            ours = [("ours", 0), ("ours", n)]
            stock = [("stock", 0), ("stock", n)]
            if r % 2:
                ours.reverse()
                stock.reverse()
            seq = ours + stock + stock[::-1] + ours[::-1]
            halves: dict[tuple[str, int], Tally] = {}
            for key in seq:
                with servers[key].admin() as admin:
                    admin.collect()  # untimed: ours' load garbage is not a registration's cost
                t = measure_open(servers[key], streams, p["open_s"] / 2, p["max_ops"])
                halves.setdefault(key, Tally()).merge(t)
            for (kind, pending), t in halves.items():
                self.results[("reserve", storage, pending, "open", kind)].add(t)
                if self.args.timing:
                    with servers[(kind, pending)].admin() as admin:
                        add_timing(self.timings, ("reserve", storage, pending, "open", kind), admin.timing(), t.ok)
                log_phase(f"open registration {storage} {pending:,} bound pending {kind} rep {r + 1}", t)
            for (kind, pending), srv in servers.items():
                self.finish(srv, f"{kind}/open/{storage}/bound={pending}/rep {r + 1}")

    def run(self) -> None:
        p = self.p
        for storage in self.args.storages:
            for n in p["ns"].get(storage, []):
                self.cell("temp", self.root, storage, n, p["big_reps"] if n >= FEW_OPS_N else p["reps"])
        if self.disk_root:
            for storage in self.args.storages:
                for n in p["disk"].get(storage, []):
                    self.cell("admin-default", self.disk_root, storage, n, p["disk_reps"])
        if p["reserve_n"]:
            for storage in p["reserve_storages"]:
                if storage in self.args.storages:
                    self.reservation(storage, p["reserve_n"], p["reserve_reps"])

    def stop_all(self) -> None:
        for srv in self.servers:
            srv.stop()


def add_timing(timings: dict, key: tuple, sample: dict, ops: int) -> None:
    """Accumulate one repetition's {name: (count, cpu µs, wall µs)} and its operation count."""
    entry = timings.setdefault(key, {"ops": 0, "names": collections.defaultdict(lambda: [0, 0.0, 0.0])})
    entry["ops"] += ops
    for name, (n, cpu, wall) in sample.items():
        acc = entry["names"][name]
        acc[0] += n
        acc[1] += cpu
        acc[2] += wall


# ---------------------------------------------------------------------------
# Report

def render_timings(timings: dict) -> str:
    lines = ["", "## Server time split (`--timing`)", "",
             "Per measured operation (preauth IQ or invited registration), summed over repetitions: "
             "calls per operation, CPU µs and wall µs per operation, measured inside the server by "
             "`bench/plugins/mod_bench_timing.lua` around all handlers of each event and around the "
             "`invite_token` store methods (warm-up rounds and token creation excluded; store calls "
             "nest inside the events).", "",
             "| cell | impl | what | calls/op | CPU µs/op | wall µs/op |", "|---|---|---|---:|---:|---:|"]
    for (label, storage, n, metric, kind), entry in sorted(
            timings.items(), key=lambda kv: (kv[0][:4], kv[0][4] != "stock")):
        ops = max(entry["ops"], 1)
        for name, (cnt, cpu, wall) in sorted(entry["names"].items()):
            lines.append(f"| {cell_name(label, storage)} N={n:,} {metric} | {kind} | {name} | "
                         f"{cnt / ops:.2f} | {cpu / ops:.1f} | {wall / ops:.1f} |")
    return "\n".join(lines) + "\n"


METRIC_NAMES = {
    "preauth": "preauth IQs/s (valid token)",
    "invited": "invited registrations/s",
}


def cell_name(label: str, storage: str) -> str:
    return {"temp": storage, "admin-default": f"{storage}, data on /var/lib",
            "reserve": f"{storage}, open registration, bound invites"}[label]


class Report:
    def __init__(self, bench: Bench, profile: str, runtime: float, load_before, load_after,
                 file_systems: dict[str, str]):
        self.b = bench
        self.r = bench.results
        self.p = bench.p
        self.profile = profile
        self.runtime = runtime
        self.load_before, self.load_after = load_before, load_after
        self.file_systems = file_systems
        self.goals: list[str] = []

    def cells(self):
        """(label, storage, n) of the main cells, in run order."""
        seen = []
        for key in self.r:
            if key[0] != "reserve" and key[:3] not in seen:
                seen.append(key[:3])
        return seen

    def get(self, *key) -> Cell | None:
        return self.r.get(key)

    def goal(self, text: str, value: float | None, target: float, above: bool = True) -> None:
        if value is None:
            return
        met = value >= target if above else value <= target
        self.goals.append(f"- {'✓' if met else '✗'} {text}: {value:.2f} "
                          f"(goal {'≥' if above else '<'} {target:g})")

    def results_table(self) -> list[str]:
        lines = [
            "| storage | N | metric | stock /s | ours /s | rate ours/stock | server CPU µs/op: stock | ours "
            "| CPU ours/stock |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for label, storage, n in self.cells():
            name = cell_name(label, storage)
            open_cell = self.get(label, storage, n, "open", "open")
            if open_cell and open_cell.rates:
                lines.append(f"| {name} | {n:,} | open registrations/s (no invite modules; N not "
                             f"applicable) | {open_cell.fmt()} | | | {open_cell.fmt_cpu()} | | |")
            for metric in ("preauth", "invited"):
                s = self.get(label, storage, n, metric, "stock") or Cell()
                o = self.get(label, storage, n, metric, "ours") or Cell()
                lines.append(f"| {name} | {n:,} | {METRIC_NAMES[metric]} | {s.fmt()} | {o.fmt()} | "
                             f"{fmt_ratio(ratio(o.median(), s.median()))} | {s.fmt_cpu()} | {o.fmt_cpu()} | "
                             f"{fmt_ratio(ratio(o.cpu(), s.cpu()))} |")
        return lines

    def invited_over_open(self) -> list[str]:
        rows = []
        for label, storage, n in self.cells():
            open_cell = self.get(label, storage, n, "open", "open")
            if not open_cell or not open_cell.rates:
                continue
            invited = {kind: self.get(label, storage, n, "invited", kind) or Cell() for kind in ("stock", "ours")}
            values = {kind: ratio(c.median(), open_cell.median()) for kind, c in invited.items()}
            cpu = {kind: ratio(c.cpu(), open_cell.cpu()) for kind, c in invited.items()}
            goal = 0.9 if storage == "internal" else None
            rows.append(f"| {cell_name(label, storage)} | {n:,} | {fmt_ratio(values['stock'])} | "
                        f"{fmt_ratio(values['ours'], goal)} | {fmt_ratio(cpu['stock'])} | {fmt_ratio(cpu['ours'])} |")
            if goal and label == "temp":
                self.goal(f"internal N={n:,}: ours invited/open", values["ours"], goal)
        if not rows:
            return []
        return ["", "Invited registrations over open ones (median rates of the same cell; 1.00 = the "
                "invite costs nothing; ✓/✗: the goal ours ≥ 0.9 on internal storage), and server CPU "
                "per invited registration over CPU per open one (ours' includes its batched deletes):", "",
                "| storage | N | stock invited/open | ours invited/open | CPU: stock invited/open | ours |",
                "|---|---:|---:|---:|---:|---:|", *rows]

    def preauth_scaling(self) -> list[str]:
        rows = []
        for label, storage, n in self.cells():
            base = {kind: (self.get(label, storage, 0, "preauth", kind) or Cell()).median()
                    for kind in ("stock", "ours")}
            if n == 0 or base["ours"] is None:
                continue
            values = {kind: ratio((self.get(label, storage, n, "preauth", kind) or Cell()).median(), base[kind])
                      for kind in ("stock", "ours")}
            rows.append(f"| {cell_name(label, storage)} | {n:,} | {fmt_ratio(values['stock'])} | "
                        f"{fmt_ratio(values['ours'], 0.9)} |")
            if label == "temp":
                self.goal(f"{storage} N={n:,}: ours preauth rate / ours at N=0", values["ours"], 0.9)
        if not rows:
            return []
        return ["", "Preauth rate at N over the same module's rate at N = 0 (goal for ours ≥ 0.9):", "",
                "| storage | N | stock | ours |", "|---|---:|---:|---:|", *rows]

    def startup_memory(self) -> list[str]:
        rows = []
        for label, storage, n in self.cells():
            s = self.b.starts.get((label, storage, n, "stock"))
            o = self.b.starts.get((label, storage, n, "ours"))
            if not s or not o:
                continue

            def med(starts, attr):
                return statistics.median(getattr(x, attr) for x in starts)
            up = med(o, "seconds") - med(s, "seconds")
            rss = (med(o, "rss_gc_kb") - med(s, "rss_gc_kb")) / 1024
            batches = [x.batch_cpu for x in o if x.batch_cpu is not None]
            batch = f"{statistics.median(batches):.3f}" if batches else "—"
            rows.append(
                f"| {cell_name(label, storage)} | {n:,} | {med(s, 'seconds'):.2f} | {med(o, 'seconds'):.2f} | "
                f"{up:+.2f} | {med(s, 'rss_kb') / 1024:.1f} | {med(o, 'rss_kb') / 1024:.1f} | "
                f"{med(s, 'rss_gc_kb') / 1024:.1f} | {med(o, 'rss_gc_kb') / 1024:.1f} | {rss:+.1f} | "
                f"{(med(o, 'heap_kb') - med(s, 'heap_kb')) / 1024:+.1f} | "
                f"{med(s, 'rss_end_kb') / 1024:.1f} | {med(o, 'rss_end_kb') / 1024:.1f} | {batch} |")
            if label == "temp" and storage == "internal" and n >= FEW_OPS_N:
                self.goal(f"internal N={n:,}: start-up, ours − stock (s)", up, 1.0, above=False)
                self.goal(f"internal N={n:,}: RSS after start, ours − stock (MiB)", rss, 30.0, above=False)
        if not rows:
            return []
        return ["", "## Start-up and memory", "",
                "Each server starts on a copy of the cell's data (N invites made by one `set_keys`), as "
                "after a restart. up = from starting the process to its first answered stream (ours "
                "loads its invite index there; stock reads nothing). RSS of the server process at "
                "that moment, after two full Lua collections (the index's memory is the difference "
                "ours − stock), and at the end of the repetition (stock has parsed the invite file by "
                "then). Medians over the repetitions; MiB. Last column: the server CPU seconds of ours' "
                "first batch delete (the warm-up's 8 used tokens: one write of the store, which ours "
                "spaces out to keep such writes at ~5 % of its time).", "",
                "| storage | N | up: stock s | ours s | ours − stock | RSS at start: stock | ours | "
                "after GC: stock | ours | ours − stock | Lua heap ours − stock | RSS at end: stock | ours | "
                "ours: one batch delete, CPU s |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", *rows]

    def reservation(self) -> list[str]:
        rows = []
        for storage in self.p["reserve_storages"]:
            n = self.p["reserve_n"]
            cells = {(kind, pending): self.get("reserve", storage, pending, "open", kind)
                     for kind in ("stock", "ours") for pending in (0, n)}
            if not all(c and c.rates for c in cells.values()):
                continue
            for kind in ("stock", "ours"):
                none, bound = cells[(kind, 0)], cells[(kind, n)]
                value = ratio(bound.median(), none.median())
                rows.append(f"| {storage} | {kind} | {none.fmt()} | {bound.fmt()} | "
                            f"{fmt_ratio(value, 0.95 if kind == 'ours' else None)} | {none.fmt_cpu()} | "
                            f"{bound.fmt_cpu()} | {fmt_ratio(ratio(bound.cpu(), none.cpu()))} |")
                if kind == "ours":
                    self.goal(f"{storage}: open registration with {n:,} bound invites / with none, ours",
                              value, 0.95)
        if not rows:
            return []
        n = self.p["reserve_n"]
        return ["", "## Open registration with username-bound invites pending", "",
                f"`registration_invite_only = false`, `allow_registration = true`, invite modules loaded; "
                f"registrations without an invite (as the open floor), on a server with {n:,} pending "
                f"invites bound to other usernames (mod_invites' `create_account(username)`) against one "
                f"with none. Ours checks every registering name against the reservations (one index "
                f"lookup); stock checks nothing. Goal: ours with {n:,} ≥ 0.95 × ours with none.", "",
                f"| storage | module | none /s | {n:,} bound /s | ratio | CPU µs/op: none | {n:,} bound | "
                "CPU ratio |", "|---|---|---:|---:|---:|---:|---:|---:|", *rows,
                "", "Checks: " + "; ".join(self.b.bound_checks) + "."]

    def render(self) -> str:
        m = machine_info()
        p = self.p
        few_note = (f"† stock measured with a few operations only ({FEW_OPS} per half phase on one "
                    f"stream): at N ≥ {FEW_OPS_N:,} each of its preauths parses the whole invite file.")
        lines = [
            "# Benchmarks: mod_invites_register, stock vs ours",
            "",
            f"Generated by `make {'bench' if self.profile == 'full' else 'bench-quick'}` "
            f"(`bench/bench.py --profile {self.profile}`) on {time.strftime('%Y-%m-%d %H:%M %Z')}, "
            f"runtime {self.runtime / 60:.1f} min.",
            "",
            "## Machine",
            "",
            f"- {m['nproc']} vCPU, {m['cpu']}, {m['mem']} RAM, {m['kernel']}",
            f"- Prosody {m['prosody']} (Debian package), lua5.4 {m['lua']}, client Python {m['python']}",
            f"- ours: commit {m['commit']}, built by `make install` (release)",
            *[f"- data {where}: {fs}" for where, fs in self.file_systems.items()],
            f"- load average (1/5/15 min) before: {self.load_before[0]:.2f} / {self.load_before[1]:.2f} / "
            f"{self.load_before[2]:.2f}, after: {self.load_after[0]:.2f} / {self.load_after[1]:.2f} / "
            f"{self.load_after[2]:.2f} — the client and server share the machine; other work on it shows "
            "up as noise.",
            "",
            "## Results",
            "",
            f"{self.b.streams} concurrent client streams; each cell {p['reps']}× ({p['big_reps']}× at "
            f"N ≥ {FEW_OPS_N:,}, {p['disk_reps']}× with the data on /var/lib) "
            f"(median, min–max in parentheses); N = pending unrelated invites in the host store. "
            "Rate ratio > 1: ours faster. Server CPU = CPU time of the Prosody process per operation "
            "(median; CPU ratio < 1: ours cheaper; ours' invited includes its batched deletes written "
            "after the phase); it is much less sensitive than the rates to other load on the machine "
            "and to disk latency (SQLite commits wait for fsync).",
            "",
            *self.results_table(),
            "",
            few_note,
        ]
        lines += self.invited_over_open()
        lines += self.preauth_scaling()
        lines += self.startup_memory()
        lines += self.reservation()
        problems = [f"- {k}: {c.failed} failed operations, e.g. {c.errors[:1]}"
                    for k, c in self.r.items() if c.failed]
        problems += [f"- traceback: `{t}`" for t in self.b.tracebacks[:10]]
        lines += ["", "Failed operations and server tracebacks: " + ("none." if not problems else ""), *problems]
        if self.goals:
            lines += ["", "## Goals", "", *self.goals]
        lines += self.method()
        return "\n".join(lines)

    def method(self) -> list[str]:
        p = self.p
        return [
            "",
            "## Method",
            "",
            "- Two private Prosody servers per (storage, N) and repetition (fresh processes and data each "
            "repetition: a process keeps whatever speed its memory layout gives it, so one pair per cell "
            "would bias that cell), side by side on 127.0.0.1 with free ports, own data directories, "
            "`run_as_root = true`, log level warn, `c2s_timeout = 5`, "
            "`c2s_require_encryption = false`, `allow_unencrypted_plain_auth = true` (plaintext, to measure "
            "the module rather than TLS), `authentication = \"internal_hashed\"`. mod_register_limits' "
            "throttle is off (no `min_seconds_between_registrations`/`registration_throttle_max`) and "
            "127.0.0.1 is allow-listed. Storage: internal files, or `storage = \"sql\"` with SQLite3; "
            "data directories in the system's temporary directory, and for the cells marked \"data on "
            "/var/lib\" on the file system of Debian's default `data_path` (/var/lib/prosody); file "
            "systems under Machine (SQLite commits and internal-storage writes wait for the disk).",
            "- **stock**: Prosody's own `mod_invites_register` (copied from Prosody's modules folder "
            "into the stock servers' first plugin_paths entry, so no other module of that name can "
            "stand in for it). **ours**: "
            "`plugin_paths` → a `make install PLUGIN_DIR=…` directory, options at their defaults "
            f"(`invites_register_delete_delay` {DELETE_DELAY:g} s). Both: modules "
            f"{', '.join(BASE_MODULES + INVITE_MODULES)}, `registration_invite_only` default (true). "
            "A probe with a bogus token checks which module answers (stock: forbidden, ours: item-not-found).",
            "- The N unrelated invites are made once per (storage, N) by a bench-only module "
            "(`bench/plugins/mod_bench_invites.lua`) that calls mod_invites' `create_account()` in a loop "
            "from one admin-shell command, writing the records with one `set_keys()` (one file write or one "
            "SQL transaction) instead of N writes; every server of the cell starts on a copy of that data "
            "directory (ours builds its index from it at load). The preauth token and the registration "
            "tokens are made the same way inside each running server, so ours sees them through "
            "mod_invites' `invite-created` and needs no re-read.",
            f"- **preauth**: {self.b.streams} unauthenticated streams, each sending preauth IQs "
            "(`<preauth xmlns='urn:xmpp:pars:0' token=…/>`) with one valid account-invite token (preauth "
            "doesn't consume), one in flight per stream, for a fixed time "
            f"({p['preauth_s']:g} s per repetition in its two halves, in segments of at most "
            f"{C2S_TIMEOUT - 1.5:g} s with fresh streams, since c2s_timeout closes streams still "
            "unauthenticated after that long); rate = successful replies / time.",
            f"- **invited registration**: {self.b.streams} workers; per registration a fresh TCP stream, stream "
            "features, preauth with a fresh single-use token, XEP-0077 set (username, password), close. "
            f"Tokens come in rounds ({ROUND_SIZE['internal']} for internal storage, or N/200 from N = "
            f"{ROUND_SIZE['internal'] * 200:,}; {ROUND_SIZE['sqlite']} for "
            "SQLite) created between timed phases; leftovers are deleted. Timed phases add up to "
            f"{p['invited_s']:g} s per repetition (the last registrations in flight complete); rate = "
            "registrations / timed seconds. With internal storage, a round adds on average "
            "half its size to the N in the store.",
            "- **Ours' index and batched deletes.** Ours deletes used tokens in batches (one write of the "
            f"store at most {DELETE_DELAY:g} s after the first use it holds, stretched when one write is "
            "expensive). After each of its invited phases the bench waits (untimed, at most "
            f"{DELETE_DELAY + 3:g} s) until ours has written them, and adds the server CPU of that wait to "
            "the phase's CPU per operation. Not at N ≥ "
            f"{FEW_OPS_N:,}: there ours stretches the interval to a minute or more, the phases' batch is "
            "written at shutdown, and the cost of one batch write is shown in the start-up table (the "
            "warm-up's batch, waited for before the timed phases). Dropping a round's leftover tokens is a write by "
            "neither module, so ours re-reads the whole store at its next preauth: one untimed preauth "
            "follows every drop on the ours server, so that re-read never lands in a timed phase.",
            f"- **Large N.** At N ≥ {FEW_OPS_N:,} stock costs seconds per operation; it is measured with "
            f"{FEW_OPS} operations per half phase on one stream (marked †), and both kinds get "
            f"{p['big_reps']} repetitions there.",
            f"- **open registration**: a third server without invite modules, `allow_registration = true`, "
            f"same flow without preauth, {p['open_s']:g} s per repetition: the floor set by password "
            "hashing (SCRAM-SHA-1 PBKDF2) and account storage. It is measured in every (storage, N) cell, "
            "in the middle of the invited phases of each repetition (N doesn't apply to it), so each "
            "invited/open ratio compares phases of the same minutes.",
            "- **Open registration with bound invites**: four servers per repetition (stock and ours, each "
            f"with {p['reserve_n']:,} bound invites or none, `registration_invite_only = false`), measured "
            f"in the order ours, ours, stock, stock, stock, stock, ours, ours ({p['open_s'] / 2:g} s each; "
            "the two ours swapped every other repetition); one registration of a reserved name without its "
            "invite checks that ours refuses it.",
            "- Each repetition measures in the order A B B A (stock/ours, swapped every other "
            "repetition), each kind in two halves of the phase time placed symmetrically, so a drift of "
            "the machine within a repetition hits both alike; the open phase sits in the middle of the "
            "invited ones (A B open B A). A short warm-up precedes each repetition. Every loop is bounded "
            "by time and operation count.",
            "- **Garbage of the setup.** Making or dropping a round of tokens rewrites the whole invite "
            "file (at N = 100,000 a 35 MB parse and rewrite). Its garbage would otherwise be collected "
            "by Lua's incremental collector during the next timed phase and charged to whichever module "
            "runs there, so each server gets one full collection (untimed) before every timed phase and "
            "after making or dropping tokens, both kinds alike; after ours' batch write the drain "
            "collects too, and that CPU is charged to ours.",
            "",
        ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="full")
    ap.add_argument("--out", help="Markdown report (default: BENCHMARKS.md for full, "
                                  "build/bench-quick.md for quick)")
    ap.add_argument("--storage", default="internal,sqlite")
    ap.add_argument("--ns", help="comma-separated N values (pending unrelated invites), for every storage")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--big-reps", type=int, help=f"repetitions at N ≥ {FEW_OPS_N:,}")
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--preauth-s", type=float)
    ap.add_argument("--invited-s", type=float)
    ap.add_argument("--open-s", type=float)
    ap.add_argument("--skip-open", action="store_true")
    ap.add_argument("--disk", help="cells with the data on the admin-default disk, e.g. "
                                   "'internal:1000,sqlite:1000' ('' for none)")
    ap.add_argument("--disk-reps", type=int)
    ap.add_argument("--reserve-n", type=int, help="bound invites in the open-registration cell (0: skip)")
    ap.add_argument("--reserve-reps", type=int)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    ap.add_argument("--data-root", help="where the servers' work/data directories go (default: "
                                        "the system temp dir, on disk; /dev/shm takes fsync "
                                        "latency out of the SQLite numbers)")
    ap.add_argument("--timing", action="store_true",
                    help="load bench/plugins/mod_bench_timing.lua and report the server's time "
                         "split (events, invite_token store calls) per operation")
    args = ap.parse_args()

    p = dict(PROFILES[args.profile])
    if args.ns:
        p["ns"] = {storage: [int(x) for x in args.ns.split(",")] for storage in ROUND_SIZE}
    if args.disk is not None:
        p["disk"] = collections.defaultdict(list)
        for item in filter(None, args.disk.split(",")):
            storage, _, n = item.partition(":")
            p["disk"][storage].append(int(n))
    for k in ("reps", "big_reps", "preauth_s", "invited_s", "open_s", "disk_reps", "reserve_n", "reserve_reps"):
        if getattr(args, k) is not None:
            p[k] = getattr(args, k)
    args.storages = [s for s in args.storage.split(",") if s]
    out = Path(args.out) if args.out else (REPO / ("BENCHMARKS.md" if args.profile == "full"
                                                   else "build/bench-quick.md"))

    started = time.monotonic()
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="invites-bench-", dir=args.data_root))
    disk_root = None
    if any(p["disk"].get(s) for s in args.storages):
        disk_root = Path(tempfile.mkdtemp(prefix="invites-bench-", dir=ADMIN_DATA_PATH.parent))
    log(f"work dir {root}{f' and {disk_root}' if disk_root else ''}; profile {args.profile}: {p}, "
        f"storages {args.storages}, {args.streams} streams")
    file_systems = {f"in {root.parent}": file_system(root)}
    if disk_root:
        file_systems[f"in {disk_root.parent}"] = file_system(disk_root)
        if ADMIN_DATA_PATH.exists():
            file_systems[f"(Debian's data_path {ADMIN_DATA_PATH})"] = file_system(ADMIN_DATA_PATH)
    ours_dir = install_ours(root)

    bench = Bench(args, p, root, disk_root, ours_dir)
    try:
        bench.run()
    finally:
        bench.stop_all()
        for path in filter(None, (root, disk_root)):
            if not args.keep:
                shutil.rmtree(path, ignore_errors=True)
            else:
                log(f"kept {path}")

    runtime = time.monotonic() - started
    report = Report(bench, args.profile, runtime, load_before, os.getloadavg(), file_systems).render()
    if bench.timings:
        report += render_timings(bench.timings)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(report)
    log(f"wrote {out} in {runtime:.0f}s")
    failed = sum(c.failed for c in bench.results.values())
    return 1 if bench.tracebacks or failed else 0


if __name__ == "__main__":
    sys.exit(main())
