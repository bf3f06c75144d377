"""prosodyctl keeps working with the module enabled (the module must not pull server-only
dependencies into prosodyctl, SPEC §2)."""

import re

import client
import invites
import storage
from expect import assert_result
from prosody import HOST
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
    """`prosodyctl mod_invites generate example.test` prints a URI whose token is accepted."""
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
