"""Contact (roster) invites that allow registration (SPEC §4.4): after the invitee
registers, inviter and invitee are mutually subscribed in both stored rosters, an
online inviter gets a roster push, and both of the invite's stored entries are gone."""

import client
import invites
import server_state
import storage
from expect import TOKEN_INVALID, TOKEN_USED, assert_error
from prosody import HOST
from xmpp_raw import NS_CLIENT, RawStream, q

INVITER = f"inviter@{HOST}"
NEWBIE = f"newbie@{HOST}"
BOTH = {"subscription": "both", "ask": None}


def start(prosody):
    return prosody.start(extra_modules=server_state.INSPECT)


def roster_push_for(jid: str):
    """A roster push (IQ set, jabber:iq:roster) whose item is `jid`."""
    def match(s):
        if s.tag != q(NS_CLIENT, "iq") or s.type != "set":
            return False
        item = s.el.find(f"{q('jabber:iq:roster', 'query')}/{q('jabber:iq:roster', 'item')}")
        return item is not None and item.get("jid") == jid
    return match


def ping(stream: RawStream, iq_id: str = "ping1") -> None:
    """Round trip on the stream: everything the server sent before is now received."""
    pong = stream.iq(f"<iq type='get' id='{iq_id}' to='{HOST}'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert pong.type == "result", pong


def make_contact_invite(server) -> str:
    server.ctl("register", "inviter", HOST, "secret")
    token = invites.contact(server, "inviter", allow_registration=True)
    assert storage.invite_stored(server, token)
    assert storage.invite_stored(server, token, user="inviter")
    return token


def register_newbie(server, token: str) -> None:
    result = client.register_with_invite(server.port, token, "newbie", "secret")
    assert (result.preauth_type, result.register_type, result.logged_in) == \
        ("result", "result", True), result


def assert_mutual_and_consumed(server, token: str) -> None:
    """Both stored rosters hold the other with `both`; host record and inviter entry gone."""
    assert server_state.roster(server, "inviter").get(NEWBIE) == BOTH, \
        server_state.roster(server, "inviter")
    assert server_state.roster(server, "newbie").get(INVITER) == BOTH, \
        server_state.roster(server, "newbie")
    assert storage.invite_gone(server, token)
    assert storage.invite_gone(server, token, user="inviter")


def test_online_inviter_receives_roster_push(prosody):
    """The inviter is online and has fetched the roster: registering the invitee pushes
    <item jid='newbie@host' subscription='both'/> (no ask) to the inviter's stream."""
    server = start(prosody)
    token = make_contact_invite(server)
    with RawStream(server.port) as inviter:
        inviter.login("inviter", "secret")
        assert inviter.iq("<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>"
                          ).type == "result"
        inviter.send("<presence/>")

        register_newbie(server, token)

        push = inviter.wait_for(roster_push_for(NEWBIE))
        item = push.el.find(f"{q('jabber:iq:roster', 'query')}/{q('jabber:iq:roster', 'item')}")
        assert item.get("subscription") == "both", push
        assert item.get("ask") is None, push
        assert push.get("from") in (None, INVITER), push
        # The roster is still consistent in the inviter's live session.
        reply = inviter.iq("<iq type='get' id='roster2'><query xmlns='jabber:iq:roster'/></iq>")
        items = {i.get("jid"): i.get("subscription")
                 for i in reply.el.iter(q("jabber:iq:roster", "item"))}
        assert items.get(NEWBIE) == "both", reply
    assert_mutual_and_consumed(server, token)


def test_online_inviter_without_roster_gets_no_push(prosody):
    """An inviter session that never requested the roster is not sent roster pushes
    (RFC 6121 §2.1.6); the stored rosters are mutual all the same."""
    server = start(prosody)
    token = make_contact_invite(server)
    with RawStream(server.port) as inviter:
        inviter.login("inviter", "secret")
        register_newbie(server, token)
        ping(inviter)
        pushes = [s for s in inviter.pending if roster_push_for(NEWBIE)(s)]
        assert pushes == [], pushes
    assert_mutual_and_consumed(server, token)


def test_offline_inviter_finds_contact_at_next_login(prosody):
    """The inviter is offline while the invitee registers: at the next login the roster
    fetch has the invitee with `both`, and so does the invitee's roster."""
    server = start(prosody)
    token = make_contact_invite(server)
    register_newbie(server, token)
    assert client.roster(server.port, "inviter", "secret").get(NEWBIE) == \
        {"subscription": "both", "ask": ""}  # slixmpp: "" = no ask
    assert client.roster(server.port, "newbie", "secret").get(INVITER) == \
        {"subscription": "both", "ask": ""}  # slixmpp: "" = no ask
    assert_mutual_and_consumed(server, token)


def test_contact_token_cannot_register_twice(prosody):
    """After the invitee registered, the roster token neither preauths again nor lets the
    same stream register a second account; the inviter's roster gains nobody else."""
    server = start(prosody)
    token = make_contact_invite(server)
    with RawStream(server.port) as s:
        s.open()
        assert s.preauth(token).type == "result"
        assert s.register("newbie", "secret").type == "result"
        assert_error(s.register("other", "secret"), "modify", "not-acceptable", TOKEN_USED)
    with RawStream(server.port) as s:
        s.open()
        assert_error(s.preauth(token), "cancel", "item-not-found", TOKEN_INVALID)
    assert storage.accounts(server) == {"inviter", "newbie"}
    assert set(server_state.roster(server, "inviter")) == {NEWBIE}
    assert_mutual_and_consumed(server, token)
