"""Fail closed (SPEC §2): without its native library the module refuses every
registration instead of leaving `allow_registration = true` wide open."""

from pathlib import Path

import storage
from expect import IBR_FEATURE, UNAVAILABLE, assert_error, assert_no_invite_features
from prosody import HOST, OTHER_HOST, TEST_PLUGINS
from xmpp_raw import RawStream


def test_missing_native_library_fails_closed(prosody, broken_plugins: Path):
    """Installed module with invites_register.so deleted, open registration configured:
    one error log line per host telling the admin to `make install`, no invite
    features, IBR refused with "Registration is temporarily unavailable", no account."""
    server = prosody.start(plugin_paths=[broken_plugins, TEST_PLUGINS],
                           invite_only=False, allow_registration=True)

    errors = server.log_lines(source=f"{HOST}:invites_register", level="error")
    assert len(errors) == 1, server.log_lines(level="error")
    assert "make install" in errors[0], errors[0]
    others = server.log_lines(source=f"{OTHER_HOST}:invites_register", level="error")
    assert len(others) <= 1, others

    with RawStream(server.port) as s:
        s.open()
        features = s.feature_namespaces()
        # IBR itself is on (allow_registration): without us it would be open to anyone.
        assert IBR_FEATURE in features, features
        assert_no_invite_features(features)
        assert_error(s.register("walkin", "secret"), "modify", "not-acceptable", UNAVAILABLE)
    assert not storage.account_exists(server, "walkin")
    assert storage.accounts(server) == set()
