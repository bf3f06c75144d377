"""What the running server has stored, read through Prosody's own storage API
(the test-only mod_test_inspect, via the admin shell), so the same check works on
every storage backend and on Prosody 0.12 and 13. Servers must be started with
`extra_modules=INSPECT`.
"""

from __future__ import annotations

import json

from prosody import HOST, Prosody, is_prosody_13, lua

INSPECT = ["test_inspect"]


def _json(text: str):
    value = json.loads(text)
    # util.json encodes an empty table as {} or []: both mean "nothing".
    return value if value else {}


def roster(server: Prosody, username: str, host: str = HOST) -> dict[str, dict]:
    """The stored roster of `username@host`: {contact JID: {"subscription", "ask"}}."""
    return _json(server.shell(f"testinspect:roster({lua(host)}, {lua(username)})"))


def roles(server: Prosody, username: str, host: str = HOST) -> dict:
    """{"store": "roles" (0.12) | "account_roles" (13), "record": raw stored record or None,
    "roles": sorted role names the account was explicitly given}."""
    value = json.loads(server.shell(f"testinspect:roles({lua(host)}, {lua(username)})"))
    return {"store": value["store"], "record": value["record"] or None,
            "roles": list(value["roles"] or [])}


def is_admin(server: Prosody, username: str, host: str = HOST) -> bool:
    """usermanager.is_admin(username@host, host), asked inside the running server.
    On 13 is_admin() is deprecated and logs a stack traceback with every call (which the
    log check fails on): there the same answer comes from what it does, the JID's role
    being prosody:admin or prosody:operator."""
    if is_prosody_13():
        role = server.shell(f'>(require"core.usermanager".get_jid_role('
                            f'{lua(username + "@" + host)}, {lua(host)}) or {{}}).name')
        return role in ("prosody:admin", "prosody:operator")
    answer = server.shell(f'>require"core.usermanager".is_admin({lua(username + "@" + host)}, '
                          f'{lua(host)})')
    return answer == "true"
