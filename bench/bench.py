#!/usr/bin/env python3
"""End-to-end throughput benchmark: stock mod_invites_register vs ours (`make bench`).

For each storage backend (internal files, SQLite) and each number N of pending
unrelated invites, two private Prosody servers run side by side on 127.0.0.1 —
one with Prosody's own module (STOCK: no plugin_paths entry for ours) and one with
OURS (plugin_paths -> a `make install` directory). Each repetition measures them
in the order A B B A (halves of the phase time), so slow phases of a noisy machine
hit both. Measured with concurrent raw-XML
client streams (asyncio, stdlib only):

  preauth   IQs/s: unauthenticated streams (renewed within c2s_timeout) send preauth IQs with one
            valid (never consumed) token, one request in flight per stream.
  invited   registrations/s: per registration a fresh stream, preauth with a fresh
            single-use token, IBR set, close. Tokens come in rounds from the bench
            module (created before the round, not timed); leftovers are dropped.
  open      registrations/s without any invite module (allow_registration = true):
            the floor that password hashing and account storage set. A third server,
            measured in every (storage, N) cell between the invited phases, so each
            invited/open ratio compares phases of the same minutes.

Every loop is bounded by time and count and stops by itself; only the servers
started here are signalled. Nothing listens anywhere but 127.0.0.1 on free ports.

usage: python3 bench/bench.py [--profile full|quick] [--out FILE] [--storage internal,sqlite]
                              [--ns 0,1000,10000] [--reps 3] [--streams 8] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import html
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_PLUGINS = REPO / "bench" / "plugins"
PROSODY = os.environ.get("PROSODY", "/usr/bin/prosody")

HOST = "bench.test"
PASSWORD = "bench-password-1"
TRACEBACK_RE = re.compile(r"Traceback|stack traceback")
# Prosody 0.12.3's own shutdown race (as in tests/e2e/prosody.py): a client's close crossing
# SIGTERM can make net/server_epoll.lua raise during shutdown. Only that, after SIGTERM, with
# nothing from invites_register in it, is not counted.
SHUTDOWN_RACE_RE = re.compile(r"server_epoll\.lua:\d+: attempt to index a nil value \(field 'conn'\)")

STARTUP_TIMEOUT = 20.0
SHUTDOWN_TIMEOUT = 10.0
OP_TIMEOUT = 30.0          # one request/reply or one connection step
ADMIN_TIMEOUT = 300.0      # one admin-shell command (bulk creation of 10,000 invites)
C2S_TIMEOUT = 5            # s, Prosody's c2s_timeout on the bench servers

PROFILES = {
    # ~15-20 min on 2 vCPUs
    "full": dict(ns=[0, 1000, 10000], reps=5, preauth_s=3.0, invited_s=6.0, open_s=6.0,
                 max_ops=200000),
    # < 3 min
    "quick": dict(ns=[0, 10000], reps=1, preauth_s=2.0, invited_s=4.0, open_s=3.0,
                  max_ops=50000),
}

# Tokens per round of invited registrations. Pool tokens live in the same host store
# as the N unrelated ones; with internal storage every lookup reads the whole store,
# so rounds stay small there (on average ROUND/2 extra records).
ROUND_SIZE = {"internal": 64, "sqlite": 512}


# ---------------------------------------------------------------------------
# Prosody processes

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lua(value) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "{ " + ", ".join(lua(v) for v in value) + " }"
    raise TypeError(value)


BASE_MODULES = ["roster", "saslauth", "disco", "ping", "register", "admin_shell"]
INVITE_MODULES = ["invites", "invites_register", "bench_invites"]


class Server:
    """One private Prosody: kind is "stock", "ours" or "open" (no invite modules)."""

    def __init__(self, root: Path, kind: str, storage: str, ours_dir: Path | None,
                 timing: bool = False):
        self.kind = kind
        self.timing = timing
        self.storage = storage
        self.workdir = root / f"{kind}-{storage}"
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.data_dir = self.workdir / "data"
        self.certs = self.workdir / "certs"
        self.config_path = self.workdir / "prosody.cfg.lua"
        self.log_path = self.workdir / "prosody.log"
        self.console_path = self.workdir / "console.out"
        self.admin_socket = self.data_dir / "admin.sock"
        self.ours_dir = ours_dir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._console = None
        self.users = 0

    def config(self) -> str:
        plugin_paths = [str(BENCH_PLUGINS)]
        if self.kind == "ours":
            plugin_paths.insert(0, str(self.ours_dir))
        modules = list(BASE_MODULES)
        if self.kind != "open":
            modules += INVITE_MODULES
        if self.timing:
            modules.append("bench_timing")
        settings = {
            "pidfile": str(self.data_dir / "prosody.pid"),
            "data_path": str(self.data_dir),
            "certificates": str(self.certs),
            "plugin_paths": plugin_paths,
            "run_as_root": True,
            "interfaces": ["127.0.0.1"],
            "c2s_ports": [self.port],
            "c2s_direct_tls_ports": [],
            "s2s_ports": [],
            "http_ports": [],
            "https_ports": [],
            "modules_disabled": ["s2s"],
            "modules_enabled": modules,
            "admin_socket": str(self.admin_socket),
            "authentication": "internal_hashed",
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
        }
        if self.kind == "open":
            settings["allow_registration"] = True
        lines = [f"-- generated by bench/bench.py ({self.kind}, {self.storage})"]
        lines += [f"{k} = {lua(v)}" for k, v in settings.items()]
        lines.append(f"log = {{ warn = {lua(str(self.log_path))} }}")
        if self.storage == "sqlite":
            lines.append('storage = "sql"')
            lines.append('sql = { driver = "SQLite3", database = "prosody.sqlite" }')
        lines += ["", f"VirtualHost {lua(HOST)}", ""]
        return "\n".join(lines)

    def start(self) -> "Server":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.certs.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config())
        self._console = open(self.console_path, "wb")
        self.proc = subprocess.Popen([PROSODY, "--config", str(self.config_path), "-F"],
                                     cwd=self.workdir, stdin=subprocess.DEVNULL,
                                     stdout=self._console, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prosody ({self.kind}) exited during startup:\n"
                                   + self.text(self.console_path) + self.text(self.log_path))
            if self._answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"prosody ({self.kind}) did not answer in time\n" + self.text(self.log_path))

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(stream_header().encode())
                got = b""
                while b"</stream:features>" not in got and b"<stream:features/>" not in got:
                    data = s.recv(65536)
                    if not data:
                        return False
                    got += data
                s.sendall(b"</stream:stream>")
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            time.sleep(0.5)  # let the last client closes settle before SIGTERM
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=SHUTDOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=SHUTDOWN_TIMEOUT)
        self.proc = None
        if self._console:
            self._console.close()
            self._console = None

    def cpu_seconds(self) -> float:
        """utime + stime of the server process (it is one Lua process)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def text(path: Path) -> str:
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tracebacks(self) -> list[str]:
        """Each traceback with the log line before it and up to 12 lines after it."""
        found = []
        for path in (self.log_path, self.console_path):
            text = self.text(path)
            # the log is at level warn: mod_posix's "Received SIGTERM" marks the shutdown
            # (stdout/stderr has no marker: all of it counts as "after")
            marker = "Received SIGTERM" if path == self.log_path else ""
            head, _, tail = text.partition(marker) if marker else ("", "", text)
            if SHUTDOWN_RACE_RE.search(tail) and "invites_register" not in tail:
                text = head
            lines = text.splitlines()
            for i, line in enumerate(lines):
                if TRACEBACK_RE.search(line):
                    found.append(" ⏎ ".join(lines[max(0, i - 1):i + 13]))
        return found

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


