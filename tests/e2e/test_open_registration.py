"""Servers that are not invite-only (SPEC §4.1 FIX, §4.3 step 2–3)."""

import client
import invites
import storage
from expect import (IBR_FEATURE, TOKEN_USED, assert_error, assert_invite_features,
                    assert_no_invite_features, assert_result)
from xmpp_raw import RawStream


def test_open_registration_still_honours_invites(prosody):
    """registration_invite_only = false with allow_registration = true: registration
    without an invite works, invites are advertised and still work, and a used token
    is consumed (single use applies here too)."""
    server = prosody.start(invite_only=False, allow_registration=True)
    token = invites.account(server)
    with RawStream(server.port) as s:
        s.open()
        assert_invite_features(s.feature_namespaces())
        assert_result(s.register("walkin", "secret"))
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        assert_result(s.register("invited", "secret"))
        assert_error(s.register("again", "secret"), "modify", "not-acceptable", TOKEN_USED)
    assert storage.accounts(server) == {"walkin", "invited"}
    assert storage.invite_gone(server, token)
    assert client.login(server.port, "walkin", "secret")
    assert client.login(server.port, "invited", "secret")


def test_no_invite_features_without_registration(prosody):
    """registration_invite_only = false and no allow_registration: in-band registration
    does not exist on the host, so the invite features are not advertised (stock
    advertises them anyway)."""
    server = prosody.start(invite_only=False)
    with RawStream(server.port) as s:
        s.open()
        features = s.feature_namespaces()
    assert IBR_FEATURE not in features, features
    assert_no_invite_features(features)
