"""Read-only look at Prosody's storage, for both backends the suite runs on.

Internal storage keeps one Lua file per store and user under
`data/<percent-encoded host>/`; the SQLite backend keeps everything in the
table `prosody(host, user, store, key, type, value)`.
"""

from __future__ import annotations

import sqlite3
from urllib.parse import quote

from prosody import HOST, Prosody


def _host_dir(server: Prosody, host: str):
    # Prosody percent-encodes every non-alphanumeric character, "." included.
    encoded = "".join(c if c.isalnum() else "%{:02x}".format(ord(c)) for c in host)
    return server.data_dir / encoded


def _sql(server: Prosody, query: str, *args) -> int:
    db = server.data_dir / "prosody.sqlite"
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{quote(str(db))}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(query, args).fetchone()[0]
    finally:
        con.close()


def account_exists(server: Prosody, username: str, host: str = HOST) -> bool:
    """Whether the accounts store holds `username@host`."""
    if server.options.storage == "sql":
        return _sql(server, "SELECT count(*) FROM prosody WHERE host=? AND user=? AND store='accounts'",
                    host, username) > 0
    return (_host_dir(server, host) / "accounts" / f"{username}.dat").exists()


def accounts(server: Prosody, host: str = HOST) -> set[str]:
    """All usernames in the accounts store of `host`."""
    if server.options.storage == "sql":
        db = server.data_dir / "prosody.sqlite"
        if not db.exists():
            return set()
        con = sqlite3.connect(f"file:{quote(str(db))}?mode=ro", uri=True, timeout=5)
        try:
            rows = con.execute("SELECT DISTINCT user FROM prosody WHERE host=? AND store='accounts'",
                               (host,)).fetchall()
        finally:
            con.close()
        return {r[0] for r in rows}
    folder = _host_dir(server, host) / "accounts"
    return {p.stem for p in folder.glob("*.dat")} if folder.exists() else set()


def invite_stored(server: Prosody, token: str, host: str = HOST, user: str | None = None) -> bool:
    """Whether mod_invites' store still holds `token`: the host-level record by default,
    or the entry in `user`'s own map (contact invites)."""
    if server.options.storage == "sql":
        return _sql(server, "SELECT count(*) FROM prosody WHERE host=? AND user=? "
                    "AND store='invite_token' AND key=?", host, user or "", token) > 0
    folder = _host_dir(server, host)
    path = folder / "invite_token" / f"{user}.dat" if user else folder / "invite_token.dat"
    return path.exists() and f'["{token}"]' in path.read_text()
