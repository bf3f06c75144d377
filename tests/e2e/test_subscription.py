"""XEP-0379 pre-authenticated roster subscription with contact invites (SPEC §4.5)."""

import pytest

import client
import invites
import server_state
import storage
from prosody import HOST, OTHER_HOST
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
    assert storage.invite_gone(server, token, user="alice")


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


# -- XEP-0379 with the inviter online, other token kinds, odd addressing ---------------

ROSTER_NS = "jabber:iq:roster"


def roster_push(contact: str, **attrs):
    """A roster push whose item is `contact` with exactly these attributes (None = absent)."""
    def match(s):
        if s.tag != q(NS_CLIENT, "iq") or s.type != "set":
            return False
        item = s.el.find(f"{q(ROSTER_NS, 'query')}/{q(ROSTER_NS, 'item')}")
        return (item is not None and item.get("jid") == contact
                and all(item.get(k) == v for k, v in attrs.items()))
    return match


def settle(*streams: RawStream) -> None:
    """A ping round trip on every stream: all the server sent before is now received."""
    for i, stream in enumerate(streams):
        pong = stream.iq(f"<iq type='get' id='settle{i}' to='{HOST}'>"
                         "<ping xmlns='urn:xmpp:ping'/></iq>")
        assert pong.type == "result", pong


def subscribe_requests(stream: RawStream, sender: str) -> list:
    """Presence type=subscribe from `sender` among the stanzas received and not yet matched."""
    return [s for s in stream.pending if presence_from(sender, "subscribe")(s)]


@pytest.mark.parametrize("allow_registration", [False, True],
                         ids=["contact-only", "with-registration"])
def test_contact_token_with_inviter_online(prosody, allow_registration):
    """alice (the inviter) is online with her roster fetched; carol subscribes with alice's
    contact token. alice's clients get roster pushes (carol `from`, then `from` + ask) and
    never the subscription request; carol gets alice's `subscribe`, and — because alice is
    online, so mod_presence reads her live roster where carol is now `from` — `subscribed`
    too, with the matching roster push (`to`). The token's entries are all gone."""
    server = prosody.start(extra_modules=server_state.INSPECT)
    for user in ("alice", "carol"):
        server.ctl("register", user, HOST, "secret")
    token = invites.contact(server, "alice", allow_registration=allow_registration)
    assert storage.invite_stored(server, token, user="alice")
    assert storage.invite_stored(server, token) == allow_registration

    with RawStream(server.port) as alice, RawStream(server.port) as carol:
        online(alice, "alice")
        online(carol, "carol")
        settle(alice, carol)
        alice.pending.clear()
        carol.pending.clear()

        carol.send(subscribe_with_token(ALICE, token))
        carol.wait_for(roster_push(ALICE, subscription="none", ask="subscribe"))
        carol.wait_for(presence_from(ALICE, "subscribe"))
        carol.wait_for(presence_from(ALICE, "subscribed"))
        carol.wait_for(roster_push(ALICE, subscription="to", ask=None))

        alice.wait_for(roster_push(CAROL, subscription="from", ask=None))
        alice.wait_for(roster_push(CAROL, subscription="from", ask="subscribe"))
        settle(alice, carol)
        assert subscribe_requests(alice, CAROL) == [], [str(s) for s in alice.pending]

    assert server_state.roster(server, "alice")[CAROL] == \
        {"subscription": "from", "ask": "subscribe"}
    assert server_state.roster(server, "carol")[ALICE] == {"subscription": "to", "ask": None}
    assert storage.invite_gone(server, token, user="alice")
    assert storage.invite_gone(server, token)


def test_registration_token_with_inviter_offline(prosody):
    """A contact token that also allows registration works for an existing user too:
    carol (online) gets alice's `subscribe`; alice is offline, so mod_presence judges
    "already subscribed?" from carol's cached roster (alice still `none`) and sends no
    `subscribed` (Prosody's behaviour, stock alike). Both entries of the token are gone and
    alice finds carol (`from`, ask=subscribe) at her next login."""
    server = prosody.start(extra_modules=server_state.INSPECT)
    for user in ("alice", "carol"):
        server.ctl("register", user, HOST, "secret")
    token = invites.contact(server, "alice", allow_registration=True)

    with RawStream(server.port) as carol:
        online(carol, "carol")
        carol.send(subscribe_with_token(ALICE, token))
        carol.wait_for(presence_from(ALICE, "subscribe"))
        settle(carol)
        assert not [s for s in carol.pending if presence_from(ALICE, "subscribed")(s)], \
            [str(s) for s in carol.pending]

    assert storage.invite_gone(server, token, user="alice")
    assert storage.invite_gone(server, token)
    assert client.roster(server.port, "alice", "secret")[CAROL] == \
        {"subscription": "from", "ask": "subscribe"}


