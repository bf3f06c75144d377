"""Registrations through a web/API-style front-end (the test-only mod_test_frontend):
the invite is validated with mod_invites' own `get(token)` and handed to
`user-registering` / `user-registered` as `validated_invite`, without in-band
registration. Servers must be started with `extra_modules=FRONTEND`.
"""

from __future__ import annotations

from prosody import HOST, Prosody, lua

FRONTEND = ["test_frontend"]

REGISTERED = "registered"


def register(server: Prosody, token: str, username: str, password: str,
             ip: str | None = None, host: str = HOST) -> str:
    """Validate `token` and register at once; "registered", "refused: <reason>",
    "invalid: <mod_invites error>", "exists" or "failed: <error>"."""
    return server.shell(f"testfrontend:register({lua(host)}, {lua(token)}, {lua(username)}, "
                        f"{lua(password)}, {lua(ip)})")


def open_form(server: Prosody, token: str, host: str = HOST) -> str:
    """Validate `token` as a page showing the invite does; returns a form id
    (or "invalid: <error>")."""
    return server.shell(f"testfrontend:open({lua(host)}, {lua(token)})")


def submit(server: Prosody, form: str, username: str, password: str,
           ip: str | None = None, host: str | None = None) -> str:
    """Submit a form opened earlier (the invite object validated then is used); `host`
    registers on another host than the one the invite was validated on."""
    return server.shell(f"testfrontend:submit({lua(form)}, {lua(username)}, {lua(password)}, "
                        f"{lua(ip)}, {lua(host)})")
