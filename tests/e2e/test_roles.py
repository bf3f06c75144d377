"""Roles carried by invites (`additional_data.roles`, SPEC §4.4): `prosodyctl mod_invites
generate --admin / --role R` and list-shaped records made through mod_invites' API.

Prosody 0.12 keeps roles in keyval store `roles` as a set ({["prosody:admin"] = true});
13 keeps { _default = primary, [secondary] = true } in `account_roles`. The store is
read inside the server (mod_test_inspect), so the checks hold for every backend.
"""

import pytest

import invites
import server_state
from expect import assert_result
from prosody import HOST, is_prosody_13, lua
from xmpp_raw import RawStream


def start(prosody):
    return prosody.start(extra_modules=server_state.INSPECT)


def register(server, token: str, username: str) -> None:
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        assert_result(s.register(username, "secret"))


def assert_roles(server, username: str, names: list[str]) -> None:
    """`username` has exactly these explicit roles; on 0.12 stored in set form."""
    state = server_state.roles(server, username)
    assert state["roles"] == sorted(names), state
    if state["store"] == "roles":  # 0.12
        assert state["record"] == {name: True for name in names}, state


def account_with_data(server, additional_data: str) -> str:
    """An account invite whose additional_data is the given Lua expression."""
    return server.shell(f"testinvite:account_data({lua(HOST)}, nil, {additional_data}, 3600)")


def test_generate_admin(prosody):
    """`mod_invites generate HOST --admin`: the new account holds prosody:admin (0.12: the
    set {["prosody:admin"]=true} in store `roles`) and usermanager.is_admin says so."""
    server = start(prosody)
    register(server, invites.token_from_uri(invites.generate(server, "--admin")), "boss")
    assert_roles(server, "boss", ["prosody:admin"])
    assert server_state.is_admin(server, "boss")


@pytest.mark.parametrize("role", ["prosody:operator", "custom:moderator"])
def test_generate_role(prosody, role):
    """`mod_invites generate HOST --role R`: the new account holds exactly R (stored as a
    set on 0.12), whatever the role's name.
    13 (`shell invite create_account HOST --role R`): usermanager.set_user_role raises for
    a role it does not know (custom:moderator here): the registration still succeeds, the
    module logs the failure, and the account keeps the default role (nothing stored)."""
    server = start(prosody)
    register(server, invites.token_from_uri(invites.generate(server, "--role", role)), "staff")
    if is_prosody_13() and role == "custom:moderator":
        assert_roles(server, "staff", [])
        errors = server.log_lines(source=f"{HOST}:invites_register", level="error")
        assert any(role in line and "staff" in line for line in errors), errors
        return
    assert_roles(server, "staff", [role])


def test_plain_invite_grants_no_role(prosody):
    """An invite without roles stores no roles record and the account is no admin."""
    server = start(prosody)
    register(server, invites.token_from_uri(invites.generate(server)), "plain")
    state = server_state.roles(server, "plain")
    assert state["record"] is None and state["roles"] == [], state
    assert not server_state.is_admin(server, "plain")


def test_list_shaped_roles_end_in_set_form(prosody):
    """additional_data = { roles = { "prosody:admin" } } (a list, as 13's tools write it):
    on 0.12 the account ends with the set form {["prosody:admin"]=true} and is an admin
    (stock stores the list unchanged, which 0.12's is_admin does not understand)."""
    server = start(prosody)
    register(server, account_with_data(server, '{ roles = { "prosody:admin" } }'), "listed")
    assert_roles(server, "listed", ["prosody:admin"])
    assert server_state.is_admin(server, "listed")


def test_list_of_several_roles(prosody):
    """A list of two roles becomes {a=true, b=true} on 0.12 (13: primary + secondary role)."""
    server = start(prosody)
    token = account_with_data(server, '{ roles = { "prosody:admin", "prosody:operator" } }')
    register(server, token, "several")
    assert_roles(server, "several", ["prosody:admin", "prosody:operator"])
    assert server_state.is_admin(server, "several")


def test_roles_of_unexpected_shape_are_ignored(prosody):
    """roles given as a plain string: registration succeeds, nothing is stored as a role,
    the module logs that it ignored them, and no traceback."""
    server = start(prosody)
    register(server, account_with_data(server, '{ roles = "prosody:admin" }'), "oddity")
    state = server_state.roles(server, "oddity")
    assert state["record"] is None and state["roles"] == [], state
    assert not server_state.is_admin(server, "oddity")
    warnings = server.log_lines(source=f"{HOST}:invites_register", level="warn")
    assert any("roles" in line and "oddity" in line for line in warnings), warnings