# ---------------------------------------------------------------------------
# Admin shell over the admin socket (the protocol prosodyctl shell speaks)

class Admin:
    RESULT_RE = re.compile(rb"<repl-result([^>]*?)(?:/>|>(.*?)</repl-result>)", re.S)

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(ADMIN_TIMEOUT)
        self.sock.connect(str(path))
        self.sock.sendall(b"<?xml version='1.0'?><stream:stream xmlns='xmpp:prosody.im/admin' "
                          b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
        self.buf = b""

    def run(self, command: str) -> str:
        self.sock.sendall(b"<repl-input>" + html.escape(command, quote=False).encode() + b"</repl-input>")
        while True:
            m = self.RESULT_RE.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                text = html.unescape((m.group(2) or b"").decode())
                if b"error" in m.group(1):
                    raise RuntimeError(f"admin shell {command!r}: {text}")
                for prefix in ("OK: ", "Result: "):
                    if text.startswith(prefix):
                        return text[len(prefix):]
                return text
            data = self.sock.recv(1 << 20)
            if not data:
                raise RuntimeError(f"admin socket closed during {command!r}")
            self.buf += data

    def create(self, n: int, want_tokens: bool = False) -> list[str] | int:
        out = self.run(f'benchinvite:create("{HOST}", {n}, {"true" if want_tokens else "false"})')
        return out.split() if want_tokens else int(out)

    def drop(self, tokens) -> None:
        tokens = list(tokens)
        for i in range(0, len(tokens), 2000):
            self.run(f'benchinvite:drop("{HOST}", "{" ".join(tokens[i:i + 2000])}")')

    def timing(self) -> dict[str, tuple[int, float, float]]:
        """benchtiming:report() → {name: (count, cpu µs, wall µs)}, then reset."""
        out = self.run("benchtiming:report()")
        self.run("benchtiming:reset()")
        result = {}
        for part in filter(None, out.split(";")):
            name, n, cpu, wall = part.rsplit("|", 3)
            result[name] = (int(n), float(cpu), float(wall))
        return result

    def close(self) -> None:
        try:
            self.sock.sendall(b"</stream:stream>")
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------
# Raw XML client streams

def stream_header() -> str:
    return (f"<?xml version='1.0'?><stream:stream to='{HOST}' xmlns='jabber:client' "
            "xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en'>")


ATTR_RE = re.compile(rb"""\s(type|id)=['"]([^'"]*)['"]""")


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
        writer.write(stream_header().encode())
        while b"</stream:features>" not in self.buf and b"<stream:features/>" not in self.buf:
            await self._read()
        end = self.buf.find(b"</stream:features>")
        self.buf = self.buf[end + len(b"</stream:features>"):] if end >= 0 else b""
        return self

    async def _read(self) -> None:
        data = await asyncio.wait_for(self.reader.read(65536), OP_TIMEOUT)
        if not data:
            raise BenchError("connection closed by the server: " + self.buf[-300:].decode(errors="replace"))
        self.buf += data

    def _take_iq(self) -> bytes | None:
        start = self.buf.find(b"<iq")
        if start < 0:
            if b"<stream:error" in self.buf or b"</stream:stream>" in self.buf:
                raise BenchError("stream closed: " + self.buf[-300:].decode(errors="replace"))
            return None
        tag_end = self.buf.find(b">", start)
        if tag_end < 0:
            return None
        if self.buf[tag_end - 1:tag_end] == b"/":
            end = tag_end + 1
        else:
            close = self.buf.find(b"</iq>", tag_end)
            if close < 0:
                return None
            end = close + 5
        iq, self.buf = self.buf[start:end], self.buf[end:]
        return iq

    async def iq(self, xml: str, iq_id: str) -> bytes:
        """Send an IQ; return the raw reply if it is a result, raise otherwise."""
        self.writer.write(xml.encode())
        while True:
            iq = self._take_iq()
            if iq is None:
                await self._read()
                continue
            head = iq[:iq.find(b">") + 1]
            attrs = dict(ATTR_RE.findall(head))
            if attrs.get(b"id") != iq_id.encode():
                continue
            if attrs.get(b"type") != b"result":
                raise BenchError("error reply: " + iq.decode(errors="replace"))
            return iq

    async def preauth(self, token: str, iq_id: str) -> None:
        await self.iq(f"<iq type='set' id='{iq_id}'><preauth xmlns='urn:xmpp:pars:0' "
                      f"token='{token}'/></iq>", iq_id)

    async def register(self, username: str, iq_id: str) -> None:
        await self.iq(f"<iq type='set' id='{iq_id}'><query xmlns='jabber:iq:register'>"
                      f"<username>{username}</username><password>{PASSWORD}</password>"
                      "</query></iq>", iq_id)

    async def close(self) -> None:
        try:
            self.writer.write(b"</stream:stream>")
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

    def merge(self, other: "Tally") -> None:
        self.ok += other.ok
        self.failed += other.failed
        self.first_error = self.first_error or other.first_error
        self.elapsed += other.elapsed
        self.server_cpu += other.server_cpu

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
        transport.write(stream_header().encode())

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
        self.transport.write(f"<iq type='set' id='p{self.n}'><preauth xmlns='urn:xmpp:pars:0' "
                             f"token='{self.token}'/></iq>".encode())

    def data_received(self, data):
        self.buf += data
        if not self.opened:
            end = self.buf.find(b"</stream:features>")
            if end < 0:
                return
            self.buf = self.buf[end + len(b"</stream:features>"):]
            self.opened = True
            self.ready.set_result(None)
        while True:
            start = self.buf.find(b"<iq")
            if start < 0:
                break
            tag_end = self.buf.find(b">", start)
            if tag_end < 0:
                break
            if self.buf[tag_end - 1:tag_end] == b"/":
                end = tag_end + 1
            else:
                close = self.buf.find(b"</iq>", tag_end)
                if close < 0:
                    break
                end = close + 5
            iq, self.buf = self.buf[start:end], self.buf[end:]
            self.inflight -= 1
            if b"type='result'" in iq[:tag_end - start + 1] or b'type="result"' in iq[:tag_end - start + 1]:
                self.tally.ok += 1
            else:
                self.tally.fail(BenchError("error reply: " + iq.decode(errors="replace")))
                self.running = False
            if self.running and self.tally.ok + self.tally.failed < self.max_ops:
                self._send()
            elif self.inflight == 0 and not self.done.done():
                self.done.set_result(None)
        if b"</stream:stream>" in self.buf or b"<stream:error" in self.buf:
            self.connection_lost(None)

    def connection_lost(self, exc):
        if not self.ready.done():
            self.ready.set_exception(BenchError("stream closed before features"))
        if not self.done.done():
            self.tally.fail(BenchError(f"stream closed: {exc} {self.buf[-200:]!r}"))
            self.done.set_result(None)


async def _preauth_run(port: int, token: str, streams: int, seconds: float, max_ops: int,
                       server: Server, depth: int = 1) -> Tally:
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
            proto.transport.write(b"</stream:stream>")
        except (OSError, RuntimeError):
            pass
        proto.transport.close()
    return tally


async def _registration_round(server: Server, tokens: collections.deque | None, streams: int,
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


def measure_preauth(server: Server, token: str, streams: int, seconds: float, max_ops: int) -> Tally:
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


def measure_open(server: Server, streams: int, seconds: float, max_ops: int) -> Tally:
    tally = Tally()
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    asyncio.run(_registration_round(server, None, streams, t0 + seconds, max_ops, tally))
    tally.elapsed = time.monotonic() - t0
    tally.server_cpu = server.cpu_seconds() - cpu0
    return tally


def measure_invited(server: Server, admin: Admin, streams: int, seconds: float, max_ops: int,
                    round_size: int) -> Tally:
    """Rounds of `round_size` fresh tokens; only the registration phases are timed."""
    tally = Tally()
    max_rounds = 1000
    rounds = 0
    while tally.elapsed < seconds and rounds < max_rounds and tally.ok + tally.failed < max_ops:
        tokens = collections.deque(admin.create(round_size, want_tokens=True))
        cpu0, t0 = server.cpu_seconds(), time.monotonic()
        asyncio.run(_registration_round(server, tokens, streams, t0 + seconds - tally.elapsed,
                                        max_ops, tally))
        tally.elapsed += time.monotonic() - t0
        tally.server_cpu += server.cpu_seconds() - cpu0
        if tokens:
            admin.drop(tokens)
        rounds += 1
        if tally.failed > 20:
            break
    return tally


# ---------------------------------------------------------------------------
# Reporting

@dataclass
class Cell:
    rates: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)   # server CPU ms per operation
    ops: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, t: Tally) -> None:
        if t.ok:
            self.rates.append(t.ok / t.elapsed)
            self.cpu_ms.append(t.server_cpu / t.ok * 1000)
        self.ops += t.ok
        self.failed += t.failed
        if t.first_error:
            self.errors.append(t.first_error)

    def median(self) -> float | None:
        return statistics.median(self.rates) if self.rates else None

    def fmt(self) -> str:
        if not self.rates:
            return "—"
        m = self.median()
        if len(self.rates) == 1:
            return fmt_rate(m)
        return f"{fmt_rate(m)} ({fmt_rate(min(self.rates))}–{fmt_rate(max(self.rates))})"

    def fmt_cpu(self) -> str:
        if not self.cpu_ms:
            return "—"
        us = statistics.median(self.cpu_ms) * 1000
        return f"{us:,.0f}" if us >= 100 else f"{us:.1f}"


