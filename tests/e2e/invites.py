"""Making invites the way admins do: prosodyctl, the admin shell, and (for kinds
Prosody 0.12's command line cannot make) the test-only mod_test_invites, which
calls mod_invites' own API inside the server. The suite never writes invite
records itself.
"""

from __future__ import annotations

import re

from prosody import HOST, Prosody, lua

URI_RE = re.compile(r"^xmpp:\S*\?register;preauth=(?P<token>[^;\s]+)")
HOUR = 3600


def token_from_uri(uri: str) -> str:
    """The token of an `xmpp:...?register;preauth=TOKEN[;...]` URI."""
    match = URI_RE.match(uri.strip())
    assert match, f"not an invite URI: {uri!r}"
    return match.group("token")


def generate(server: Prosody, *flags: str, host: str = HOST) -> str:
    """`prosodyctl mod_invites generate HOST [flags]` (0.12); returns the printed URI."""
    result = server.ctl("mod_invites", "generate", host, *flags)
    lines = result.stdout.strip().splitlines()
    assert lines, f"mod_invites generate printed nothing; stderr: {result.stderr}"
    return lines[-1].strip()


def account(server: Prosody, username: str | None = None, ttl: int = HOUR,
            host: str = HOST) -> str:
    """Account invite (bound to `username` when given); returns the token."""
    return server.shell(f"testinvite:account({lua(host)}, {lua(username)}, {lua(ttl)})")


def expired(server: Prosody, host: str = HOST) -> str:
    """An account invite that expired a minute ago."""
    return account(server, ttl=-60, host=host)


def reset(server: Prosody, username: str, host: str = HOST) -> str:
    """Password reset invite via `prosodyctl mod_invites generate HOST --reset USER`."""
    return token_from_uri(generate(server, "--reset", username, host=host))


def contact(server: Prosody, inviter: str, allow_registration: bool = False,
            ttl: int = HOUR, host: str = HOST) -> str:
    """Contact (roster) invite from `inviter`, optionally allowing registration."""
    return server.shell(f"testinvite:contact({lua(host)}, {lua(inviter)}, "
                        f"{lua(allow_registration)}, {lua(ttl)})")


def reusable(server: Prosody, ttl: int = HOUR, host: str = HOST) -> str:
    """Group invite with an explicit ttl: mod_invites marks it reusable."""
    return server.shell(f"testinvite:group({lua(host)}, {{}}, {lua(ttl)})")
