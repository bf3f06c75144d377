"""prosodyctl keeps working with the module enabled (the module must not pull server-only
dependencies into prosodyctl, SPEC §2)."""

import re

import client
import invites
import storage
from expect import assert_result
from prosody import HOST, is_prosody_13
from xmpp_raw import RawStream

URI = re.compile(r"^xmpp:example\.test\?register;preauth=[A-Za-z0-9_-]+$")


def assert_no_traceback(result) -> None:
    output = result.stdout + result.stderr
    assert "traceback" not in output.lower(), output


def assert_token_valid(server, token: str) -> None:
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))


def test_check_config(server):
    """`prosodyctl check config` passes with our module enabled."""
    result = server.ctl("check", "config", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_no_traceback(result)


def test_mod_invites_generate(server):
    """0.12: `prosodyctl mod_invites generate example.test` prints a URI whose token is
    accepted. 13: the command is deprecated, prints only a notice pointing at
    `prosodyctl shell help invite`, and makes no invite."""
    if is_prosody_13():
        result = server.ctl("mod_invites", "generate", HOST, check=False)
        assert_no_traceback(result)
        assert "deprecated" in result.stdout and "prosodyctl shell help invite" in result.stdout, \
            result.stdout
        assert "preauth=" not in result.stdout + result.stderr
        return
    uri = invites.generate(server)
    assert URI.match(uri), uri
    assert_token_valid(server, invites.token_from_uri(uri))


def test_shell_invite_create_account(server):
    """`prosodyctl shell invite create_account example.test` (admin socket of the running
    server) prints a URI whose token is accepted."""
    result = server.ctl("shell", "invite", "create_account", HOST)
    assert_no_traceback(result)
    uri = result.stdout.strip().splitlines()[-1].removeprefix("OK: ")
    assert URI.match(uri), result.stdout
    assert_token_valid(server, invites.token_from_uri(uri))


def test_adduser(server):
    """`prosodyctl adduser` (password twice on stdin) creates an account that can log in."""
    result = server.ctl("adduser", f"carol@{HOST}", input="pa55word\npa55word\n")
    assert_no_traceback(result)
    assert storage.account_exists(server, "carol")
    assert client.login(server.port, "carol", "pa55word")


def test_shell_create_account_role_flags(server):
    """Role flags of `prosodyctl shell invite create_account HOST ...` differ per version.
    13.0.1: `--admin` is refused ("Unknown parameter: --admin", exit 1, no invite); later
    13.0.x take it and make an admin invite (13.0.7 does). On every 13 `--role
    prosody:admin` makes an invite whose account becomes prosody:admin (account_roles).
    0.12: the admin shell takes no flags and silently ignores both (only `mod_invites
    generate --admin` makes an admin invite there): the account gets no role."""
    flagged = server.ctl("shell", "invite", "create_account", HOST, "--admin", check=False)
    assert_no_traceback(flagged)
    if is_prosody_13() and flagged.returncode != 0:
        assert "Unknown parameter: --admin" in flagged.stderr, flagged.stderr
        assert "preauth=" not in flagged.stdout
    else:
        assert flagged.returncode == 0, flagged.stderr
        token = invites.token_from_uri(invites.INVITE_URI_RE.findall(flagged.stdout)[-1])
        with RawStream(server.port) as s:
            s.open()
            assert_result(s.preauth(token))
            assert_result(s.register("flagged", "secret"))
        expected = "prosody:admin" if is_prosody_13() else None
        assert storage.primary_role(server, "flagged") == expected
    uri = invites.shell_uri(server, "invite", "create_account", HOST, "--role", "prosody:admin")
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(invites.token_from_uri(uri)))
        assert_result(s.register("chief", "secret"))
    assert storage.account_exists(server, "chief")
    expected = "prosody:admin" if is_prosody_13() else None
    assert storage.primary_role(server, "chief") == expected
