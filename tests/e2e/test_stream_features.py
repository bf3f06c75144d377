"""Stream features (SPEC §4.1): who is told that invites work here."""

from expect import assert_invite_features, assert_no_invite_features
from prosody import HOST
from xmpp_raw import NS_TLS, RawStream


def test_features_on_unauthenticated_plaintext_stream(server):
    """Encryption not required: an unauthenticated stream is offered both invite features,
    urn:xmpp:invite before urn:xmpp:ibr-token:0."""
    with RawStream(server.port) as s:
        s.open()
        assert_invite_features(s.feature_namespaces())


def test_no_features_after_login(server):
    """Once the stream is authenticated the invite features are gone."""
    server.ctl("register", "alice", HOST, "secret")
    with RawStream(server.port) as s:
        s.open()
        assert_invite_features(s.feature_namespaces())
        s.auth_plain("alice", "secret")
        features = s.feature_namespaces()
        assert ("urn:ietf:params:xml:ns:xmpp-bind", "bind") in features, features
        assert_no_invite_features(features)


def test_features_only_after_starttls_when_encryption_required(tls_server):
    """Encryption required: nothing before STARTTLS, both features (in order) after it."""
    with RawStream(tls_server.port) as s:
        s.open()
        before = s.feature_namespaces()
        assert (NS_TLS, "starttls") in before, before
        assert_no_invite_features(before)
        s.starttls()
        assert_invite_features(s.feature_namespaces())
