"""A private Prosody: config, process, prosodyctl, admin socket, log checks (stdlib only).

Every server gets its own data directory, pidfile, admin socket, log file and a free c2s
port on 127.0.0.1. Nothing here touches 5222/5269, and only the pid started here is ever
signalled (SIGTERM, then SIGKILL of that pid if it hangs).

`Server` is the launcher; a subclass says what its config holds (`settings()`, `hosts`,
`storage`). The e2e suite's `Prosody` (tests/e2e/prosody.py) and the benchmark's servers
(bench/bench.py) are such subclasses.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from .xmpp import answers_streams

PROSODY = os.environ.get("PROSODY", "/usr/bin/prosody")
PROSODYCTL = os.environ.get("PROSODYCTL", "/usr/bin/prosodyctl")
REPO = Path(__file__).resolve().parent.parent.parent

STARTUP_TIMEOUT = 20.0
SHUTDOWN_TIMEOUT = 10.0

# -- which Prosody runs ----------------------------------------------------------
# Never by running `prosody --version` (that starts a real server). The launcher
# script names its source tree (`CFG_SOURCEDIR='/usr/lib/prosody';`, rewritten
# by tools/matrix/prosody13.sh for a prefix install), and every Prosody source
# tree has a `prosody.version` file next to core/ and util/. The started
# server's log line "Hello and welcome to Prosody version X" is checked against
# it (`Server.logged_version`).
_SOURCEDIR_RE = re.compile(r"""^\s*CFG_SOURCEDIR\s*=\s*['"]([^'"]+)['"]""", re.M)
_LOGGED_VERSION_RE = re.compile(r"Hello and welcome to Prosody version (\S+)")


def source_dirs(binary: str | None = None) -> list[Path]:
    """Where the Prosody that `binary` (default $PROSODY) launches may keep its Lua tree
    (core/, util/, modules/, prosody.version): the launcher's CFG_SOURCEDIR, then the
    launcher's own folder (a source checkout run in place, `./prosody`)."""
    binary = binary or PROSODY
    launcher = Path(binary).resolve()
    try:
        match = _SOURCEDIR_RE.search(launcher.read_text(errors="replace"))
    except OSError as e:
        raise RuntimeError(f"cannot read the Prosody launcher {binary}: {e}") from e
    return ([Path(match.group(1))] if match else []) + [launcher.parent]


def stock_module(dest: Path, name: str = "mod_invites_register") -> Path:
    """Prosody's own module `name` copied into the folder `dest`, for a first
    `plugin_paths` entry: then the server runs Prosody's module even where another one of
    that name is installed beside Prosody's core modules (e.g. our .deb). Returns `dest`."""
    for tree in source_dirs():
        original = tree / "modules" / f"{name}.lua"
        if original.is_file():
            Path(dest).mkdir(parents=True, exist_ok=True)
            shutil.copy(original, Path(dest) / original.name)
            return Path(dest)
    raise RuntimeError(f"Prosody's own {name}.lua not found in {[str(t) for t in source_dirs()]}")


def detect_version(binary: str | None = None) -> str:
    """The version string of the Prosody that `binary` (default $PROSODY) launches."""
    candidates = [tree / "prosody.version" for tree in source_dirs(binary)]
    for candidate in candidates:
        try:
            version = candidate.read_text().strip()
        except OSError:
            continue
        if version:
            return version
    raise RuntimeError(f"cannot tell the version of {binary or PROSODY}: none of "
                       f"{[str(c) for c in candidates]} is readable")


def version_tuple(version: str) -> tuple[int, ...]:
    """ "0.12.3" -> (0, 12, 3); "13.0.1" -> (13, 0, 1); trailing non-digits are ignored."""
    parts = []
    for piece in version.split("."):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


_version_cache: dict[str, str] = {}


def prosody_version() -> str:
    """Version string of $PROSODY (cached), e.g. "0.12.3" or "13.0.1"."""
    if PROSODY not in _version_cache:
        _version_cache[PROSODY] = detect_version(PROSODY)
    return _version_cache[PROSODY]


