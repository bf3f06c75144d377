"""XEP-0379 pre-authenticated roster subscription with contact invites (SPEC §4.5)."""

import client
import invites
import storage
from prosody import HOST
from xmpp_raw import NS_CLIENT, NS_PREAUTH, RawStream, q

ALICE = f"alice@{HOST}"
CAROL = f"carol@{HOST}"


def presence_from(sender: str, kind: str):
    return lambda s: (s.tag == q(NS_CLIENT, "presence") and s.type == kind
                      and s.get("from", "").split("/")[0] == sender)


def online(stream: RawStream, username: str) -> None:
    """Log in, fetch the roster (to receive roster pushes) and become available."""
    stream.login(username, "secret")
    stream.iq("<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>")
    stream.send("<presence/>")


def subscribe_with_token(to: str | None, token: str) -> str:
    to_attr = f" to='{to}'" if to else ""
    return (f"<presence type='subscribe'{to_attr}>"
            f"<preauth xmlns='{NS_PREAUTH}' token='{token}'/></presence>")


def test_contact_token_preapproves_subscription(server):
    """carol asks to subscribe to alice with alice's contact-invite token: alice's side
    approves at once and asks back (carol receives a `subscribe` from alice), alice's
    roster has carol (from, ask=subscribe), and the token is consumed.

    (mod_presence does not send carol a `subscribed` here: for a local contact who is
    online, rostermanager.is_contact_subscribed trusts carol's cached roster, where
    alice is still "none" — stock behaves the same.)"""
    for user in ("alice", "carol"):
        server.ctl("register", user, HOST, "secret")
    token = invites.contact(server, "alice")
    assert storage.invite_stored(server, token, user="alice")

    with RawStream(server.port) as carol:
        online(carol, "carol")
        carol.send(subscribe_with_token(ALICE, token))
        carol.wait_for(presence_from(ALICE, "subscribe"))

    roster = client.roster(server.port, "alice", "secret")
    assert roster.get(CAROL) == {"subscription": "from", "ask": "subscribe"}, roster
    assert not storage.invite_stored(server, token, user="alice")


def test_subscribe_without_to_is_ignored(server):
    """A token-carrying subscribe without `to`, or addressed to the sender's own bare JID
    (Prosody clears that `to`), is ignored: no traceback (stock crashes on 0.12.3), the
    stream keeps working, nothing lands in alice's roster and both tokens are kept."""
    for user in ("alice", "carol"):
        server.ctl("register", user, HOST, "secret")
    contact_only = invites.contact(server, "alice")
    with_registration = invites.contact(server, "alice", allow_registration=True)

    with RawStream(server.port) as carol:
        online(carol, "carol")
        for token in (contact_only, with_registration):
            carol.send(subscribe_with_token(None, token))
            carol.send(subscribe_with_token(CAROL, token))
        # Stanzas from one session are handled in order: a ping answer means all were.
        pong = carol.iq(f"<iq type='get' id='ping1' to='{HOST}'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert pong.type == "result", pong

    assert CAROL not in client.roster(server.port, "alice", "secret")
    assert storage.invite_stored(server, contact_only, user="alice")
    assert storage.invite_stored(server, with_registration, user="alice")
    assert storage.invite_stored(server, with_registration)