def _unknown(server):
    return "AAAAAAAAAAAAAAAAAAAAAAAA", []


def _account_only(server):
    token = invites.account(server)
    return token, [(token, None)]


def _other_users_contact(server):
    server.ctl("register", "bob", HOST, "secret")
    token = invites.contact(server, "bob", allow_registration=True)
    return token, [(token, None), (token, "bob")]


def _expired_contact(server):
    token = invites.contact(server, "alice", ttl=-60)
    return token, [(token, "alice")]


NOT_ALICES_TOKENS = {
    "unknown": _unknown,
    "account-only": _account_only,
    "other-users-contact": _other_users_contact,
    "expired-contact": _expired_contact,
}


@pytest.mark.parametrize("kind", NOT_ALICES_TOKENS)
def test_token_not_valid_for_inviter_is_ordinary_request(prosody, kind):
    """A token that is not a live contact invite of alice (unknown, an account invite, bob's
    contact invite, alice's expired one) changes nothing: alice's client receives carol's
    subscription request as usual, carol gets no `subscribe` back, alice's roster does not
    approve carol, and the token's stored entries are untouched."""
    server = prosody.start(extra_modules=server_state.INSPECT)
    for user in ("alice", "carol"):
        server.ctl("register", user, HOST, "secret")
    token, entries = NOT_ALICES_TOKENS[kind](server)
    for tok, user in entries:
        assert storage.invite_stored(server, tok, user=user)

    with RawStream(server.port) as alice, RawStream(server.port) as carol:
        online(alice, "alice")
        online(carol, "carol")
        carol.send(subscribe_with_token(ALICE, token))
        request = alice.wait_for(presence_from(CAROL, "subscribe"))
        assert request.get("to") == ALICE, request
        settle(carol, alice)
        assert subscribe_requests(carol, ALICE) == [], [str(s) for s in carol.pending]

    assert server_state.roster(server, "alice").get(CAROL, {}).get("subscription") in (None, "none")
    for tok, user in entries:
        assert storage.invite_stored(server, tok, user=user), (tok, user)


@pytest.mark.parametrize("to", ["nobody@" + HOST, "alice@" + OTHER_HOST],
                         ids=["unknown-local-user", "same-name-other-host"])
def test_token_to_unknown_user_is_ignored(prosody, to):
    """alice's tokens sent to a local user that does not exist, or to alice's namesake on
    another host of this server: no traceback, the stream keeps working, and both tokens
    (contact-only and with registration) stay stored."""
    server = prosody.start(extra_modules=server_state.INSPECT)
    for user in ("alice", "carol"):
        server.ctl("register", user, HOST, "secret")
    server.ctl("register", "alice", OTHER_HOST, "secret")
    contact_only = invites.contact(server, "alice")
    with_registration = invites.contact(server, "alice", allow_registration=True)

    with RawStream(server.port) as carol:
        online(carol, "carol")
        for token in (contact_only, with_registration):
            carol.send(subscribe_with_token(to, token))
        settle(carol)
        assert not [s for s in carol.pending if s.tag == q(NS_CLIENT, "presence")
                    and s.type in ("subscribe", "subscribed")], [str(s) for s in carol.pending]

    assert storage.invite_stored(server, contact_only, user="alice")
    assert storage.invite_stored(server, with_registration, user="alice")
    assert storage.invite_stored(server, with_registration)
    assert CAROL not in server_state.roster(server, "alice")


def test_token_kept_when_contact_already_subscribed(prosody):
    """Once carol is approved (alice's roster: `from`), a second contact token of alice
    sent by carol is not used: it stays stored (nothing more happens, SPEC §4.5)."""
    server = prosody.start(extra_modules=server_state.INSPECT)
    for user in ("alice", "carol"):
        server.ctl("register", user, HOST, "secret")
    first = invites.contact(server, "alice")
    second = invites.contact(server, "alice", allow_registration=True)

    with RawStream(server.port) as alice, RawStream(server.port) as carol:
        online(alice, "alice")
        online(carol, "carol")
        carol.send(subscribe_with_token(ALICE, first))
        carol.wait_for(presence_from(ALICE, "subscribe"))
        alice.wait_for(roster_push(CAROL, subscription="from", ask="subscribe"))
        settle(alice, carol)
        alice.pending.clear()

        carol.send(subscribe_with_token(ALICE, second))
        settle(carol, alice)
        assert subscribe_requests(alice, CAROL) == [], [str(s) for s in alice.pending]

    assert storage.invite_gone(server, first, user="alice")
    assert storage.invite_stored(server, second, user="alice")
    assert storage.invite_stored(server, second)
    assert server_state.roster(server, "alice")[CAROL]["subscription"] == "from"
