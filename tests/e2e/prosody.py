"""A private Prosody for one test: config, process, prosodyctl, log checks.

Every server gets its own data directory, pidfile, admin socket, log file and a
free c2s port on 127.0.0.1. Nothing here touches 5222/5269, and only the pid
started here is ever signalled.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PROSODY = os.environ.get("PROSODY", "/usr/bin/prosody")
PROSODYCTL = os.environ.get("PROSODYCTL", "/usr/bin/prosodyctl")

# -- which Prosody is under test ----------------------------------------------
# Never by running `prosody --version` (that starts a real server). The launcher
# script names its source tree (`CFG_SOURCEDIR='/usr/lib/prosody';`, rewritten
# by tools/matrix/prosody13.sh for a prefix install), and every Prosody source
# tree has a `prosody.version` file next to core/ and util/. The started
# server's log line "Hello and welcome to Prosody version X" is checked against
# it (`Prosody.logged_version`).
_SOURCEDIR_RE = re.compile(r"""^\s*CFG_SOURCEDIR\s*=\s*['"]([^'"]+)['"]""", re.M)
_LOGGED_VERSION_RE = re.compile(r"Hello and welcome to Prosody version (\S+)")


def detect_version(binary: str | None = None) -> str:
    """The version string of the Prosody that `binary` (default $PROSODY) launches."""
    binary = binary or PROSODY
    launcher = Path(binary).resolve()
    candidates = []
    try:
        match = _SOURCEDIR_RE.search(launcher.read_text(errors="replace"))
    except OSError as e:
        raise RuntimeError(f"cannot read the Prosody launcher {binary}: {e}") from e
    if match:
        candidates.append(Path(match.group(1)) / "prosody.version")
    # A source checkout run in place (`./prosody`) keeps prosody.version beside it.
    candidates.append(launcher.parent / "prosody.version")
    for candidate in candidates:
        try:
            version = candidate.read_text().strip()
        except OSError:
            continue
        if version:
            return version
    raise RuntimeError(f"cannot tell the version of {binary}: none of "
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

TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"

HOST = "example.test"
OTHER_HOST = "other.test"

# Lines that mean a Lua error escaped somewhere in the server.
# "Traceback[c2s]: ..." comes from a handler error, "stack traceback:" from a module-load error.
TRACEBACK_RE = re.compile(r"Traceback|stack traceback")

# Prosody 0.12.3's own shutdown race: when a client's close crosses our SIGTERM, after
# "Exiting with status code: 0" net/server_epoll.lua may raise "attempt to index a nil
# value (field 'conn')" with a stack traceback. Only that, after exit, and with nothing
# from our module in it, is not counted as a traceback.
SHUTDOWN_RACE_RE = re.compile(r"server_epoll\.lua:\d+: attempt to index a nil value \(field 'conn'\)")


def is_known_shutdown_race(after_exit: str) -> bool:
    return bool(SHUTDOWN_RACE_RE.search(after_exit)) and "invites_register" not in after_exit


STARTUP_TIMEOUT = 15.0
SHUTDOWN_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lua(value) -> str:
    """Render a Python value as a Lua literal (strings, numbers, booleans, lists)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "{ " + ", ".join(lua(v) for v in value) + " }"
    raise TypeError(f"no Lua literal for {value!r}")


@dataclass
class ServerOptions:
    """What varies between test configurations.

    `invite_only` / `allow_registration`: None leaves the option out of the config
    (so the module's default applies). `encryption` makes a server that requires
    encryption on c2s and offers STARTTLS; otherwise plaintext with PLAIN allowed.
    """

    storage: str = "internal"
    encryption: bool = False
    invite_only: bool | None = None
    allow_registration: bool | None = None
    extra_config: dict[str, object] = field(default_factory=dict)
    # Appended to modules_enabled (e.g. test-only plugins such as "test_frontend").
    extra_modules: list[str] = field(default_factory=list)


# A typical server's modules. "register" is in Prosody's default config: it loads
# IBR only with allow_registration = true (invite-only mode loads IBR itself).
# "test_invites" is the test-only helper in tests/e2e/plugins.
BASE_MODULES = [
    "roster",
    "saslauth",
    "disco",
    "ping",
    "register",
    "admin_shell",
    "invites",
    "invites_register",
    "test_invites",
]