def fmt_rate(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def machine_info() -> dict[str, str]:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    def run(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"
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


# ---------------------------------------------------------------------------
# Orchestration

def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def log_phase(what: str, t: Tally) -> None:
    log(f"{what}: {t.ok / max(t.elapsed, 1e-9):.1f}/s ({t.ok} in {t.elapsed:.2f}s, {t.failed} failed, "
        f"server {t.server_cpu / max(t.ok, 1) * 1e6:,.1f} µs CPU/op)")


def install_ours(root: Path) -> Path:
    target = root / "plugins-ours"
    subprocess.run(["make", "-s", "-C", str(REPO), "install", f"PLUGIN_DIR={target}"], check=True)
    return target


def identify(server: Server) -> str:
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="full")
    ap.add_argument("--out", help="Markdown report (default: BENCHMARKS.md for full, "
                                  "build/bench-quick.md for quick)")
    ap.add_argument("--storage", default="internal,sqlite")
    ap.add_argument("--ns", help="comma-separated N values (pending unrelated invites)")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--preauth-s", type=float)
    ap.add_argument("--invited-s", type=float)
    ap.add_argument("--open-s", type=float)
    ap.add_argument("--skip-open", action="store_true")
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
        p["ns"] = [int(x) for x in args.ns.split(",")]
    for k in ("reps", "preauth_s", "invited_s", "open_s"):
        if getattr(args, k) is not None:
            p[k] = getattr(args, k)
    storages = [s for s in args.storage.split(",") if s]
    out = Path(args.out) if args.out else (REPO / ("BENCHMARKS.md" if args.profile == "full"
                                                   else "build/bench-quick.md"))
    streams = args.streams

    started = time.monotonic()
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="invites-bench-", dir=args.data_root))
    log(f"work dir {root}; profile {args.profile}: {p}, storages {storages}, {streams} streams")
    ours_dir = install_ours(root)
    data_fs = subprocess.run(["stat", "-f", "-c", "%T", str(root)], capture_output=True,
                             text=True).stdout.strip() or "?"

    results: dict[tuple, Cell] = collections.defaultdict(Cell)
    timings: dict[tuple, dict] = {}
    tracebacks: list[str] = []
    servers: list[Server] = []
    try:
        for storage in storages:
            for n in p["ns"]:
                for r in range(p["reps"]):
                    # Fresh server processes every repetition: a process keeps whatever
                    # speed its memory layout gives it (seen: identical store calls 10 %
                    # slower in one process than in another), so one pair per cell would
                    # bias the cell's ratio.
                    pair: dict[str, Server] = {}
                    admins: dict[str, Admin] = {}
                    tokens: dict[str, str] = {}
                    for kind in ("stock", "ours"):
                        srv = Server(root, kind, storage, ours_dir, args.timing).start()
                        servers.append(srv)
                        who = identify(srv)
                        if who != kind:
                            raise RuntimeError(f"{kind} server answers like {who!r}")
                        admin = Admin(srv.admin_socket)
                        t0 = time.monotonic()
                        if n:
                            admin.create(n)
                        tokens[kind] = admin.create(1, want_tokens=True)[0]
                        if r == 0:
                            log(f"{storage} N={n} {kind}: {n} unrelated invites created in "
                                f"{time.monotonic() - t0:.2f}s")
                        # warm-up, not counted
                        measure_preauth(srv, tokens[kind], streams, 0.3, 1000)
                        measure_invited(srv, admin, streams, 0.3, 8, 8)
                        pair[kind], admins[kind] = srv, admin
                        if args.timing:
                            admin.timing()
                    open_srv = None
                    if not args.skip_open:
                        open_srv = Server(root, "open", storage, None).start()
                        servers.append(open_srv)
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
                                    results[(storage, n, "open", "open")].add(t)
                                    log_phase(f"{storage} N={n} open registration rep {r + 1}", t)
                                continue
                            if metric == "preauth":
                                t = measure_preauth(pair[kind], tokens[kind], streams, p["preauth_s"] / 2,
                                                    p["max_ops"])
                            else:
                                t = measure_invited(pair[kind], admins[kind], streams, p["invited_s"] / 2,
                                                    p["max_ops"], ROUND_SIZE[storage])
                            halves.setdefault(kind, Tally()).merge(t)
                        for kind in (a, b):
                            t = halves[kind]
                            results[(storage, n, metric, kind)].add(t)
                            if args.timing:
                                add_timing(timings, (storage, n, metric, kind), admins[kind].timing(), t.ok)
                            log_phase(f"{storage} N={n} {kind} {metric} rep {r + 1}", t)
                    for kind, srv in [*pair.items(), *([("open", open_srv)] if open_srv else [])]:
                        if kind in admins:
                            admins[kind].close()
                        srv.stop()
                        tracebacks += [f"{kind}/{storage}/N={n}/rep {r + 1}: {x}" for x in srv.tracebacks()]
                        srv.keep_logs_if_tracebacks(f"{kind}-{storage}-N{n}-rep{r + 1}")
    finally:
        for srv in servers:
            srv.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            log(f"kept {root}")

    runtime = time.monotonic() - started
    report = render(results, storages, p, streams, args.profile, runtime, load_before,
                    os.getloadavg(), tracebacks, data_fs)
    if timings:
        report += render_timings(timings)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(report)
    log(f"wrote {out} in {runtime:.0f}s")
    failed = sum(c.failed for c in results.values())
    return 1 if tracebacks or failed else 0