def is_prosody_13() -> bool:
    """True for Prosody 13.x and later: roles in `account_roles`, `mod_invites generate`
    deprecated, `prosodyctl shell invite create_reset` available."""
    return version_tuple(prosody_version()) >= (13,)


# -- log checks ------------------------------------------------------------------

# Lines that mean a Lua error escaped somewhere in the server.
# "Traceback[c2s]: ..." comes from a handler error, "stack traceback:" from a module-load error.
TRACEBACK_RE = re.compile(r"Traceback|stack traceback")

# Prosody 0.12.3's own shutdown race: when a client's close crosses our SIGTERM, after
# "Exiting with status code: 0" net/server_epoll.lua may raise "attempt to index a nil
# value (field 'conn')" with a stack traceback. Only that, after the shutdown began, and
# with nothing from our module in it, is not counted as a traceback.
SHUTDOWN_RACE_RE = re.compile(r"server_epoll\.lua:\d+: attempt to index a nil value \(field 'conn'\)")


def is_known_shutdown_race(after_exit: str) -> bool:
    return bool(SHUTDOWN_RACE_RE.search(after_exit)) and "invites_register" not in after_exit


def traceback_lines(text: str, shutdown: re.Pattern, context: int = 0) -> list[str]:
    """The traceback lines of a log `text`; those after the first match of `shutdown`
    only when they are not Prosody's known shutdown race. With `context`, each comes
    with the line before it and `context` lines after it, joined by " ⏎ "."""
    marker = shutdown.search(text)
    cut = marker.start() if marker else len(text)
    head, tail = text[:cut], text[cut:]
    lines = head.splitlines()
    counted = len(lines)
    if not is_known_shutdown_race(tail):
        lines += tail.splitlines()
        counted = len(lines)
    found = []
    for i, line in enumerate(lines[:counted]):
        if TRACEBACK_RE.search(line):
            found.append(" ⏎ ".join(lines[max(0, i - 1):i + context + 1]) if context else line)
    return found


# -- config ----------------------------------------------------------------------

