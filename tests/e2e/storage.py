"""Read-only look at Prosody's storage, for every backend the suite runs on.

Internal storage keeps one Lua file per store and user under
`data/<percent-encoded host>/`; the SQL backends (SQLite, PostgreSQL) keep
everything in the table `prosody(host, user, store, key, type, value)`, with
user = '' for host-level rows. `server.options.storage` is "internal", "sql"
(SQLite) or "postgres"; `is_sql(server)` is true for both SQL backends.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from urllib.parse import quote

from prosody import HOST, Prosody, is_prosody_13


def _host_dir(server: Prosody, host: str):
    # Prosody percent-encodes every non-alphanumeric character, "." included.
    encoded = "".join(c if c.isalnum() else "%{:02x}".format(ord(c)) for c in host)
    return server.data_dir / encoded


def is_sql(server: Prosody) -> bool:
    """Whether the server stores in the `prosody` SQL table (SQLite or PostgreSQL)."""
    return server.options.storage in ("sql", "postgres")


def _rows(server: Prosody, query: str, *args) -> list[tuple]:
    """Rows of a read-only query (`?` placeholders) on the server's SQL storage;
    no rows when the database or table does not exist yet."""
    if server.options.storage == "postgres":
        return server.postgres.query(server.sql_database, query, *args)
    db = server.data_dir / "prosody.sqlite"
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{quote(str(db))}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(query, args).fetchall()
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return []
        raise
    finally:
        con.close()


def _sql(server: Prosody, query: str, *args) -> int:
    """The single number a `SELECT count(*) ...` returns (0 without a table)."""
    rows = _rows(server, query, *args)
    return int(rows[0][0]) if rows else 0


def account_exists(server: Prosody, username: str, host: str = HOST) -> bool:
    """Whether the accounts store holds `username@host`."""
    if is_sql(server):
        return _sql(server, "SELECT count(*) FROM prosody WHERE host=? AND user=? AND store='accounts'",
                    host, username) > 0
    return (_host_dir(server, host) / "accounts" / f"{username}.dat").exists()


def accounts(server: Prosody, host: str = HOST) -> set[str]:
    """All usernames in the accounts store of `host`."""
    if is_sql(server):
        rows = _rows(server, "SELECT DISTINCT user FROM prosody WHERE host=? AND store='accounts'",
                     host)
        return {r[0] for r in rows}
    folder = _host_dir(server, host) / "accounts"
    return {p.stem for p in folder.glob("*.dat")} if folder.exists() else set()


def invite_stored(server: Prosody, token: str, host: str = HOST, user: str | None = None) -> bool:
    """Whether mod_invites' store still holds `token`: the host-level record by default,
    or the entry in `user`'s own map (contact invites)."""
    if is_sql(server):
        return _sql(server, "SELECT count(*) FROM prosody WHERE host=? AND user=? "
                    "AND store='invite_token' AND key=?", host, user or "", token) > 0
    folder = _host_dir(server, host)
    path = folder / "invite_token" / f"{user}.dat" if user else folder / "invite_token.dat"
    try:
        return f'["{token}"]' in path.read_text()
    except FileNotFoundError:  # never written, or removed by the batch write that emptied it
        return False


def invite_gone(server: Prosody, token: str, host: str = HOST, user: str | None = None,
                timeout: float = 5.0) -> bool:
    """Whether mod_invites' store no longer holds `token` (as `invite_stored`), waiting up
    to `timeout` seconds: on internal storage used tokens leave the store with the next
    batch write (`invites_register_delete_delay`), while the module refuses them at once."""
    deadline = time.monotonic() + timeout
    while invite_stored(server, token, host, user):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _encode(name: str) -> str:
    # datamanager's path encoding: every non-alphanumeric character as %xx.
    return "".join(c if c.isalnum() else "%{:02x}".format(ord(c)) for c in name)


def _lua_file_table(path) -> dict | None:
    """A flat table in one of Prosody's internal .dat files (`return { ... };`),
    read with lua5.4 (the files are Lua code)."""
    script = r"""
        local f = assert(loadfile(arg[1], "t", {}))
        local t = f()
        if type(t) ~= "table" then return end
        for k, v in pairs(t) do
            io.write(type(k), "\30", tostring(k), "\30", type(v), "\30",
                type(v) == "table" and "" or tostring(v), "\31")
        end
    """
    result = subprocess.run(["lua5.4", "-", str(path)], input=script, capture_output=True,
                            text=True, timeout=30, check=True)
    table: dict = {}
    for entry in filter(None, result.stdout.split("\x1f")):
        ktype, key, vtype, value = entry.split("\x1e")
        table[float(key) if ktype == "number" else key] = _typed(vtype, value)
    return table


def _typed(kind: str, value):
    if kind == "boolean":
        return value == "true"
    if kind == "number":
        number = float(value)
        return int(number) if number.is_integer() else number
    if kind == "json":
        return json.loads(value)
    if kind == "table":
        return {}  # nested tables: present, contents not needed by any check
    return value


def keyval(server: Prosody, store: str, username: str, host: str = HOST) -> dict | None:
    """The keyval-store entry of `username` in `store` (e.g. "roles", "account_roles"),
    as a dict, or None when there is none."""
    if is_sql(server):
        rows = _rows(server, "SELECT key, type, value FROM prosody WHERE host=? AND user=? "
                     "AND store=?", host, username, store)
        return {key: _typed(kind, value) for key, kind, value in rows} if rows else None
    path = _host_dir(server, host) / store / f"{_encode(username)}.dat"
    return _lua_file_table(path) if path.exists() else None


def role_store() -> str:
    """Where account roles live: keyval `account_roles` on 13 (`{_default = "role",
    ["secondary"] = true}`), keyval `roles` on 0.12 (`{["role"] = true}`)."""
    return "account_roles" if is_prosody_13() else "roles"


def roles(server: Prosody, username: str, host: str = HOST) -> dict | None:
    """The stored roles of `username` in the store the running version reads."""
    return keyval(server, role_store(), username, host)


def primary_role(server: Prosody, username: str, host: str = HOST) -> str | None:
    """The role that makes the difference for `username`: on 13 the stored primary
    role (`_default`), on 0.12 the single role set in `roles` (None without one)."""
    stored = roles(server, username, host) or {}
    if is_prosody_13():
        return stored.get("_default")
    granted = sorted(k for k, v in stored.items() if v is True)
    return granted[0] if len(granted) == 1 else None
