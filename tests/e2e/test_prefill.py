"""The pre-filled register form (SPEC §7.3 F14, issue 13 item 3): on a stream whose
validated invite is bound to U, the XEP-0077 form returned for
`<iq type='get'><query xmlns='jabber:iq:register'/></iq>` has U in the legacy
`<username>` element and as the value of the data form's `username` field. Any other
stream gets mod_register_ibr's form unchanged (its shared template is never modified)."""

from __future__ import annotations

import invites
import storage
from expect import assert_result
from prosody import HOST
from xmpp_raw import NS_REGISTER, RawStream, Stanza, q

NS_DATA = "jabber:x:data"


def form_username(reply: Stanza) -> tuple[str | None, list[str]]:
    """(text of the legacy <username/>, values of the data form's username field)."""
    assert_result(reply)
    query = reply.el.find(q(NS_REGISTER, "query"))
    assert query is not None, f"no register query in {reply}"
    legacy = query.find(q(NS_REGISTER, "username"))
    assert legacy is not None, f"no legacy <username/> in {reply}"
    form = query.find(q(NS_DATA, "x"))
    assert form is not None, f"no data form in {reply}"
    fields = [f for f in form.findall(q(NS_DATA, "field")) if f.get("var") == "username"]
    assert len(fields) == 1, f"expected one username field in {reply}"
    values = [v.text or "" for v in fields[0].findall(q(NS_DATA, "value"))]
    return legacy.text or None, values


def assert_empty_form(reply: Stanza) -> None:
    assert form_username(reply) == (None, []), f"form not pristine: {reply}"


def test_bound_invite_prefills_form(server):
    """After a preauth with an invite bound to alice the form shows alice (both places);
    the form before the preauth is empty; the registration then succeeds."""
    token = invites.account(server, "alice")
    with RawStream(server.port) as s:
        s.open()
        assert_empty_form(s.register_form())
        assert_result(s.preauth(token))
        assert form_username(s.register_form()) == ("alice", ["alice"])
        # Asked again: still there (and still one value, not two).
        assert form_username(s.register_form()) == ("alice", ["alice"])
        assert_result(s.register("alice", "secret"))
    assert storage.accounts(server) == {"alice"}


def test_unbound_invite_leaves_form_unchanged(server):
    """An unbound account invite, a reusable group invite and a roster invite (whose jid
    names the inviter) pre-fill nothing."""
    server.ctl("register", "inviter", HOST, "secret")
    for token in (invites.account(server), invites.reusable(server),
                  invites.contact(server, "inviter", allow_registration=True)):
        with RawStream(server.port) as s:
            s.open()
            assert_result(s.preauth(token))
            assert_empty_form(s.register_form())


def test_stream_without_invite_after_bound_one(server):
    """The template is not modified: streams without an invite, or with an unbound one,
    get the empty form after (and while) another stream got a pre-filled one."""
    bound = invites.account(server, "alice")
    plain = invites.account(server)
    with RawStream(server.port) as a, RawStream(server.port) as b, \
            RawStream(server.port) as c:
        a.open()
        b.open()
        c.open()
        assert_result(a.preauth(bound))
        assert form_username(a.register_form()) == ("alice", ["alice"])
        assert_empty_form(b.register_form())
        assert_result(c.preauth(plain))
        assert_empty_form(c.register_form())
        assert form_username(a.register_form()) == ("alice", ["alice"])
        assert_empty_form(b.register_form())
    with RawStream(server.port) as d:
        d.open()
        assert_empty_form(d.register_form())


def test_two_bound_invites_each_their_own_name(server):
    """Two streams with invites bound to different names each see their own name."""
    alice = invites.account(server, "alice")
    bob = invites.account(server, "bob")
    with RawStream(server.port) as a, RawStream(server.port) as b:
        a.open()
        b.open()
        assert_result(a.preauth(alice))
        assert_result(b.preauth(bob))
        assert form_username(b.register_form()) == ("bob", ["bob"])
        assert form_username(a.register_form()) == ("alice", ["alice"])


def test_failed_preauth_after_bound_one_keeps_prefill(server):
    """A later failed preauth does not clear the earlier valid one (SPEC §4.2 step 5), so
    the form stays pre-filled."""
    token = invites.account(server, "alice")
    with RawStream(server.port) as s:
        s.open()
        assert_result(s.preauth(token))
        assert s.preauth("no-such-token-xxxxxxxxxx").type == "error"
        assert form_username(s.register_form()) == ("alice", ["alice"])