def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_LUA_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_LUA_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _lua_string(value: str) -> str:
    out = []
    for ch in value:
        if ch in _LUA_ESCAPES:
            out.append(_LUA_ESCAPES[ch])
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\{ord(ch):03d}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def lua(value) -> str:
    """Render a Python value as a Lua literal (None, booleans, numbers, strings, lists,
    dicts with string keys)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _lua_string(value)
    if isinstance(value, (list, tuple)):
        return "{ " + ", ".join(lua(v) for v in value) + " }" if value else "{}"
    if isinstance(value, dict):
        items = [f"{k} = {lua(v)}" if _LUA_NAME_RE.match(k) else f"[{lua(k)}] = {lua(v)}"
                 for k, v in value.items()]
        return "{ " + "; ".join(items) + " }" if items else "{}"
    raise TypeError(f"no Lua literal for {value!r}")


SQLITE = {"driver": "SQLite3", "database": "prosody.sqlite"}


def make_install(plugin_dir: Path, module: str = "mod_invites_register",
                 library: str = "invites_register.so") -> Path:
    """`make -C <repo> install PLUGIN_DIR=<plugin_dir>`; returns the module folder.
    Raises RuntimeError with make's output when it fails or leaves a file out."""
    result = subprocess.run(["make", "-s", "-C", str(REPO), "install", f"PLUGIN_DIR={plugin_dir}"],
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"make install failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    folder = Path(plugin_dir) / module
    for name in (f"{module}.lua", library):
        if not (folder / name).is_file():
            raise RuntimeError(f"make install did not create {folder / name}")
    return folder


# -- the process -----------------------------------------------------------------

class Server:
    """One Prosody process with its own config and data directory.

    Subclasses give `settings()` (the config's top-level options; `private_settings()`
    has the ones every private server needs), and may set `hosts`, `storage` ("internal",
    "sql" or "sqlite" for SQLite), `sql` (the `sql = { ... }` table), `log_level`, or
    override `storage_lines()`.
    """

    hosts: tuple[str, ...] = ("example.test",)
    storage = "internal"
    sql: dict | None = None
    log_level = "debug"
    # Where the shutdown begins in the log (tracebacks after it may be Prosody's race).
    shutdown_marker = re.compile(r"Exiting with status code")

    def __init__(self, workdir: Path, *, data_dir: Path | None = None, log_path: Path | None = None,
                 certs_dir: Path | None = None, plugin_paths: list[Path] | None = None):
        self.workdir = Path(workdir)
        self.data_dir = data_dir or self.workdir / "data"
        self.config_path = self.workdir / "prosody.cfg.lua"
        self.log_path = log_path or self.data_dir / "prosody.log"
        self.console_path = self.workdir / "console.out"
        self.admin_socket = self.data_dir / "admin.sock"
        self.pidfile = self.data_dir / "prosody.pid"
        self.certs_dir = certs_dir or self.workdir / "certs"
        self.plugin_paths = list(plugin_paths or [])
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None  # Popen to the first answered stream
        self._console = None

    # -- configuration -------------------------------------------------

    def private_settings(self, modules: list[str]) -> dict[str, object]:
        """What every private server needs: its own files, loopback only, no s2s/HTTP."""
        return {
            "pidfile": str(self.pidfile),
            "data_path": str(self.data_dir),
            "certificates": str(self.certs_dir),
            "plugin_paths": [str(p) for p in self.plugin_paths],
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
        }

    def settings(self) -> dict[str, object]:
        raise NotImplementedError

    def render_config(self) -> str:
        lines = [f"-- generated by tools/harness/server.py for {self.workdir.name}"]
        lines += [f"{k} = {lua(v)}" for k, v in self.settings().items()]
        lines.append(f"log = {{ {self.log_level} = {lua(str(self.log_path))} }}")
        lines += self.storage_lines()
        lines.append("")
        lines += [f"VirtualHost {lua(host)}" for host in self.hosts]
        return "\n".join(lines) + "\n"

    def storage_lines(self) -> list[str]:
        """The config's storage lines: none for internal storage, SQLite for "sql" or
        "sqlite", `sql` (a dict) for anything else."""
        if self.storage == "internal":
            return []
        if self.storage in ("sql", "sqlite") or self.sql is not None:
            return ['storage = "sql"', f"sql = {lua(self.sql or SQLITE)}"]
        raise ValueError(f"unknown storage backend {self.storage!r}")

    def write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.certs_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.render_config())

    # -- process -------------------------------------------------------

    def start(self, timeout: float = STARTUP_TIMEOUT):
        """Start the server and return once it answers a stream (`startup_seconds`)."""
        self.write_config()
        self._console = open(self.console_path, "wb")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [PROSODY, "--config", str(self.config_path), "-F"],
            cwd=self.workdir, stdin=subprocess.DEVNULL,
            stdout=self._console, stderr=subprocess.STDOUT,
        )
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"prosody exited with {self.proc.returncode} during startup\n"
                    + self.console_output() + self.log_text()[-4000:])
            if answers_streams(self.port, self.hosts[0]):
                self.startup_seconds = time.monotonic() - started
                self._check_version()
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("prosody did not answer on its port in time\n" + self.log_text()[-4000:])

    def _check_version(self) -> None:
        """The started server must be the version its callers branch on."""
        logged = self.logged_version()
        if logged is not None and logged != prosody_version():
            self.stop()
            raise RuntimeError(f"{PROSODY} logged version {logged}, but its source tree "
                               f"says {prosody_version()}")

    def stop(self, settle: float = 0.0) -> None:
        """SIGTERM our own pid and wait; SIGKILL only that pid if it hangs. `settle`:
        seconds to wait first (lets the last client closes land before SIGTERM)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if settle:
                time.sleep(settle)
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

    def _proc_file(self, name: str) -> str:
        with open(f"/proc/{self.proc.pid}/{name}") as f:
            return f.read()

    def cpu_seconds(self) -> float:
        """utime + stime of the server process (it is one Lua process)."""
        fields = self._proc_file("stat").rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kb(self) -> int:
        """The server process's resident set size (VmRSS, KiB)."""
        for line in self._proc_file("status").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmRSS for pid {self.proc.pid}")

    # -- prosodyctl and the admin shell --------------------------------

    def ctl(self, *args: str, input: str | None = None, timeout: float = 30,
            check: bool = True) -> subprocess.CompletedProcess:
        """Run prosodyctl against this server's config (same data dir, same env)."""
        if not self.config_path.exists():
            self.write_config()
        result = subprocess.run(
            [PROSODYCTL, "--config", str(self.config_path), *args],
            cwd=self.workdir, input=input, capture_output=True, text=True, timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"prosodyctl {' '.join(args)} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}")
        return result

    def shell(self, command: str) -> str:
        """Run one admin-shell command on the running server (`prosodyctl shell`, through
        its admin socket); return the payload of its "OK: ..." or "Result: ..." line."""
        result = self.ctl("shell", command)
        out = result.stdout.strip().splitlines()
        for prefix in ("OK: ", "Result: "):
            if out and out[-1].startswith(prefix):
                return out[-1][len(prefix):]
        raise AssertionError(f"admin shell {command!r} said: {result.stdout!r} {result.stderr!r}")

    def lua_eval(self, code: str) -> str:
        """Evaluate Lua (joined into one line) inside the running server (admin shell `>`)."""
        return self.shell(">" + " ".join(code.split("\n")))

    def admin(self, timeout: float = 300.0) -> "AdminSocket":
        """A connection to the admin socket (no prosodyctl process per command)."""
        return AdminSocket(self.admin_socket, timeout)

    # -- logs ----------------------------------------------------------

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_text(self) -> str:
        return self._read(self.log_path)

    def console_output(self) -> str:
        return self._read(self.console_path)

    def logged_version(self) -> str | None:
        """The version from the log line "Hello and welcome to Prosody version X"."""
        match = _LOGGED_VERSION_RE.search(self.log_text())
        return match.group(1) if match else None

    def traceback_lines(self, context: int = 0) -> list[str]:
        """Lua tracebacks in the log and the console output (see `traceback_lines()`)."""
        return [line for text in (self.log_text(), self.console_output())
                for line in traceback_lines(text, self.shutdown_marker, context)]

    def log_lines(self, source: str | None = None, level: str | None = None) -> list[str]:
        """Log lines, optionally filtered by source (e.g. "example.test:invites_register") and level."""
        lines = []
        for line in self.log_text().splitlines():
            parts = line.split("\t")
            if len(parts) < 3:
                continue
            src = parts[0].split(" ")[-1]
            if source is not None and src != source:
                continue
            if level is not None and parts[1] != level:
                continue
            lines.append(line)
        return lines


class AdminSocket:
    """The admin shell over the server's admin socket (the protocol `prosodyctl shell`
    speaks), without a prosodyctl process per command."""

    RESULT_RE = re.compile(rb"<repl-result([^>]*?)(?:/>|>(.*?)</repl-result>)", re.S)

    def __init__(self, path: Path, timeout: float = 300.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.sock.sendall(b"<?xml version='1.0'?><stream:stream xmlns='xmpp:prosody.im/admin' "
                          b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
        self.buf = b""

    def __enter__(self) -> "AdminSocket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, command: str) -> str:
        """One command; its result without the "OK: " / "Result: " prefix. Raises
        RuntimeError when the shell reports an error."""
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

    def lua_eval(self, code: str) -> str:
        """Evaluate Lua (joined into one line) inside the server (admin shell `>`)."""
        return self.run(">" + " ".join(code.split("\n")))

    def close(self) -> None:
        try:
            self.sock.sendall(b"</stream:stream>")
            self.sock.close()
        except OSError:
            pass
