"""A private PostgreSQL cluster for the `postgres` storage backend.

One cluster per pytest session, started with tools/matrix/postgres.sh in a
fresh directory under /tmp (not under pytest's tmp dir: /tmp/pytest-of-root is
0700 and the server runs as user `postgres`, which must traverse every parent
of its data directory). Every Prosody gets its own database, created empty
before the server first reads its config and dropped when the test ends, so
nothing leaks between tests — the same isolation the internal and SQLite
backends get from a data directory per server. The cluster is stopped and its
directory removed at session end.

Queries go through `psql` (installed with the server): as superuser `postgres`
over the cluster's unix socket (trust auth, root only) for CREATE/DROP
DATABASE, and as Prosody's own role `prosody` over TCP for reads, parameters
passed as psql variables (`:'v1'`), never spliced into the SQL.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
POSTGRES_SH = REPO_ROOT / "tools" / "matrix" / "postgres.sh"

# Columns of mod_storage_sql's table that are reserved words in PostgreSQL.
# `user` unquoted is CURRENT_USER there, so `WHERE user = ''` silently matches nothing.
_RESERVED_COLUMN_RE = re.compile(r'(?<!["\w])user(?!["\w])')


class PostgresError(RuntimeError):
    pass


class Cluster:
    """A running private cluster: `Cluster.start(port)`, then `create_database()`."""

    _counter = itertools.count()

    def __init__(self, directory: Path, facts: dict[str, str]):
        self.directory = directory
        self.host = facts["PGHOST"]
        self.port = int(facts["PGPORT"])
        self.user = facts["PGUSER"]
        self.password = facts["PGPASSWORD"]
        self.socket_dir = facts.get("PGSOCKETDIR") or str(directory)
        self.databases: set[str] = set()

    # -- lifecycle -----------------------------------------------------------

    @classmethod
    def start(cls, port: int) -> "Cluster":
        directory = Path(tempfile.mkdtemp(prefix="e2e-pg-", dir="/tmp"))
        result = subprocess.run(["bash", str(POSTGRES_SH), "start", str(directory), str(port)],
                                capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            subprocess.run(["bash", str(POSTGRES_SH), "stop", str(directory)],
                           capture_output=True, timeout=120)
            shutil.rmtree(directory, ignore_errors=True)
            raise PostgresError(f"postgres.sh start {directory} {port} failed "
                                f"({result.returncode}):\n{result.stderr}")
        facts = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
        return cls(directory, facts)

    def stop(self) -> None:
        """Stop the cluster (postgres.sh stop) and remove its directory."""
        subprocess.run(["bash", str(POSTGRES_SH), "stop", str(self.directory)],
                       capture_output=True, text=True, timeout=120)
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- databases -----------------------------------------------------------

    def create_database(self) -> str:
        """A new empty database owned by `prosody`; returns its name."""
        name = f"e2e_{os.getpid()}_{next(self._counter)}"
        # FILE_COPY: the template is tiny, and the default WAL_LOG strategy writes all
        # of it to WAL (slower for the hundreds of databases a run creates).
        self._admin(f"CREATE DATABASE {name} OWNER {self.user} TEMPLATE template0 "
                    f"ENCODING 'UTF8' STRATEGY FILE_COPY")
        self.databases.add(name)
        return name

    def drop_database(self, name: str) -> None:
        if name in self.databases:
            self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            self.databases.discard(name)

    def _admin(self, statement: str) -> None:
        result = subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.socket_dir,
             "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-c", statement],
            capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise PostgresError(f"psql {statement!r}: {result.stderr.strip()}")

    # -- Prosody's view --------------------------------------------------------

    def sql_config(self, database: str) -> str:
        """The `sql = { ... }` line of a Prosody config for `database`."""
        return (f'sql = {{ driver = "PostgreSQL", database = "{database}", '
                f'username = "{self.user}", password = "{self.password}", '
                f'host = "{self.host}", port = {self.port} }}')

    def query(self, database: str, sql: str, *args) -> list[tuple[str, ...]]:
        """Rows of a read-only query with `?` placeholders, as tuples of strings (NULL → None).

        Column names that are reserved words in PostgreSQL (`user`) are quoted, so
        the same query text serves SQLite and PostgreSQL. A missing `prosody` table
        (Prosody not started yet) gives no rows.
        """
        sql = _RESERVED_COLUMN_RE.sub('"user"', sql)
        pieces = sql.split("?")
        if len(pieces) - 1 != len(args):
            raise ValueError(f"{len(pieces) - 1} placeholders, {len(args)} arguments: {sql}")
        text = pieces[0] + "".join(f":'v{i}'" + rest for i, rest in enumerate(pieces[1:]))
        cmd = ["psql", "-X", "-q", "-A", "-t", "-F", "\x1f", "-R", "\x1e", "-P", "null=\x1dNULL",
               "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", database]
        for i, arg in enumerate(args):
            cmd += ["-v", f"v{i}={'' if arg is None else arg}"]
        result = subprocess.run(cmd, input=text.rstrip().rstrip(";") + ";\n", capture_output=True,
                                text=True, timeout=60,
                                env={**os.environ, "PGPASSWORD": self.password})
        if result.returncode != 0 or result.stderr.strip():
            if 'relation "prosody" does not exist' in result.stderr:
                return []
            raise PostgresError(f"psql on {database}: {result.stderr.strip()}\nquery: {text}")
        out = result.stdout.rstrip("\n")
        if not out:
            return []
        return [tuple(None if col == "\x1dNULL" else col for col in row.split("\x1f"))
                for row in out.split("\x1e") if row.strip("\n") != ""]
