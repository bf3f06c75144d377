"""A private Prosody for one test: the shared launcher (tools/harness/server.py) with the
e2e suite's config — two virtual hosts, the test-only plugins, plaintext or STARTTLS,
internal, SQLite or PostgreSQL storage.

Every server gets its own data directory, pidfile, admin socket, log file and a
free c2s port on 127.0.0.1. Nothing here touches 5222/5269, and only the pid
started here is ever signalled.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from harness import server as _server  # noqa: E402
from harness.server import (PROSODY, PROSODYCTL, SHUTDOWN_RACE_RE, TRACEBACK_RE,  # noqa: E402,F401
                            detect_version, free_port, is_known_shutdown_race, is_prosody_13,
                            lua, make_install, prosody_version, stock_module, version_tuple)

TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"

HOST = "example.test"
OTHER_HOST = "other.test"

STARTUP_TIMEOUT = 15.0
SHUTDOWN_TIMEOUT = _server.SHUTDOWN_TIMEOUT


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


class Prosody(_server.Server):
    """One Prosody process with its own config and data directory."""

    hosts = (HOST, OTHER_HOST)

    # Storage "postgres": the session's pgcluster.Cluster and this server's own
    # database, both set by the `prosody` fixture before the config is rendered.
    postgres = None
    sql_database: str | None = None

    def __init__(self, workdir: Path, plugin_paths: list[Path], certs_dir: Path,
                 options: ServerOptions):
        super().__init__(workdir, certs_dir=certs_dir, plugin_paths=plugin_paths)
        self.options = options
        self.storage = options.storage

    def settings(self) -> dict[str, object]:
        o = self.options
        modules = list(BASE_MODULES)
        if o.encryption:
            modules.append("tls")
        modules += [m for m in o.extra_modules if m not in modules]
        settings = self.private_settings(modules)
        settings["invites_register_token_attempts"] = 1000
        # Batched deletes within a quarter second (default 2 s) keep the suite quick;
        # tests of the default leave it out (extra_config value None).
        settings["invites_register_delete_delay"] = 0.25
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
        return settings

    def storage_lines(self) -> list[str]:
        if self.storage == "postgres":
            if self.postgres is None or not self.sql_database:
                raise ValueError("storage 'postgres' needs a cluster and a database: "
                                 "start servers through the `prosody` fixture")
            return ['storage = "sql"', self.postgres.sql_config(self.sql_database)]
        return super().storage_lines()

    def start(self, timeout: float = STARTUP_TIMEOUT) -> "Prosody":
        return super().start(timeout)


def lua_eval(server: Prosody, code: str) -> str:
    """Evaluate Lua (joined into one line) inside the running server (admin shell `>`)."""
    return server.lua_eval(code)


def selected(request, marker: str) -> bool:
    """True when the run selected `marker` with -m (tests carrying it are skipped otherwise)."""
    return marker in (request.config.getoption("markexpr") or "")