def add_timing(timings: dict, key: tuple, sample: dict, ops: int) -> None:
    """Accumulate one repetition's {name: (count, cpu µs, wall µs)} and its operation count."""
    entry = timings.setdefault(key, {"ops": 0, "names": collections.defaultdict(lambda: [0, 0.0, 0.0])})
    entry["ops"] += ops
    for name, (n, cpu, wall) in sample.items():
        acc = entry["names"][name]
        acc[0] += n
        acc[1] += cpu
        acc[2] += wall


def render_timings(timings: dict) -> str:
    lines = ["", "## Server time split (`--timing`)", "",
             "Per measured operation (preauth IQ or invited registration), summed over repetitions: "
             "calls per operation, CPU µs and wall µs per operation, measured inside the server by "
             "`bench/plugins/mod_bench_timing.lua` around all handlers of each event and around the "
             "`invite_token` store methods (warm-up rounds and token creation excluded; store calls "
             "nest inside the events).", "",
             "| cell | impl | what | calls/op | CPU µs/op | wall µs/op |", "|---|---|---|---:|---:|---:|"]
    for (storage, n, metric, kind), entry in sorted(timings.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][3] != "stock")):
        ops = max(entry["ops"], 1)
        for name, (cnt, cpu, wall) in sorted(entry["names"].items()):
            lines.append(f"| {storage} N={n:,} {metric} | {kind} | {name} | {cnt / ops:.2f} | "
                         f"{cpu / ops:.1f} | {wall / ops:.1f} |")
    return "\n".join(lines) + "\n"


