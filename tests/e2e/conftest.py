"""Fixtures for the end-to-end suite: install the module, certificates, private Prosodys.

Environment:
  PROSODY, PROSODYCTL   binaries (default /usr/bin/prosody, /usr/bin/prosodyctl)
  E2E_STORAGE           comma list of storage backends (default "internal,sqlite";
                        also "postgres": a private cluster for the session, one
                        database per Prosody, see pgcluster.py)
  E2E_STOCK=1           run against Prosody's own mod_invites_register instead of
                        ours (to see which tests pin FIX behaviour); skips `make install`
  E2E_INSTALLED=1       run against the module Prosody finds by itself (an installed
                        package, e.g. our .deb in Prosody's module folder): no
                        `make install` and no plugin_paths entry for it
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from prosody import HOST, OTHER_HOST, TEST_PLUGINS, Prosody, ServerOptions  # noqa: E402
from prosody import PROSODY, free_port, make_install as harness_make_install  # noqa: E402
from prosody import prosody_version, stock_module  # noqa: E402

MODULE = "mod_invites_register"
LIBRARY = "invites_register.so"

# E2E_STORAGE names → the `storage` option the config gets.
STORAGES = {"internal": "internal", "sqlite": "sql", "sql": "sql", "postgres": "postgres"}


def use_stock() -> bool:
    return os.environ.get("E2E_STOCK", "") not in ("", "0")


def use_installed() -> bool:
    return os.environ.get("E2E_INSTALLED", "") not in ("", "0")


def pytest_generate_tests(metafunc):
    """Every test that takes `storage` runs once per backend in E2E_STORAGE."""
    if "storage" in metafunc.fixturenames:
        names = [n.strip() for n in os.environ.get("E2E_STORAGE", "internal,sqlite").split(",")
                 if n.strip()]
        unknown = [n for n in names if n not in STORAGES]
        if unknown:
            raise pytest.UsageError(f"E2E_STORAGE: unknown backend(s) {unknown}; use internal, sqlite, postgres")
        metafunc.parametrize("storage", [STORAGES[n] for n in names], ids=names)


def make_install(plugin_dir: Path) -> Path:
    """`make -C <repo> install PLUGIN_DIR=<plugin_dir>`; returns the module folder."""
    try:
        return harness_make_install(plugin_dir, MODULE, LIBRARY)
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def installed_plugins(tmp_path_factory) -> Path | None:
    """Our module installed into a fresh plugin dir; with E2E_STOCK=1 a copy of Prosody's
    own module instead (so that no other module of that name, e.g. our .deb installed
    beside Prosody's core modules, can stand in for it); with E2E_INSTALLED=1 none (the
    module Prosody finds in its own folders is under test)."""
    if use_installed():
        return None
    if use_stock():
        return stock_module(tmp_path_factory.mktemp("plugins-stock"))
    plugin_dir = tmp_path_factory.mktemp("plugins")
    make_install(plugin_dir)
    return plugin_dir


@pytest.fixture(scope="session")
def broken_plugins(tmp_path_factory) -> Path:
    """Our module installed, then its native library deleted (for the fail-closed test)."""
    if use_stock():
        pytest.skip("fail-closed behaviour needs our module")
    plugin_dir = tmp_path_factory.mktemp("plugins-broken")
    folder = make_install(plugin_dir)
    (folder / LIBRARY).unlink()
    return plugin_dir


@pytest.fixture(scope="session")
def certs_dir(tmp_path_factory) -> Path:
    """Self-signed EC P-256 certificates for both virtual hosts, named as Prosody looks them up."""
    folder = tmp_path_factory.mktemp("certs")
    for host in (HOST, OTHER_HOST):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "30", "-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host}",
             "-keyout", str(folder / f"{host}.key"), "-out", str(folder / f"{host}.crt")],
            check=True, capture_output=True, timeout=60)
    return folder


class ProsodyFactory:
    """Starts private Prosodys for one test and stops them all afterwards."""

    def __init__(self, storage: str, workdir: Path, plugin_paths: list[Path], certs_dir: Path,
                 postgres=None):
        self.storage = storage
        self.workdir = workdir
        self.plugin_paths = plugin_paths
        self.certs_dir = certs_dir
        self.postgres = postgres  # pgcluster.Cluster when storage == "postgres"
        self.servers: list[Prosody] = []

    def start(self, plugin_paths: list[Path] | None = None, **options) -> Prosody:
        """Start a server; keyword arguments are `ServerOptions` fields."""
        opts = ServerOptions(storage=self.storage, **options)
        workdir = self.workdir / f"prosody{len(self.servers)}"
        server = Prosody(workdir, plugin_paths or self.plugin_paths, self.certs_dir, opts)
        if opts.storage == "postgres":
            # Its own empty database, before anything renders the config.
            server.postgres = self.postgres
            server.sql_database = self.postgres.create_database()
        self.servers.append(server)
        return server.start()

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()

    def drop_databases(self) -> None:
        """Drop the PostgreSQL databases of this test's servers (after stop_all)."""
        for server in self.servers:
            if getattr(server, "sql_database", None) and self.postgres:
                self.postgres.drop_database(server.sql_database)

    def traceback_report(self) -> str:
        report = []
        for server in self.servers:
            lines = server.traceback_lines()
            if lines:
                report.append(f"{server.log_path}:\n" + "\n".join(lines))
        return "\n".join(report)


@pytest.fixture
def plugin_paths(installed_plugins) -> list[Path]:
    """plugin_paths for test configs: our installed module first, then the test-only plugins."""
    return ([installed_plugins] if installed_plugins else []) + [TEST_PLUGINS]


@pytest.fixture(scope="session")
def postgres_cluster():
    """A private PostgreSQL cluster for the whole session (only started when a test
    runs with storage `postgres`); stopped and removed at session end."""
    import pgcluster
    cluster = pgcluster.Cluster.start(free_port())
    yield cluster
    cluster.stop()


@pytest.fixture
def prosody(storage, tmp_path, plugin_paths, certs_dir, request):
    """Factory: `prosody.start(**ServerOptions fields)` → running `Prosody`."""
    cluster = request.getfixturevalue("postgres_cluster") if storage == "postgres" else None
    factory = ProsodyFactory(storage, tmp_path, plugin_paths, certs_dir, postgres=cluster)
    yield factory
    factory.stop_all()
    factory.drop_databases()


def pytest_report_header(config):
    """Which Prosody the run is against (from its source tree, never `prosody --version`)."""
    try:
        version = prosody_version()
    except RuntimeError as e:
        version = f"unknown ({e})"
    storages = os.environ.get("E2E_STORAGE", "internal,sqlite")
    return f"prosody: {version} ({PROSODY}); storage: {storages}"


@pytest.fixture
def server(prosody) -> Prosody:
    """The default server: plaintext, invite-only by default (option left unset)."""
    return prosody.start()


@pytest.fixture
def tls_server(prosody) -> Prosody:
    """A server that requires encryption and offers STARTTLS."""
    return prosody.start(encryption=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """After the test body: stop its servers and fail it if any log has a Lua traceback."""
    try:
        return (yield)
    finally:
        factory = item.funcargs.get("prosody")
        if isinstance(factory, ProsodyFactory):
            factory.stop_all()
            report = factory.traceback_report()
            if report:
                pytest.fail("Prosody logged a traceback:\n" + report, pytrace=False)