class Prosody:
    """One Prosody process with its own config and data directory."""

    # Storage "postgres": the session's pgcluster.Cluster and this server's own
    # database, both set by the `prosody` fixture before the config is rendered.
    postgres = None
    sql_database: str | None = None

    def __init__(self, workdir: Path, plugin_paths: list[Path], certs_dir: Path,
                 options: ServerOptions):
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.config_path = workdir / "prosody.cfg.lua"
        self.log_path = self.data_dir / "prosody.log"
        self.console_path = workdir / "console.out"
        self.admin_socket = self.data_dir / "admin.sock"
        self.pidfile = self.data_dir / "prosody.pid"
        self.plugin_paths = plugin_paths
        self.certs_dir = certs_dir
        self.options = options
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._console = None

    # -- configuration -------------------------------------------------

    def render_config(self) -> str:
        o = self.options
        modules = list(BASE_MODULES)
        if o.encryption:
            modules.append("tls")
        modules += [m for m in o.extra_modules if m not in modules]
        settings: dict[str, object] = {
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
            "invites_register_token_attempts": 1000,
            # Batched deletes within a quarter second (default 2 s) keep the suite quick;
            # tests of the default leave it out (extra_config value None).
            "invites_register_delete_delay": 0.25,
        }
        if o.encryption:
            settings["c2s_require_encryption"] = True
        else:
            settings["c2s_require_encryption"] = False
            settings["allow_unencrypted_plain_auth"] = True
        if o.invite_only is not None:
            settings["registration_invite_only"] = o.invite_only
        if o.allow_registration is not None:
            settings["allow_registration"] = o.allow_registration
        settings.update(o.extra_config)

        lines = [f"-- generated by tests/e2e/prosody.py for {self.workdir.name}"]
        lines += [f"{k} = {lua(v)}" for k, v in settings.items()]
        lines.append(f'log = {{ debug = {lua(str(self.log_path))} }}')
        if o.storage == "sql":
            lines.append('storage = "sql"')
            lines.append('sql = { driver = "SQLite3", database = "prosody.sqlite" }')
        elif o.storage == "postgres":
            if self.postgres is None or not self.sql_database:
                raise ValueError("storage 'postgres' needs a cluster and a database: "
                                 "start servers through the `prosody` fixture")
            lines.append('storage = "sql"')
            lines.append(self.postgres.sql_config(self.sql_database))
        elif o.storage != "internal":
            raise ValueError(f"unknown storage backend {o.storage!r}")
        lines.append("")
        lines.append(f"VirtualHost {lua(HOST)}")
        lines.append(f"VirtualHost {lua(OTHER_HOST)}")
        return "\n".join(lines) + "\n"

    def write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.render_config())

    # -- process -----------------------------------------------------

    def start(self) -> "Prosody":
        self.write_config()
        self._console = open(self.console_path, "wb")
        self.proc = subprocess.Popen(
            [PROSODY, "--config", str(self.config_path), "-F"],
            cwd=self.workdir, stdin=subprocess.DEVNULL,
            stdout=self._console, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"prosody exited with {self.proc.returncode} during startup\n"
                    + self.console_output() + self.log_text()[-4000:])
            if self._answers_streams():
                self._check_version()
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("prosody did not answer on its port in time\n" + self.log_text()[-4000:])

    def _answers_streams(self) -> bool:
        """True once the server answers a stream with features.

        The c2s port starts listening while hosts are still loading, and the kernel
        accepts connections before the event loop runs; only a reply proves that
        startup (every host and module) is complete.
        """
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(f"<?xml version='1.0'?><stream:stream to='{HOST}' xmlns='jabber:client' "
                          "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>".encode())
                received = b""
                while b"</stream:features>" not in received and b"<stream:features/>" not in received:
                    data = s.recv(65536)
                    if not data:
                        return False
                    received += data
                s.sendall(b"</stream:stream>")
                return True
        except OSError:
            return False

    def _check_version(self) -> None:
        """The started server must be the version the suite branches on."""
        logged = self.logged_version()
        if logged is not None and logged != prosody_version():
            self.stop()
            raise RuntimeError(f"{PROSODY} logged version {logged}, but its source tree "
                               f"says {prosody_version()}")

    def stop(self) -> None:
        """SIGTERM our own pid and wait; SIGKILL only that pid if it hangs."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
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

    # -- prosodyctl ----------------------------------------------------

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
        """Run one admin-shell command on the running server (through its admin socket);
        return the payload of its "OK: ..." or "Result: ..." line."""
        result = self.ctl("shell", command)
        out = result.stdout.strip().splitlines()
        for prefix in ("OK: ", "Result: "):
            if out and out[-1].startswith(prefix):
                return out[-1][len(prefix):]
        raise AssertionError(f"admin shell {command!r} said: {result.stdout!r} {result.stderr!r}")

    # -- logs ------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def logged_version(self) -> str | None:
        """The version from the log line "Hello and welcome to Prosody version X"."""
        match = _LOGGED_VERSION_RE.search(self.log_text())
        return match.group(1) if match else None

    def console_output(self) -> str:
        try:
            return self.console_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def traceback_lines(self) -> list[str]:
        lines = []
        for text in (self.log_text(), self.console_output()):
            head, _, tail = text.partition("Exiting with status code")
            lines += [line for line in head.splitlines() if TRACEBACK_RE.search(line)]
            after = [line for line in tail.splitlines() if TRACEBACK_RE.search(line)]
            if after and not is_known_shutdown_race(tail):
                lines += after
        return lines

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