METRIC_NAMES = {
    "preauth": "preauth IQs/s (valid token)",
    "invited": "invited registrations/s",
}


def invited_over_open(results, storages, p) -> list[str]:
    """Invited registrations over open ones (median rates of the same cell)."""
    rows = []
    for storage in storages:
        for n in p["ns"]:
            open_cell = results.get((storage, n, "open", "open"))
            if not open_cell or not open_cell.rates:
                continue
            ratios = []
            for kind in ("stock", "ours"):
                c = results.get((storage, n, "invited", kind))
                ratios.append(f"{c.median() / open_cell.median():.2f}" if c and c.rates else "—")
            rows.append(f"| {storage} | {n:,} | {ratios[0]} | {ratios[1]} |")
    if not rows:
        return []
    return ["", "Invited registrations over open ones (median rates; 1.00 = the invite costs nothing):",
            "", "| storage | N | stock invited/open | ours invited/open |", "|---|---:|---:|---:|", *rows]


def render(results, storages, p, streams, profile, runtime, load_before, load_after, tracebacks,
           data_fs) -> str:
    m = machine_info()
    lines = [
        "# Benchmarks: mod_invites_register, stock vs ours",
        "",
        f"Generated by `make {'bench' if profile == 'full' else 'bench-quick'}` "
        f"(`bench/bench.py --profile {profile}`) on {time.strftime('%Y-%m-%d %H:%M %Z')}, "
        f"runtime {runtime / 60:.1f} min.",
        "",
        "## Machine",
        "",
        f"- {m['nproc']} vCPU, {m['cpu']}, {m['mem']} RAM, {m['kernel']}",
        f"- Prosody {m['prosody']} (Debian package), lua5.4 {m['lua']}, client Python {m['python']}",
        f"- ours: commit {m['commit']}, built by `make install` (release)",
        f"- load average (1/5/15 min) before: {load_before[0]:.2f} / {load_before[1]:.2f} / "
        f"{load_before[2]:.2f}, after: {load_after[0]:.2f} / {load_after[1]:.2f} / {load_after[2]:.2f}"
        " — the client and server share the machine; other work on it shows up as noise.",
        "",
        "## Results",
        "",
        f"{streams} concurrent client streams; each cell {p['reps']}× "
        f"(median, min–max in parentheses); N = pending unrelated invites in the host store. "
        "Rate ratio > 1: ours faster. Server CPU = CPU time of the Prosody process per operation "
        "(median; CPU ratio < 1: ours cheaper); it is much less sensitive than the rates to other "
        "load on the machine and to disk latency (SQLite commits wait for fsync).",
        "",
        "| storage | N | metric | stock /s | ours /s | rate ours/stock | server CPU µs/op: stock | ours "
        "| CPU ours/stock |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for storage in storages:
        for n in p["ns"]:
            open_cell = results.get((storage, n, "open", "open"))
            if open_cell and open_cell.rates:
                lines.append(f"| {storage} | {n:,} | open registrations/s (no invite modules; N not "
                             f"applicable) | {open_cell.fmt()} | | | {open_cell.fmt_cpu()} | | |")
            for metric in ("preauth", "invited"):
                s = results.get((storage, n, metric, "stock"), Cell())
                o = results.get((storage, n, metric, "ours"), Cell())
                ratio = (f"{o.median() / s.median():.2f}" if s.median() and o.median() else "—")
                cpu_ratio = (f"{statistics.median(o.cpu_ms) / statistics.median(s.cpu_ms):.2f}"
                             if s.cpu_ms and o.cpu_ms else "—")
                lines.append(f"| {storage} | {n:,} | {METRIC_NAMES[metric]} | {s.fmt()} | {o.fmt()} | "
                             f"{ratio} | {s.fmt_cpu()} | {o.fmt_cpu()} | {cpu_ratio} |")
    lines += invited_over_open(results, storages, p)
    problems = [f"- {k}: {c.failed} failed operations, e.g. {c.errors[:1]}"
                for k, c in results.items() if c.failed]
    problems += [f"- traceback: `{t}`" for t in tracebacks[:10]]
    lines += ["", "Failed operations and server tracebacks: " + ("none." if not problems else ""), *problems]
    lines += [
        "",
        "## Method",
        "",
        "- Two private Prosody servers per (storage, N) and repetition (fresh processes and data each "
        "repetition: a process keeps whatever speed its memory layout gives it, so one pair per cell "
        "would bias that cell), side by side on 127.0.0.1 with free ports, own data directories, `run_as_root = true`, log level warn, `c2s_timeout = 5`, "
        "`c2s_require_encryption = false`, `allow_unencrypted_plain_auth = true` (plaintext, to measure "
        "the module rather than TLS), `authentication = \"internal_hashed\"`. mod_register_limits' "
        "throttle is off (no `min_seconds_between_registrations`/`registration_throttle_max`) and "
        "127.0.0.1 is allow-listed. Storage: internal files, or `storage = \"sql\"` with SQLite3; "
        f"data directories on a `{data_fs}` file system (SQLite commits and internal-storage writes "
        "wait for the disk; registrations with SQLite are bound by that latency).",
        "- **stock**: Prosody's own `mod_invites_register` (no plugin_paths entry for ours). **ours**: "
        "`plugin_paths` → a `make install PLUGIN_DIR=…` directory. Both: modules "
        f"{', '.join(BASE_MODULES + INVITE_MODULES)}, `registration_invite_only` default (true). "
        "A probe with a bogus token checks which module answers (stock: forbidden, ours: item-not-found).",
        "- The N unrelated invites and the registration tokens are made by a bench-only module "
        "(`bench/plugins/mod_bench_invites.lua`) that calls mod_invites' `create_account()` in a loop "
        "from one admin-shell command, writing the records with one `set_keys()` (one file write or one "
        "SQL transaction) instead of N writes.",
        f"- **preauth**: {streams} unauthenticated streams, each sending preauth IQs "
        "(`<preauth xmlns='urn:xmpp:pars:0' token=…/>`) with one valid account-invite token (preauth "
        "doesn't consume), one in flight per stream, for a fixed time "
        f"({p['preauth_s']:g} s per repetition in its two halves, in segments of at most {C2S_TIMEOUT - 1.5:g} s with fresh streams, "
        "since c2s_timeout closes streams still unauthenticated after that long); rate = successful "
        "replies / time.",
        f"- **invited registration**: {streams} workers; per registration a fresh TCP stream, stream "
        "features, preauth with a fresh single-use token, XEP-0077 set (username, password), close. "
        f"Tokens come in rounds ({ROUND_SIZE['internal']} for internal storage, {ROUND_SIZE['sqlite']} for "
        "SQLite) created between timed phases; leftovers are deleted. Timed phases add up to "
        f"{p['invited_s']:g} s per repetition (the last registrations in flight complete); rate = "
        "registrations / timed seconds. With internal storage, a round adds on average "
        f"{ROUND_SIZE['internal'] // 2} records to the N in the store.",
        f"- **open registration**: a third server without invite modules, `allow_registration = true`, "
        f"same flow without preauth, {p['open_s']:g} s per repetition: the floor set by password "
        "hashing (SCRAM-SHA-1 PBKDF2) and account storage. It is measured in every (storage, N) cell, "
        "in the middle of the invited phases of each repetition (N doesn't apply to it), so each "
        "invited/open ratio compares phases of the same minutes.",
        "- Each repetition measures in the order A B B A (stock/ours, swapped every other "
        "repetition), each kind in two halves of the phase time placed symmetrically, so a drift of "
        "the machine within a repetition hits both alike; the open phase sits in the middle of the "
        "invited ones (A B open B A). A short warm-up precedes each repetition. Every loop is bounded "
        "by time and operation count.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
