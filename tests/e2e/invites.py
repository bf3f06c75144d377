"""Making invites the way admins do: prosodyctl, the admin shell, and (for kinds
Prosody 0.12's command line cannot make) the test-only mod_test_invites, which
calls mod_invites' own API inside the server. The suite never writes invite
records itself.
"""

from __future__ import annotations

import re

import storage
from prosody import HOST, Prosody, is_prosody_13, lua

URI_RE = re.compile(r"^xmpp:\S*\?register;preauth=(?P<token>[^;\s]+)")
HOUR = 3600


def token_from_uri(uri: str) -> str:
    """The token of an `xmpp:...?register;preauth=TOKEN[;...]` URI."""
    match = URI_RE.match(uri.strip())
    assert match, f"not an invite URI: {uri!r}"
    return match.group("token")


def generate(server: Prosody, *flags: str, host: str = HOST) -> str:
    """`prosodyctl mod_invites generate HOST [flags]` (0.12); returns the printed URI.

    On 13 that command only prints a deprecation notice (test_prosodyctl pins that), so
    the same request goes to its replacement, the admin shell (see generate_13): the
    result is the invite an admin of that version gets for the same intent. Mind the one
    difference in the record: 0.12 stores `--role R` / `--admin` as the set {R = true},
    13 as the list {R}.
    """
    if is_prosody_13():
        return shell_uri(server, *generate_13(flags, host))
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
    """Password reset invite from the command line (`mod_invites generate HOST --reset USER`
    on 0.12, `shell invite create_reset USER@HOST` on 13): see admin_reset."""
    return admin_reset(server, username, host)


def contact(server: Prosody, inviter: str, allow_registration: bool = False,
            ttl: int = HOUR, host: str = HOST) -> str:
    """Contact (roster) invite from `inviter`, optionally allowing registration."""
    return server.shell(f"testinvite:contact({lua(host)}, {lua(inviter)}, "
                        f"{lua(allow_registration)}, {lua(ttl)})")


def reusable(server: Prosody, ttl: int = HOUR, host: str = HOST) -> str:
    """Group invite with an explicit ttl: mod_invites marks it reusable."""
    return server.shell(f"testinvite:group({lua(host)}, {{}}, {lua(ttl)})")


# -- the admin's command line, per Prosody version ------------------------------
# 0.12: `prosodyctl mod_invites generate HOST [--admin|--role R|--reset USER]`.
# 13: `mod_invites generate` only prints a deprecation notice; the admin shell's
# `invite create_account HOST [--role R]` / `invite create_reset USER@HOST` replace it
# (they talk to the running server over its admin socket). 13 has no `--admin`.

INVITE_URI_RE = re.compile(r"xmpp:\S*\?(?:register|roster);preauth=[^;\s]+\S*")


def shell_uri(server: Prosody, *words: str) -> str:
    """Run `prosodyctl shell WORDS...` and return the invite URI it printed."""
    result = server.ctl("shell", *words)
    uris = INVITE_URI_RE.findall(result.stdout)
    assert uris, f"prosodyctl shell {' '.join(words)} printed no invite URI: " \
                 f"{result.stdout!r} {result.stderr!r}"
    return uris[-1]


def admin_account_uri(server: Prosody, role: str | None = None, host: str = HOST) -> str:
    """An account invite the way an admin makes one on this version (optionally granting
    `role`); returns the printed URI."""
    if is_prosody_13():
        return shell_uri(server, "invite", "create_account", host,
                         *(("--role", role) if role else ()))
    return generate(server, *(("--role", role) if role else ()), host=host)


def admin_account(server: Prosody, role: str | None = None, host: str = HOST) -> str:
    """Token of `admin_account_uri`."""
    return token_from_uri(admin_account_uri(server, role, host))


def admin_reset(server: Prosody, username: str, host: str = HOST) -> str:
    """Password reset invite from the command line: `mod_invites generate HOST --reset USER`
    on 0.12, `shell invite create_reset USER@HOST` on 13; returns the token."""
    if is_prosody_13():
        return token_from_uri(shell_uri(server, "invite", "create_reset", f"{username}@{host}"))
    return token_from_uri(generate(server, "--reset", username, host=host))


def generate_13(flags: tuple[str, ...] | list[str], host: str = HOST) -> list[str]:
    """The `prosodyctl shell` words that do on 13 what `mod_invites generate HOST FLAGS`
    does on 0.12: `--reset USER` → `invite create_reset USER@HOST`; otherwise `invite
    create_account HOST`, with `--role R` kept and `--admin` as `--role prosody:admin`
    (13.0.1 rejects --admin). As on 0.12, of several --role/--admin the last one wins."""
    flags = list(flags)
    reset = role = None
    groups: list[str] = []
    while flags:
        flag = flags.pop(0)
        if flag == "--reset" and flags:
            reset = flags.pop(0)
        elif flag == "--admin":
            role = "prosody:admin"
        elif flag == "--role" and flags:
            role = flags.pop(0)
        elif flag in ("--group", "-g") and flags:
            groups += ["--group", flags.pop(0)]
        else:
            raise ValueError(f"mod_invites generate flag {flag!r} has no 13 equivalent here")
    if reset is not None:
        return ["invite", "create_reset", f"{reset}@{host}"]
    return ["invite", "create_account", host, *(["--role", role] if role else []), *groups]


def delete(server: Prosody, token: str, host: str = HOST) -> None:
    """Delete one host record the way an admin does: 13's `prosodyctl shell invite delete
    HOST TOKEN`; on 0.12 (no such command) mod_invites' own `delete_account_invite(token)`
    through the admin shell. Both write the store without telling our module."""
    if is_prosody_13():
        out = server.ctl("shell", "invite", "delete", host, token).stdout
        assert "Invitation deleted" in out, out
    else:
        server.shell(f'>require"core.modulemanager".get_module({lua(host)}, "invites")'
                     f'.delete_account_invite({lua(token)})')
    assert not storage.invite_stored(server, token, host=host)
